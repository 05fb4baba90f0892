"""Unit tests of core/safety.py: pure logic, no ROS."""

from __future__ import annotations

import numpy as np
import pytest

from mbpo_ros.core.safety import (
    CommandShaper,
    EStop,
    JointLimits,
    JointStateValidator,
    PeriodStats,
    RejectCounter,
    RejectedMessage,
    StampOrder,
    Watchdog,
    check_finite,
    check_stop_action,
)

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


def test_stop_modes():
    s = CommandShaper(limits(), "velocity", max_velocity_step=100.0)
    s.shape(np.array([0.3, 0.2, 0.1]), np.zeros(3), 0.05)
    np.testing.assert_allclose(s.stop("hold"), [0.3, 0.2, 0.1])
    np.testing.assert_allclose(s.stop("zero"), [0, 0, 0])
    # the rate limit restarts from the stop command
    s.max_velocity_step = 0.1
    np.testing.assert_allclose(s.shape(np.ones(3), np.zeros(3), 0.05), [0.1, 0.1, 0.1])
    p = CommandShaper(limits(), "position")
    assert p.stop("hold") is None  # no target known to be safe before the first state
    np.testing.assert_allclose(p.stop("hold", q=np.array([0.5, 0.1, 0.2])), [0.5, 0.1, 0.2])
    with pytest.raises(ValueError, match="not one of"):
        s.stop("brake")


def test_stop_action_zero_refused_for_position_interface():
    check_stop_action("stale_action", "zero", "velocity")
    check_stop_action("stale_action", "hold", "position")
    with pytest.raises(ValueError, match="stale_action = 'zero' with command_interface 'position'"):
        check_stop_action("stale_action", "zero", "position")


def test_watchdog_trips_after_timeout_and_recovers():
    w = Watchdog(0.2)
    assert w.check(0.0)  # stale before any state
    w.feed(1.0)
    assert not w.check(1.1)
    assert not w.check(1.2)
    assert w.check(1.21)
    assert w.trips == 1
    assert w.check(5.0) and w.trips == 1
    w.feed(5.1)
    assert not w.check(5.15)
    assert w.check(6.0) and w.trips == 2
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
    q, qd, new = v.validate(["j3", "j1", "j2"], [3.0, 1.0, 2.0], [30.0, 10.0, 20.0], 10)
    np.testing.assert_allclose(q, [1, 2, 3])
    np.testing.assert_allclose(qd, [10, 20, 30])
    assert new
    q2, _, new2 = v.validate(["j1", "j2", "j3"], [1.0, 2.0, 3.0], [10.0, 20.0, 30.0], 10)
    np.testing.assert_allclose(q2, q)
    assert not new2  # same stamp


@pytest.mark.parametrize(
    "names,pos,vel,stamp,reason",
    [
        (["j1", "j2", "j3"], [0, np.nan, 0], [0, 0, 0], 5, "non_finite"),
        (["j1", "j2", "j3"], [0, 0, 0], [0, np.inf, 0], 5, "non_finite"),
        (["j1", "j2", "j3"], [0, 0], [0, 0, 0], 5, "wrong_size"),
        (["j1", "j2", "j3"], [0, 0, 0], [], 5, "wrong_size"),
        (["j1", "j2"], [0, 0], [0, 0], 5, "missing_joint"),
        (["j1", "j2", "j3", "gripper"], [0, 0, 0, 0], [0, 0, 0, 0], 5, "unknown_joint"),
        (["j1", "j1", "j3"], [0, 0, 0], [0, 0, 0], 5, "wrong_size"),
        (["j1", "j2", "j3"], [0, 0, 0], [0, 0, 0], 3, "out_of_order"),
    ],
)
def test_joint_state_validator_rejects(names, pos, vel, stamp, reason):
    v = JointStateValidator(NAMES)
    v.validate(NAMES, [0, 0, 0], [0, 0, 0], 4)
    with pytest.raises(RejectedMessage) as info:
        v.validate(names, pos, vel, stamp)
    assert info.value.reason == reason
    # a rejected message does not move the accepted stamp
    assert v.order.last_ns == 4


def test_extra_joints_allowed_when_asked():
    v = JointStateValidator(NAMES, allow_extra_joints=True)
    q, _, _ = v.validate(["gripper", "j1", "j2", "j3"], [9, 1, 2, 3], [0, 0, 0, 0], 1)
    np.testing.assert_allclose(q, [1, 2, 3])


def test_check_finite_and_stamp_order_and_counter():
    with pytest.raises(RejectedMessage, match="goal"):
        check_finite([0, float("nan")], "goal")
    o = StampOrder("goal")
    assert o.check(5)
    o.accept(5)
    assert not o.check(5)
    with pytest.raises(RejectedMessage, match="older"):
        o.check(4)
    c = RejectCounter()
    c.add("/joint_states", "non_finite")
    c.add("/joint_states", "non_finite")
    c.add("/goal", "out_of_order")
    assert c.total() == 3
    assert c.as_dict() == {"/goal:out_of_order": 1, "/joint_states:non_finite": 2}


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
