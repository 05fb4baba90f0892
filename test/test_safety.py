"""Unit tests of the parts of control/ (safety.py, inputs.py, timing.py): pure logic, no ROS."""

from __future__ import annotations

import numpy as np
import pytest

from mbpo_ros.control.inputs import (
    Bounds,
    JointStateValidator,
    RejectCounter,
    RejectedMessage,
    StampGate,
    check_finite,
)
from mbpo_ros.control.safety import CommandShaper, EStop, JointLimits, Watchdog, check_stop_action
from mbpo_ros.control.timing import ClockMonitor, PeriodStats

NAMES = ("j1", "j2", "j3")


def limits():
    return JointLimits(NAMES, np.array([-1.0, -2.0, -3.0]), np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 0.5]))


def test_limits_reject_bad_shapes_and_order():
    with pytest.raises(ValueError, match="has 2 values, the arm has 3 joints"):
        JointLimits(NAMES, np.zeros(2), np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="j2.*not below"):
        JointLimits(NAMES, np.array([0, 1.0, 0]), np.array([1, 1.0, 1]), np.ones(3))
    with pytest.raises(ValueError, match="velocity limit"):
        JointLimits(NAMES, -np.ones(3), np.ones(3), np.array([1, 0, 1.0]))
    with pytest.raises(ValueError, match="duplicates"):
        JointLimits(("a", "a"), -np.ones(2), np.ones(2), np.ones(2))


def test_velocity_clip_to_limits():
    s = CommandShaper(limits(), "velocity", position_margin=0.05, max_velocity_step=100.0)
    out = s.shape(np.array([5.0, -5.0, 0.2]), q=np.zeros(3), dt=0.05)
    np.testing.assert_allclose(out, [1.0, -2.0, 0.2])


def test_velocity_rate_limit_per_step():
    s = CommandShaper(limits(), "velocity", position_margin=0.05, max_velocity_step=0.1)
    s.reset(np.zeros(3))
    out = s.shape(np.array([1.0, -1.0, 0.05]), q=np.zeros(3), dt=0.05)
    np.testing.assert_allclose(out, [0.1, -0.1, 0.05])
    out2 = s.shape(np.array([1.0, -1.0, 0.05]), q=np.zeros(3), dt=0.05)
    np.testing.assert_allclose(out2, [0.2, -0.2, 0.05])


def test_velocity_zeroed_at_position_limit_but_free_to_leave():
    s = CommandShaper(limits(), "velocity", position_margin=0.05, max_velocity_step=100.0)
    # joint 1 at its upper limit minus the margin: moving up is zeroed, moving down allowed
    q = np.array([0.95, -1.9, 0.0])
    out = s.shape(np.array([0.5, -2.0, 0.0]), q=q, dt=0.05)
    assert out[0] == 0.0
    # joint 2 would pass lower + margin (-1.95) within one step: scaled so q + v*dt lands on it
    assert out[1] == pytest.approx(-1.0)
    out = s.shape(np.array([-0.5, 1.0, 0.0]), q=q, dt=0.05)
    np.testing.assert_allclose(out[:2], [-0.5, 1.0])


def test_position_commands_clip_and_step_limit():
    s = CommandShaper(limits(), "position", position_margin=0.1)
    out = s.shape(np.array([5.0, -5.0, 0.0]), q=np.zeros(3), dt=0.1)
    # step limited to velocity * dt from the measured position
    np.testing.assert_allclose(out, [0.1, -0.2, 0.0])
    for _ in range(50):
        out = s.shape(np.array([5.0, -5.0, 0.0]), q=np.zeros(3), dt=0.1)
    np.testing.assert_allclose(out, [0.9, -1.9, 0.0])


def test_shaper_rejects_nan_and_wrong_size():
    s = CommandShaper(limits())
    with pytest.raises(ValueError, match="command has 2 values, arm has 3 joints"):
        s.shape(np.zeros(2), np.zeros(3), 0.05)
    with pytest.raises(ValueError, match="NaN"):
        s.shape(np.array([0, np.nan, 0]), np.zeros(3), 0.05)
    with pytest.raises(ValueError, match="positive"):
        s.shape(np.zeros(3), np.zeros(3), 0.0)


