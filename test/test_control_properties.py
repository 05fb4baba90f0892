"""Rules the Controller guarantees whatever arrives: Hypothesis property tests with a simulated arm.

Generated sequences of control steps mix healthy joint states with hostile ones (frozen, zero,
backwards, negative and far-future stamps; NaN, inf and huge values; positions at and beyond the
limits), silence, clock jumps both ways, e-stop toggles and live parameter changes (valid and not).
The arm integrates the commanded velocities (or walks to the commanded positions), as a ros2_control
forward command controller holds its last command. One test per rule (docs/safety.md).

Examples per test: the Hypothesis profile (test/conftest.py): `default` in `make test`, `long` in
`make test-long` (MBPO_HYPOTHESIS_PROFILE=long).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from control_helpers import EE, GOAL, JOINTS, LOWER, PERIOD, UPPER, VELOCITY, PushPolicy, make_controller

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mbpo_ros.control import Command, Controller  # noqa: E402
from mbpo_ros.control.inputs import RejectedMessage  # noqa: E402

TIMEOUT = 0.3  # state_timeout at the start (live changes may move it)
START = 1000.0  # the node's clock at the first step [s]

_HEALTHY = ("good",) * 8
_HOSTILE = ("frozen", "zero", "back", "neg", "future", "nan", "inf", "huge", "huge_ee", "huge_goal",
            "teleport", "silent", "ee_silent")
_CONTROL = ("clock_back", "clock_fwd", "estop_on", "estop_off", "param")
_PARAMS = st.one_of(
    st.tuples(st.just("state_timeout"), st.floats(-1.0, 2.0)),
    st.tuples(st.just("max_velocity_step"), st.floats(-0.5, 5.0)),
    st.tuples(st.just("position_margin"), st.floats(-0.1, 1.5)),
    st.tuples(st.sampled_from(["estop_action", "stale_action"]), st.sampled_from(["zero", "hold", "brake"])),
    st.tuples(st.just("estop_on_foreign_publisher"), st.booleans()),
)


def _events(kinds: tuple[str, ...], max_size: int = 60):
    event = st.one_of(
        st.tuples(st.sampled_from([k for k in kinds if k != "param"]), st.floats(0.0, 1.0), st.integers(0, 5)),
        st.tuples(st.just("param"), _PARAMS, st.just(0)) if "param" in kinds else st.nothing(),
    )
    return st.lists(event, min_size=5, max_size=max_size)


ALL_EVENTS = _events(_HEALTHY + _HOSTILE + _CONTROL)
CONFIG = st.fixed_dictionaries({
    "interface": st.sampled_from(["velocity", "velocity", "position"]),
    "push": st.sampled_from([None, 1.0, -1.0]),  # random exploration, or a policy pushing at full speed
    "start": st.sampled_from(["inside", "near_upper", "near_lower"]),
})


@dataclass
class Record:
    """One control step as the test saw it."""

    now: float
    values: np.ndarray | None
    measured: np.ndarray | None  # positions of the latest accepted state when the step ran
    max_step: float  # the rate limit in force
    estop: bool
    cmd: Command | None = None  # what the step returned (episodes: test_episodes.py)


def _controller(cfg: dict) -> Controller:
    interface = cfg["interface"]
    policy = PushPolicy(cfg["push"]) if cfg["push"] is not None else None
    ctrl, _ = make_controller(policy=policy, episode_seconds=1.0, command_interface=interface,
                              stale_action="zero" if interface == "velocity" else "hold",
                              estop_action="zero" if interface == "velocity" else "hold",
                              state_timeout=TIMEOUT, max_velocity_step=0.2, reset_timeout=0.5)
    return ctrl


def _start_q(cfg: dict) -> np.ndarray:
    return {"inside": np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), "near_upper": UPPER - 0.06,
            "near_lower": LOWER + 0.06}[cfg["start"]].copy()


def _feed(inputs, now: float, q, js_stamp: float, ee, ee_stamp: float, goal, goal_stamp: float) -> None:
    """The drivers publish a joint state (q; None: nothing), /ee_pose (ee; None: nothing) and /goal."""
    def ns(t: float) -> int:
        return int(round(t * 1e9))

    for value, call in ((q, lambda: inputs.on_joint_state(JOINTS, q, np.zeros(6), ns(js_stamp), now)),
                        (ee, lambda: inputs.on_ee_pose(ee, ns(ee_stamp), now)),
                        (goal, lambda: inputs.on_goal(goal, ns(goal_stamp), now))):
        if value is not None:
            try:
                call()
            except RejectedMessage:
                pass


def drive(ctrl: Controller, q: np.ndarray, events) -> tuple[list[Record], np.ndarray]:
    """Run `events` (one per control step) through `ctrl` against a simulated arm starting at `q`."""
    now, held, records, last_good = START, None, [], START
    inputs = ctrl.inputs
    for kind, x, j in events:
        js_stamp, ee_stamp, pos, ee, goal, send_js, send_ee = now, now, q, EE, GOAL, True, True
        if kind == "good":
            last_good = now
        elif kind == "frozen":
            js_stamp = ee_stamp = last_good
        elif kind == "zero":
            js_stamp = ee_stamp = 0.0
        elif kind == "back":
            js_stamp = ee_stamp = max(0.0, now - 100.0 * x)
        elif kind == "neg":
            js_stamp = ee_stamp = -1e-3 - 100.0 * x
        elif kind == "future":
            js_stamp = ee_stamp = now + 0.5 + 7200.0 * x * x
        elif kind in ("nan", "inf", "huge"):
            pos = q.copy()
            pos[j] = {"nan": np.nan, "inf": np.inf, "huge": 1e308 * (2 * x - 1)}[kind]
        elif kind == "huge_ee":
            ee = (1e308, 0.0, 0.0)
        elif kind == "huge_goal":
            goal = (0.0, -1e308, 0.0)
        elif kind == "teleport":  # the arm found at or beyond a limit (a collision, a bad model)
            q = q.copy()
            q[j] = (UPPER[j] if x > 0.5 else LOWER[j]) + (1 if x > 0.5 else -1) * (x - 0.5) * 2.0
            pos = q
            last_good = now
        elif kind == "silent":
            send_js = send_ee = False
        elif kind == "ee_silent":
            send_ee = False
        elif kind == "clock_back":
            now -= 0.1 + 1000.0 * x
            js_stamp = ee_stamp = last_good = now
        elif kind == "clock_fwd":
            now += 1.5 + 100.0 * x
            js_stamp = ee_stamp = last_good = now
        elif kind == "estop_on":
            ctrl.estop.engage("test")
        elif kind == "estop_off":
            ctrl.estop.release()
        elif kind == "param":
            try:
                ctrl.set_parameter(*x)
            except ValueError:
                pass
        _feed(inputs, now, pos if send_js else None, js_stamp, ee if send_ee else None, ee_stamp, goal, js_stamp)
        measured = inputs.state.q.copy() if inputs.state is not None else None
        engaged = ctrl.estop.engaged
        cmd = ctrl.step(inputs.snapshot(wall=now), now)
        records.append(Record(now, cmd.values, measured, ctrl.shaper.max_velocity_step, engaged, cmd))
        if cmd.values is not None:
            held = cmd.values
        if held is not None:
            if ctrl.interface == "velocity":
                q = q + held * PERIOD
            else:
                q = q + np.clip(held - q, -VELOCITY * PERIOD, VELOCITY * PERIOD)
        now += PERIOD
    return records, q


def _sent(records: list[Record]) -> list[Record]:
    return [r for r in records if r.values is not None]


@given(cfg=CONFIG, events=ALL_EVENTS)
def test_every_command_is_finite_and_within_velocity_limits(cfg, events):
    ctrl = _controller(cfg)
    records, _ = drive(ctrl, _start_q(cfg), events)
    for r in _sent(records):
        assert r.values.shape == (6,) and np.all(np.isfinite(r.values)), r
        if ctrl.interface == "velocity":
            assert np.all(np.abs(r.values) <= VELOCITY + 1e-12), r
        else:  # a target never beyond the limits, or, for a joint found beyond, not further out than it is
            lo = np.minimum(LOWER, r.measured if r.measured is not None else LOWER)
            hi = np.maximum(UPPER, r.measured if r.measured is not None else UPPER)
            assert np.all((r.values >= lo - 1e-12) & (r.values <= hi + 1e-12)), r


@given(cfg=CONFIG.filter(lambda c: c["interface"] == "velocity"), events=ALL_EVENTS)
def test_every_change_is_within_the_rate_limit_or_toward_zero(cfg, events):
    ctrl = _controller(cfg)
    sent = _sent(drive(ctrl, _start_q(cfg), events)[0])
    for a, b in zip(sent, sent[1:]):
        within = np.abs(b.values - a.values) <= b.max_step + 1e-9
        toward_zero = (np.abs(b.values) <= np.abs(a.values) + 1e-12) & (b.values * a.values >= 0.0)
        assert np.all(within | toward_zero), (a, b)


@given(cfg=CONFIG, events=ALL_EVENTS)
def test_no_command_moves_a_joint_further_beyond_a_limit(cfg, events):
    ctrl = _controller(cfg)
    teleported = any(k == "teleport" for k, _, _ in events)
    q0 = _start_q(cfg)
    records, q_end = drive(ctrl, q0, events)
    for r in _sent(records):
        if r.measured is None:
            continue
        above, below = r.measured >= UPPER, r.measured <= LOWER
        if ctrl.interface == "velocity":
            assert np.all(r.values[above] <= 0.0) and np.all(r.values[below] >= 0.0), r
        else:
            assert np.all(r.values[above] <= r.measured[above] + 1e-12), r
            assert np.all(r.values[below] >= r.measured[below] - 1e-12), r
    if not teleported:  # an arm that only moves as commanded never leaves its limits
        assert np.all(q_end <= UPPER + 1e-9) and np.all(q_end >= LOWER - 1e-9), q_end


@given(cfg=CONFIG.filter(lambda c: c["interface"] == "velocity"),
       events=_events(_HEALTHY + _HOSTILE + ("estop_on", "estop_off", "param", "clock_back", "clock_fwd")))
def test_zero_within_one_period_of_estop(cfg, events):
    ctrl = _controller(cfg)
    records = drive(ctrl, _start_q(cfg), events)[0]
    for r in records:
        if r.estop:  # engaged before this step: this step's command (one period at most) is zero
            assert r.values is not None and np.all(r.values == 0.0), r


# A stall: for its whole length no joint state (or /ee_pose) with a newer stamp arrives, in one of
# these ways; healthy steps come before and after. A clock jump forward inside a stall may only add
# stale steps; a jump back starts a new timeline, whose first message counts as new.
_STALLS = ("silent", "frozen", "zero", "back_const", "neg", "future_far", "nan", "inf", "huge", "ee_silent",
           "ee_frozen")


@given(cfg=CONFIG.filter(lambda c: c["interface"] == "velocity"),
       segments=st.lists(st.tuples(st.integers(1, 15), st.sampled_from(_STALLS), st.integers(1, 30),
                                   st.booleans()), min_size=1, max_size=4))
def test_zero_within_state_timeout_of_stale_input(cfg, segments):
    """Stale by arrival (silence) or by stamp (frozen, zero, older, invalid): every command more than
    state_timeout (plus one period) after the last newer stamp is zero."""
    ctrl = _controller(cfg)
    inputs, now, q, held = ctrl.inputs, START, _start_q(cfg), None
    last_new = None  # clock time of the last joint state AND ee_pose with a newer stamp
    for healthy, stall, length, jump in segments:
        for _ in range(healthy):
            _feed(inputs, now, q, now, EE, now, GOAL, START)
            last_new = now
            cmd = ctrl.step(inputs.snapshot(wall=now), now)
            held = cmd.values if cmd.values is not None else held
            q = q + (held if held is not None else 0.0) * PERIOD
            now += PERIOD
        frozen = now - PERIOD
        for k in range(length):
            if jump and k == length // 2:  # a clock jump inside the stall
                now += 5.0 if k % 2 else -5.0
                if k % 2 == 0:  # back: a new timeline, whose first message may well be new
                    last_new = now
            pos = q.copy()
            if stall in ("nan", "inf", "huge"):
                pos[k % 6] = {"nan": np.nan, "inf": np.inf, "huge": 1e308}[stall]
            stamp = {"frozen": frozen, "zero": 0.0, "back_const": frozen - 1.0, "neg": -1.0,
                     "future_far": now + 3600.0}.get(stall, now)
            _feed(inputs, now, None if stall == "silent" else pos, stamp,
                  None if stall in ("silent", "ee_silent") else EE, frozen if stall == "ee_frozen" else stamp,
                  GOAL, START)
            cmd = ctrl.step(inputs.snapshot(wall=now), now)
            if last_new is not None and (now - last_new > TIMEOUT + PERIOD + 1e-9 or now < last_new):
                assert cmd.values is not None and np.all(cmd.values == 0.0), (stall, k, cmd)
            held = cmd.values if cmd.values is not None else held
            q = q + (held if held is not None else 0.0) * PERIOD
            now += PERIOD


@given(cfg=CONFIG, events=ALL_EVENTS)
def test_transitions_are_finite_with_increasing_stamps(cfg, events):
    ctrl = _controller(cfg)
    learner = ctrl.learner
    drive(ctrl, _start_q(cfg), events)
    trs = learner.transitions
    for tr in trs:
        assert tr.finite() and tr.obs.dtype == np.float32 and tr.next_obs.dtype == np.float32
        assert np.all(np.abs(tr.obs) < 1e3) and np.all(np.abs(tr.next_obs) < 1e3) and abs(tr.reward) < 1e4
        assert 0 <= tr.start_stamp_ns < tr.stamp_ns, tr
        assert np.all(np.abs(tr.action) <= 1.0)
    for a, b in zip(trs, trs[1:]):
        if b.step > a.step:  # the same episode: strictly increasing stamps (gaps allowed, never overlaps)
            assert b.start_stamp_ns >= a.stamp_ns and b.stamp_ns > a.stamp_ns, (a, b)
