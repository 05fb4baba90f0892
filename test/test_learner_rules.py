"""The learner's rules without processes: the training schedule (core/schedule.py), the held-id set,
the ring's record codec, policy-only loading (no torch) and the refusal of non-finite checkpoints."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mbpo_ros.core import schedule
from mbpo_ros.core.config import MBPOConfig
from mbpo_ros.learner.log_ids import IdSet
from mbpo_ros.learner.ring import RecordCodec, Transition

# ----------------------------------------------------------------------------- schedule

configs = st.builds(
    lambda init, start, freq, utd: dataclasses.replace(
        MBPOConfig(), init_random_steps=init, learning_starts=start, model_train_freq=freq, utd=utd),
    st.integers(0, 50), st.one_of(st.just(0), st.integers(0, 60)), st.integers(1, 30), st.integers(0, 5),
)


def _sync(m: MBPOConfig, steps: int) -> schedule.Counters:
    """What MBPO.step() does to the counters over `steps` env steps (retrains always fit)."""
    c = schedule.Counters(0, 0, 0, -1)
    for _ in range(steps):
        c = dataclasses.replace(c, env_steps=c.env_steps + 1)
        if not schedule.training_started(c, m):
            continue
        if schedule.retrain_due(c, m):
            c = dataclasses.replace(c, model_trains=c.model_trains + 1, last_model_train_step=c.env_steps)
        c = dataclasses.replace(c, sac_updates=c.sac_updates + int(m.utd))
    return c


@settings(max_examples=200, deadline=None)
@given(m=configs, steps=st.integers(0, 200), chunk=st.integers(1, 40))
def test_async_schedule_with_time_to_spare_reaches_the_synchronous_counters(m, steps, chunk):
    """A learner that keeps up (work until idle after every env step) ends where MBPO.step() ends."""
    c, at_retrain = schedule.Counters(0, 0, 0, -1), None
    for _ in range(steps):
        c = dataclasses.replace(c, env_steps=c.env_steps + 1)
        while True:
            w = schedule.next_work(c, m, at_retrain, chunk)
            if w.kind == "idle":
                break
            if w.kind == "retrain":
                at_retrain = c.sac_updates
                c = dataclasses.replace(c, model_trains=c.model_trains + 1, last_model_train_step=c.env_steps)
            else:
                assert 1 <= w.updates <= chunk
                c = dataclasses.replace(c, sac_updates=c.sac_updates + w.updates)
    s = _sync(m, steps)
    assert (c.sac_updates, c.model_trains, c.last_model_train_step) == (
        s.sac_updates, s.model_trains, s.last_model_train_step)
    assert schedule.updates_owed(c, m) == 0


@settings(max_examples=200, deadline=None)
@given(m=configs, env=st.integers(0, 500), sac=st.integers(0, 3000), last=st.integers(-1, 500),
       at=st.one_of(st.none(), st.integers(0, 3000)), chunk=st.integers(1, 40))
def test_next_work_never_overtrains_and_never_retrains_early(m, env, sac, last, at, chunk):
    c = schedule.Counters(env, sac, 0, min(last, env))
    w = schedule.next_work(c, m, at, chunk)
    if not schedule.training_started(c, m):
        assert w.kind == "idle"
    if w.kind == "retrain":
        assert schedule.retrain_due(c, m)
    if w.kind == "update":
        assert 0 < w.updates <= min(chunk, schedule.updates_owed(c, m))
    if w.kind == "idle":
        assert schedule.updates_owed(c, m) == 0 or not schedule.training_started(c, m)
        assert not schedule.retrain_due(c, m) or not schedule.training_started(c, m)


@settings(max_examples=200, deadline=None)
@given(m=configs, steps=st.integers(0, 200))
def test_training_starts_at_learning_starts_if_set_else_when_the_random_steps_end(m, steps):
    """learning_starts (when > 0) alone decides when training starts, before, at or after the random
    steps; 0 keeps the paper's start at init_random_steps. From then on every step owes utd updates."""
    first = max(m.learning_starts or m.init_random_steps, 1)
    c = _sync(m, steps)
    trained = max(0, steps - first + 1)
    assert c.sac_updates == m.utd * trained
    assert (c.model_trains > 0) == (trained > 0)
    if trained:
        assert (c.last_model_train_step - first) % m.model_train_freq == 0
    else:
        assert c.last_model_train_step == -1


# ----------------------------------------------------------------------------- held ids


@settings(max_examples=200, deadline=None)
@given(adds=st.lists(st.integers(0, 300), max_size=200), drops=st.lists(st.integers(0, 300), max_size=30))
def test_idset_is_a_set_and_round_trips_through_json(adds, drops):
    s, ref = IdSet(), set()
    for x in adds:
        assert s.add(x) == (x not in ref)
        ref.add(x)
    for x in drops:
        s.discard(x)
        ref.discard(x)
    assert len(s) == len(ref) and all((x in s) == (x in ref) for x in range(-1, 302))
    back = IdSet.from_ranges(json.loads(json.dumps(s.ranges())))
    assert back == s
    assert all(a < b for a, b in s.ranges()) and all(
        r1[1] < r2[0] for r1, r2 in zip(s.ranges(), s.ranges()[1:])), "canonical: sorted, disjoint, not adjacent"