def test_stop_commands():
    s = CommandShaper(limits(), "velocity", max_velocity_step=100.0)
    s.shape(np.array([0.3, 0.2, 0.1]), np.zeros(3), 0.05)
    np.testing.assert_allclose(s.zero(), [0, 0, 0])
    # the rate limit restarts from the stop command
    s.max_velocity_step = 0.1
    np.testing.assert_allclose(s.shape(np.ones(3), np.zeros(3), 0.05), [0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="keeps moving"):
        s.hold(np.zeros(3), 0.05)
    p = CommandShaper(limits(), "position", position_margin=0.1)
    np.testing.assert_allclose(p.hold(np.array([0.5, 0.1, 0.2]), 0.1), [0.5, 0.1, 0.2])
    # a joint found beyond its limit is walked back at most velocity * dt per step, never pushed out
    np.testing.assert_allclose(p.hold(np.array([1.5, 0.1, 0.2]), 0.1), [1.4, 0.1, 0.2])
    with pytest.raises(ValueError, match="0 rad"):
        p.zero()


def test_stop_action_must_fit_the_interface():
    check_stop_action("stale_action", "zero", "velocity")
    check_stop_action("stale_action", "hold", "position")
    with pytest.raises(ValueError, match="stale_action = 'zero' with command_interface 'position'"):
        check_stop_action("stale_action", "zero", "position")
    with pytest.raises(ValueError, match="estop_action = 'hold' with command_interface 'velocity'.*keeps moving"):
        check_stop_action("estop_action", "hold", "velocity")


def test_watchdog_trips_after_timeout_and_recovers():
    w = Watchdog(0.2)
    assert w.check(None, 0.0)  # stale before any state
    assert not w.check(1.0, 1.1)
    assert not w.check(1.0, 1.2)
    assert w.check(1.0, 1.21)
    assert w.trips == 1
    assert w.check(1.0, 5.0) and w.trips == 1
    assert not w.check(5.1, 5.15)
    assert w.check(5.1, 6.0) and w.trips == 2
    # the clock went back below the state's arrival: its age is unknown, so it is stale
    assert w.check(5.1, 3.0)
    with pytest.raises(ValueError, match="state_timeout"):
        Watchdog(0.0)


def test_estop_latches_until_released():
    e = EStop()
    assert not e.engaged
    assert e.engage("button")
    assert not e.engage("again")  # already latched
    assert e.engaged and e.count == 1
    assert e.release()
    assert not e.engaged
    assert not e.release()


def test_joint_state_validator_matches_by_name():
    v = JointStateValidator(NAMES)
    q, qd = v.validate(["j3", "j1", "j2"], [3.0, 1.0, 2.0], [30.0, 10.0, 20.0])
    np.testing.assert_allclose(q, [1, 2, 3])
    np.testing.assert_allclose(qd, [10, 20, 30])


@pytest.mark.parametrize(
    "names,pos,vel,reason",
    [
        (["j1", "j2", "j3"], [0, np.nan, 0], [0, 0, 0], "non_finite"),
        (["j1", "j2", "j3"], [0, 0, 0], [0, np.inf, 0], "non_finite"),
        (["j1", "j2", "j3"], [0, 1e308, 0], [0, 0, 0], "implausible"),
        (["j1", "j2", "j3"], [0, 0, 0], [0, 0, -101.0], "implausible"),
        (["j1", "j2", "j3"], [0, 0], [0, 0, 0], "wrong_size"),
        (["j1", "j2", "j3"], [0, 0, 0], [], "wrong_size"),
        (["j1", "j2"], [0, 0], [0, 0], "missing_joint"),
        (["j1", "j2", "j3", "gripper"], [0, 0, 0, 0], [0, 0, 0, 0], "unknown_joint"),
        (["j1", "j1", "j3"], [0, 0, 0], [0, 0, 0], "wrong_size"),
    ],
)
def test_joint_state_validator_rejects(names, pos, vel, reason):
    v = JointStateValidator(NAMES, bounds=Bounds(position=100.0, velocity=100.0))
    with pytest.raises(RejectedMessage) as info:
        v.validate(names, pos, vel)
    assert info.value.reason == reason


def test_extra_joints_allowed_when_asked():
    v = JointStateValidator(NAMES, allow_extra_joints=True)
    q, _ = v.validate(["gripper", "j1", "j2", "j3"], [9, 1, 2, 3], [0, 0, 0, 0])
    np.testing.assert_allclose(q, [1, 2, 3])


def test_check_finite_and_counter():
    with pytest.raises(RejectedMessage, match="goal"):
        check_finite([0, float("nan")], "goal")
    with pytest.raises(RejectedMessage, match="implausible"):
        check_finite([0, 1e308], "goal", bound=100.0)
    c = RejectCounter()
    c.add("/joint_states", "non_finite")
    c.add("/joint_states", "non_finite")
    c.add("/goal", "out_of_order")
    assert c.total() == 3
    assert c.as_dict() == {"/goal:out_of_order": 1, "/joint_states:non_finite": 2}


def test_stamp_gate_orders_and_rejects_insane_stamps():
    g = StampGate("goal", max_ahead=5.0, resync_after=0.25)
    assert g.check(5_000_000_000, now=5.0)
    assert not g.check(5_000_000_000, now=5.01)  # a repeat: accepted, not new
    with pytest.raises(RejectedMessage, match="older"):
        g.check(4_000_000_000, now=5.02)
    with pytest.raises(RejectedMessage) as info:
        g.check(-1, now=5.03)
    assert info.value.reason == "negative_stamp"
    with pytest.raises(RejectedMessage) as info:
        g.check(3600 * 10**9, now=5.04)
    assert info.value.reason == "future_stamp"
    assert g.last_ns == 5_000_000_000  # rejected stamps are never cached
    # only older stamps for resync_after: a new timeline starts (epoch 1)
    with pytest.raises(RejectedMessage):
        g.check(4_100_000_000, now=5.1)
    assert g.check(4_200_000_000, now=5.4) and g.epoch == 1
    # the clock went back: the older stamp starts a new timeline at once
    assert g.check(1_000_000_000, now=1.0) and g.epoch == 2


def test_clock_monitor_detects_jumps_both_ways():
    c = ClockMonitor(max_forward=1.0)
    assert c.update(0.0) is None and c.update(100.0) is None  # simulated time starting from 0
    assert c.update(100.05) is None
    back = c.update(10.0)
    assert back is not None and back.seconds < 0 and "back" in str(back)
    fwd = c.update(12.0)
    assert fwd is not None and fwd.seconds == pytest.approx(2.0)
    assert c.jumps == 2
    assert ClockMonitor(max_forward=None).update(1.0) is None


def test_period_stats():
    s = PeriodStats(0.01)
    assert s.summary()["n"] == 0
    for i in range(101):
        s.tick(i * 0.01 + (0.002 if i == 50 else 0.0))
    out = s.summary()
    assert out["n"] == 100
    assert abs(out["rate_hz"] - 100.0) < 0.5
    assert abs(out["err_max_ms"] - 2.0) < 1e-6
    assert out["err_p50_ms"] < 1e-6
