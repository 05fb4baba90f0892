"""Config dataclasses: presets, dict round trip, flat view, validation messages."""

from __future__ import annotations

import json
import math
import re

import pytest

from mbpo_ros.core.config import (
    PRESETS,
    Config,
    config_from_dict,
    config_to_dict,
    field_specs,
    flatten,
    preset,
    unflatten,
    validate,
)


@pytest.mark.parametrize(
    "name, utd, entropy, schedule",
    [
        ("Hopper-v5", 20, -1.0, [20, 150, 1, 15]),
        ("Walker2d-v5", 20, -3.0, [20, 150, 1, 1]),
        ("HalfCheetah-v5", 40, -3.0, [20, 150, 1, 1]),
        ("Ant-v5", 20, -4.0, [20, 100, 1, 25]),
        ("Humanoid-v5", 20, -2.0, [20, 300, 1, 25]),
        ("InvertedPendulum-v5", 10, -0.05, [1, 15, 1, 1]),
    ],
)
def test_gym_presets_follow_official_mbpo(name, utd, entropy, schedule):
    cfg = validate(preset(name))
    m = cfg.mbpo
    assert (m.utd, m.target_entropy, m.rollout_schedule) == (utd, entropy, schedule)
    assert (m.model_train_freq, m.rollout_batch_size, m.real_ratio) == (250, 100_000, 0.05)
    assert m.uncertainty_threshold == 0.0  # paper mode: no truncation
    if name == "InvertedPendulum-v5":
        assert (m.epoch_length, m.init_random_steps) == (250, 500)
    else:
        assert (m.epoch_length, m.init_random_steps) == (1000, 5000)
    e = cfg.ensemble
    assert (e.num_members, e.num_elites, e.hidden_size, e.num_hidden) == (7, 5, 200, 4)
    assert e.weight_decays == [2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4]
    assert (e.init_max_logvar, e.init_min_logvar, e.logvar_bound_coef) == (0.5, -10.0, 0.01)
    s = cfg.sac
    assert (s.hidden_size, s.num_hidden, s.lr, s.tau, s.batch_size) == (256, 2, 3e-4, 5e-3, 256)


def test_reach_preset_is_robot_mode():
    cfg = validate(preset("reach"))
    assert cfg.mbpo.uncertainty_threshold > 0
    assert cfg.mbpo.init_random_steps < 5000 and cfg.mbpo.rollout_batch_size < 100_000
    assert set(PRESETS) >= {"reach", "Hopper-v5", "InvertedPendulum-v5"}
    with pytest.raises(ValueError, match="no preset named 'Pong'"):
        preset("Pong")


def test_presets_do_not_share_mutable_defaults():
    a, b = Config(), Config()
    a.mbpo.rollout_schedule[3] = 99
    a.ensemble.weight_decays[0] = 1.0
    assert b.mbpo.rollout_schedule[3] == 15 and b.ensemble.weight_decays[0] == 2.5e-5


def test_dict_round_trip_through_json():
    cfg = preset("Hopper-v5")
    cfg.sac.lr = 1e-3
    d = json.loads(json.dumps(config_to_dict(cfg)))
    assert config_from_dict(d) == cfg
    assert unflatten(flatten(cfg)) == cfg


def test_unknown_and_mistyped_keys_are_named():
    with pytest.raises(ValueError, match="unknown config key 'sac.lrr'"):
        config_from_dict({"sac": {"lrr": 1.0}})
    with pytest.raises(ValueError, match="unknown config key 'bogus'"):
        config_from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="mbpo.utd = 'x' must be an integer"):
        config_from_dict({"mbpo": {"utd": "x"}})
    with pytest.raises(ValueError, match="unknown config key 'nope.x'"):
        unflatten({"nope.x": 1})


def test_validate_names_field_value_and_range():
    cfg = Config()
    cfg.sac.lr = -1.0
    with pytest.raises(ValueError, match=r"sac\.lr = -1\.0 is outside \[1e-06, 1\.0\]"):
        validate(cfg)
    cfg = Config()
    cfg.ensemble.num_elites = 9
    with pytest.raises(ValueError, match="num_elites = 9 exceeds"):
        validate(cfg)
    cfg = Config()
    cfg.mbpo.rollout_schedule = [10, 5, 1, 1]
    with pytest.raises(ValueError, match="end_epoch 5 is before start_epoch 10"):
        validate(cfg)


def test_field_specs_cover_every_field_with_docs():
    specs = field_specs()
    names = [s[0] for s in specs]
    assert names == list(flatten(Config()))
    for name, typ, default, doc, lo, hi, _read_only in specs:
        assert doc and isinstance(doc, str), name
        assert isinstance(default, typ)
        if lo is not None and isinstance(default, (int, float)) and not isinstance(default, bool):
            assert lo <= default <= (hi if hi is not None else math.inf), name
    by_name = {s[0]: s for s in specs}
    assert by_name["ensemble.hidden_size"][6] is True  # a network size cannot change live
    assert by_name["sac.lr"][6] is False


# ---------------------------------------------------------------------- one spec, one check, one message

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mbpo_ros.core.config import ParameterError, check_range  # noqa: E402

_bounds = st.one_of(st.none(), st.floats(-1e6, 1e6))


@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**9, 10**9)),
       lo=_bounds, hi=_bounds)
def test_check_range_refuses_exactly_the_values_outside_and_says_so_one_way(value, lo, hi):
    inside = value == value and (lo is None or value >= lo) and (hi is None or value <= hi) and (
        abs(value) != float("inf") or (lo is not None and hi is not None))
    if inside:
        check_range("sec.x", value, lo, hi)
        check_range("sec.x", [value, value], lo, hi)
    else:
        for v in (value, [lo if lo is not None else 0.0, value]):
            try:
                check_range("sec.x", v, lo, hi)
            except ParameterError as exc:
                assert str(exc).startswith("sec.x = ") and str(exc).endswith(f"is outside [{lo}, {hi}]")
            else:
                raise AssertionError(f"{v} accepted outside [{lo}, {hi}]")


def test_every_settings_dataclass_is_described_and_checked_one_way():
    """core config, Reach task, twin and node parameters: one param() and one message for a bad value."""
    import dataclasses

    from mbpo_ros.core.reach import ReachConfig, validate_reach_config
    from mbpo_ros.nodes.params import ParamSpec, check_value
    from mbpo_ros.sim.arm_twin import TwinConfig, validate_twin_config

    for cls in (Config().sac.__class__, ReachConfig, TwinConfig):
        for f in dataclasses.fields(cls):
            assert {"doc", "lo", "hi", "read_only", "choices"} <= set(f.metadata), (cls.__name__, f.name)
    cfg = Config()
    cfg.sac.lr = -1.0
    messages = []
    for call in (lambda: validate(cfg),
                 lambda: validate_reach_config(ReachConfig(success_threshold=-1.0), 6),
                 lambda: validate_twin_config(TwinConfig(physics_dt=0.5)),
                 lambda: check_value(ParamSpec("control_rate", 20.0, "control rate", 1.0, 1000.0), 0.5)):
        with pytest.raises(ParameterError) as exc:
            call()
        messages.append(str(exc.value))
    assert [m.split(" = ")[0].removeprefix("parameter ") for m in messages] == [
        "sac.lr", "reach.success_threshold", "twin.physics_dt", "control_rate"]
    assert all(re.search(r" = \S+ is outside \[\S+, \S+\]", m) for m in messages), messages