def test_idset_refuses_bad_ranges():
    with pytest.raises(ValueError, match="sorted, disjoint"):
        IdSet.from_ranges([[5, 9], [3, 4]])
    with pytest.raises(ValueError, match="negative"):
        IdSet().add(-1)


# ----------------------------------------------------------------------------- ring records

floats = st.floats(width=32, allow_nan=True, allow_infinity=True)


@settings(max_examples=100, deadline=None)
@given(obs=st.lists(floats, min_size=3, max_size=3), act=st.lists(floats, min_size=2, max_size=2), rew=floats,
       term=st.booleans(), trunc=st.booleans(), lid=st.integers(-1, 2**62))
def test_record_codec_round_trips_every_field_bit_for_bit(obs, act, rew, term, trunc, lid):
    codec = RecordCodec(3, 2)
    o = np.array(obs, np.float32)
    tr = Transition(o, np.array(act, np.float32), float(np.float32(rew)), o[::-1].copy(), term, trunc, lid)
    back = codec.unpack(codec.pack(tr))
    assert back.log_id == lid and back.terminated == term and back.truncated == trunc
    for a, b in ((tr.obs, back.obs), (tr.act, back.act), (tr.next_obs, back.next_obs)):
        np.testing.assert_array_equal(a, b)
    assert (np.isnan(rew) and np.isnan(back.reward)) or back.reward == tr.reward


# ----------------------------------------------------------------------------- checkpoints


def _mbpo_checkpoint(path):
    from mbpo_ros.core.config import preset
    from mbpo_ros.core.tasks import get_task
    from mbpo_ros.core.trainer import MBPO
    from mbpo_ros.io.checkpoint import save_checkpoint

    task = get_task("reach")
    cfg = dataclasses.replace(preset("reach"), device="cpu")
    mbpo = MBPO(task.obs_dim, task.act_dim, cfg, task)
    tensors, arrays, meta = mbpo.state()
    save_checkpoint(path, tensors=tensors, arrays=arrays, meta=meta)
    return mbpo, tensors, arrays, meta


def test_load_policy_needs_no_torch_and_no_buffers(tmp_path):
    """Deploy loads only the policy: run in a fresh interpreter, torch must never be imported."""
    mbpo, _, _, _ = _mbpo_checkpoint(tmp_path / "run" / "checkpoint")
    obs = np.linspace(-1, 1, mbpo.obs_dim, dtype=np.float32)
    code = (
        "import sys, json, numpy as np\n"
        "from mbpo_ros.io.checkpoint import load_policy\n"
        "p = load_policy(sys.argv[1])\n"
        "a = p.act(np.linspace(-1, 1, p.obs_dim, dtype=np.float32))\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'safetensors': 'safetensors' in sys.modules,\n"
        "                  'mbpo': 'mbpo_ros.core.trainer' in sys.modules, 'act': a.tolist()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert not got["torch"] and not got["safetensors"] and not got["mbpo"], got
    np.testing.assert_allclose(got["act"], mbpo.policy_snapshot().act(obs), rtol=1e-6)


def test_old_checkpoint_without_policy_arrays_says_how_to_convert(tmp_path):
    from mbpo_ros.io.checkpoint import CheckpointError, load_policy, save_checkpoint
    from mbpo_ros.io.convert import main as convert

    mbpo, tensors, _, meta = _mbpo_checkpoint(tmp_path / "new")
    save_checkpoint(tmp_path / "old", tensors=tensors, arrays={}, meta=meta)  # as written before issue 11
    with pytest.raises(CheckpointError, match=r"python -m mbpo_ros.io.convert .*old") as exc:
        load_policy(tmp_path / "old")
    assert "\n" not in str(exc.value)
    assert convert([str(tmp_path / "old")]) == 0
    x = np.zeros(mbpo.obs_dim, np.float32)
    np.testing.assert_array_equal(load_policy(tmp_path / "old").act(x), mbpo.policy_snapshot().act(x))


def test_non_finite_checkpoint_is_refused_and_the_previous_one_kept(tmp_path):
    import torch

    from mbpo_ros.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    _, tensors, arrays, meta = _mbpo_checkpoint(tmp_path / "ckpt")
    before = (tmp_path / "ckpt" / "meta.json").read_bytes()
    bad = dict(tensors)
    key = next(k for k in bad if k.startswith("sac/") and bad[k].is_floating_point())
    bad[key] = bad[key].clone()
    bad[key].view(-1)[0] = float("nan")
    with pytest.raises(CheckpointError, match=f"non-finite.*{key}"):
        save_checkpoint(tmp_path / "ckpt", tensors=bad, arrays=arrays, meta=meta)
    assert (tmp_path / "ckpt" / "meta.json").read_bytes() == before
    assert torch.isfinite(load_checkpoint(tmp_path / "ckpt")[0][key]).all()
    assert not any(p.name.startswith(".ckpt.tmp") for p in tmp_path.iterdir())
