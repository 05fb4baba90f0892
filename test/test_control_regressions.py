"""The seven cases of issue 10, each a named regression test driving the Controller (no ROS).

The node-level halves (the /clock hang, a second publisher seen over DDS, negative stamps reaching
the log thread) are in test_agent_safety_node.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from control_helpers import GOAL, PERIOD, UPPER, Arm, PushPolicy, make_controller

from mbpo_ros.control import Phase, Reason


def _past_upper(arm: Arm, margin: float = 0.05) -> bool:
    return bool(np.any(arm.q > UPPER - margin + 1e-9))


# 1. stamps that never advance ---------------------------------------------------------------------

@pytest.mark.parametrize("frozen_at", [0.0, 100.0])
def test_regression_frozen_or_zero_stamps_go_stale_and_stop(frozen_at):
    """A driver that leaves header.stamp at 0, or whose stamp freezes mid-run, while the policy pushes
    every joint outward: within state_timeout of the last new stamp every command is zero, and no
    command ever pushes a joint at its limit further out (before: the last command repeated forever,
    2 to 6.8 rad past the limits, diagnostics OK)."""
    ctrl, _ = make_controller(policy=PushPolicy(+1.0), max_velocity_step=5.0, state_timeout=0.3)
    arm = Arm(ctrl, q=UPPER - 0.3)
    arm.run(10)  # a healthy stream first: the arm drives toward its upper limits
    last_new = arm.t
    arm.publish(stamp=frozen_at)  # the stamp freezes (0 here is older than the live stamps: rejected too)
    for _ in range(80):  # 4 s of messages that never bring a newer stamp
        arm.publish(stamp=frozen_at)
        arm.step()
    late = [c for t, c in arm.commands if t > last_new + 0.3 + PERIOD]
    assert late and all(np.all(c.values == 0.0) for c in late), [c.values for c in late[:3]]
    assert all(c.reason is Reason.STALE for c in late)
    assert not np.any(arm.q > UPPER + 1e-9), f"joints pushed past the upper limits: {arm.q - UPPER}"
    level, msg, values = ctrl.status()
    assert level == "ERROR" and values["watchdog"] == "stale", (level, msg)


def test_regression_zero_stamp_driver_from_the_start_stops_within_state_timeout():
    ctrl, _ = make_controller(policy=PushPolicy(+1.0), state_timeout=0.3)
    arm = Arm(ctrl)
    start = arm.t
    for _ in range(40):
        arm.publish(stamp=0.0)
        arm.step()
    moving = [t for t, c in arm.commands if c.values is not None and np.any(c.values != 0.0)]
    assert moving and max(moving) <= start + 0.3 + PERIOD, moving


def test_regression_repeats_go_through_the_position_guard():
    """No new state since the last command: the repeat is re-shaped with the position the arm may have
    reached since, so it is cut at the limit instead of pushing on (the old `_step` repeated it raw)."""
    ctrl, _ = make_controller(policy=PushPolicy(+1.0), max_velocity_step=5.0, state_timeout=10.0)
    arm = Arm(ctrl, q=UPPER - 0.3)
    arm.publish()
    arm.step()
    repeats = [arm.step() for _ in range(20)]  # no new state at all
    assert all(c.reason is Reason.REPEAT for c in repeats)
    assert not np.any(arm.q > UPPER + 1e-9)
    assert np.all(repeats[-1].values == 0.0)


# 2. the clock jumps back --------------------------------------------------------------------------

def test_regression_clock_jump_back_ends_episode_without_transition_and_control_goes_on():
    ctrl, learner = make_controller(episode_seconds=100.0)
    arm = Arm(ctrl, t=500.0)
    arm.run(20)
    before = len(learner.transitions)
    arm.t = 10.0  # a simulator reset: /clock back to 10 s, states stamped on the new timeline
    first = arm.run(1)[0]
    assert any("clock jumped back" in e.text for e in first.events)
    assert first.episode is not None and first.episode.steps == before
    assert ctrl.status()[2]["clock_jumps"] == 1
    arm.run(40)
    after = learner.transitions[before:]
    assert len(after) > 20, "control and learning go on on the new timeline"
    assert all(tr.start_stamp_ns < tr.stamp_ns and tr.start_stamp_ns >= 10 * 10**9 for tr in after), \
        "no transition across the jump"
    assert np.any(arm.sent()[-10:] != 0.0)


def test_regression_clock_jump_back_without_new_states_is_stale():
    """States that arrived 'after' the rewound clock's now have an unknown age: zero until a new one."""
    ctrl, _ = make_controller(policy=PushPolicy(+1.0))
    arm = Arm(ctrl, t=500.0)
    arm.run(10)
    arm.t = 10.0
    cmds = arm.run(10, publish=False)
    assert all(np.all(c.values == 0.0) for c in cmds)


def test_regression_clock_jump_forward_beyond_bound_ends_episode():
    ctrl, learner = make_controller(episode_seconds=100.0, max_clock_step=1.0)
    arm = Arm(ctrl)
    arm.run(10)
    n = len(learner.transitions)
    arm.t += 5.0
    cmd = arm.run(1)[0]
    assert any("clock jumped forward" in e.text for e in cmd.events) and cmd.episode is not None
    arm.run(10)
    assert all(tr.stamp_ns - tr.start_stamp_ns < 2 * PERIOD * 1e9 for tr in learner.transitions[n:])


# 3. estop_action hold set live, then e-stop, on a velocity interface -------------------------------

def test_regression_estop_hold_set_live_is_refused_and_estop_commands_zero():
    ctrl, _ = make_controller(policy=PushPolicy(+1.0))
    arm = Arm(ctrl, q=UPPER - 0.5)
    arm.run(5)
    with pytest.raises(ValueError, match="keeps moving"):
        ctrl.set_parameter("estop_action", "hold")
    with pytest.raises(ValueError, match="keeps moving"):
        ctrl.set_parameter("stale_action", "hold")
    assert ctrl.estop_action == "zero"
    ctrl.estop.engage("test")
    cmds = arm.run(200)
    assert all(np.all(c.values == 0.0) and c.reason is Reason.ESTOP for c in cmds)
    assert not np.any(arm.q > UPPER + 1e-9)


def test_regression_position_interface_hold_holds_the_measured_position():
    ctrl, _ = make_controller(policy=PushPolicy(+1.0), command_interface="position", stale_action="hold",
                              estop_action="hold")
    with pytest.raises(ValueError, match="0 rad"):
        ctrl.set_parameter("estop_action", "zero")
    arm = Arm(ctrl)
    arm.run(5)
    ctrl.estop.engage("test")
    cmd = arm.run(1)[0]
    np.testing.assert_allclose(cmd.values, arm.commands[-1][1].values)
    q_at_estop = arm.q.copy()
    cmds = arm.run(20)
    np.testing.assert_allclose(cmds[-1].values, q_at_estop, atol=1e-9)


# 4. finite but huge values on /ee_pose or /goal ----------------------------------------------------

@pytest.mark.parametrize("where", ["ee", "goal"])
def test_regression_huge_ee_pose_or_goal_never_reaches_the_learner(where):
    ctrl, learner = make_controller(episode_seconds=100.0)
    arm = Arm(ctrl)
    arm.run(10)
    huge = (1e308, 0.0, 0.3)
    for _ in range(40):
        arm.publish(**{where: huge})
        arm.step()
    assert arm.rejected.count("implausible") == 40
    assert ctrl.inputs.rejects.as_dict()[f"{'ee_pose' if where == 'ee' else 'goal'}:implausible"] == 40
    assert learner.transitions
    for tr in learner.transitions:
        assert tr.finite() and np.all(np.abs(tr.obs) < 1e3) and np.all(np.abs(tr.next_obs) < 1e3)
    if where == "ee":  # /ee_pose never brings a new stamp: stale, zero
        assert np.all(arm.sent()[-20:] == 0.0)


# 5. negative stamps --------------------------------------------------------------------------------

def test_regression_negative_stamps_are_rejected_and_counted():
    ctrl, learner = make_controller(episode_seconds=100.0)
    arm = Arm(ctrl)
    arm.run(10)
    for _ in range(10):
        arm.publish(stamp=-99.91)
        arm.step()
    assert arm.rejected.count("negative_stamp") == 30  # joint state, ee_pose and goal each time
    assert ctrl.inputs.rejects.as_dict()["joint_states:negative_stamp"] == 10
    arm.run(10)
    assert all(tr.start_stamp_ns >= 0 for tr in learner.transitions)
    assert np.any(arm.sent()[-5:] != 0.0), "good states after the bad ones are used again"


# 6. one state stamped one hour ahead ---------------------------------------------------------------

def test_regression_one_state_an_hour_ahead_does_not_lock_out_later_states():
    ctrl, learner = make_controller(episode_seconds=100.0)
    arm = Arm(ctrl)
    arm.run(10)
    arm.publish(stamp=arm.t + 3600.0)
    assert "future_stamp" in arm.rejected
    n = len(learner.transitions)
    arm.run(20)
    assert len(learner.transitions) >= n + 19, "every later valid state is used"
    assert "out_of_order" not in arm.rejected


def test_regression_a_stamp_just_inside_max_stamp_ahead_locks_out_for_at_most_state_timeout():
    ctrl, learner = make_controller(episode_seconds=100.0, max_stamp_ahead=5.0, state_timeout=0.3)
    arm = Arm(ctrl)
    arm.run(10)
    arm.publish(stamp=arm.t + 4.0)  # accepted: within the allowed clock skew
    arm.step()
    arm.run(20)  # good states, older than the bad one: rejected, then a new timeline after state_timeout
    assert "out_of_order" in arm.rejected
    assert ctrl.status()[2]["stamp_resyncs"] >= 1
    recent = arm.run(10)
    assert all(c.reason is Reason.POLICY for c in recent[2:]), [c.reason for c in recent]


# 7. a second publisher on the command topic --------------------------------------------------------

def test_regression_second_command_publisher_is_reported_and_can_estop():
    ctrl, _ = make_controller()
    arm = Arm(ctrl)
    arm.run(5)
    events = ctrl.note_command_publishers(2)
    assert events and "2 publishers" in events[0].text
    level, msg, values = ctrl.status()
    assert level == "ERROR" and "2 publishers" in msg and values["command_publishers"] == 2
    assert not ctrl.estop.engaged  # reported only, unless asked to e-stop
    ctrl.set_parameter("estop_on_foreign_publisher", True)
    assert ctrl.estop.engaged and "publishers" in ctrl.estop.reason
    assert all(np.all(c.values == 0.0) for c in arm.run(5))


def test_goal_published_once_is_kept():
    """The goal is latched: one message before the first state is enough to run (twin_node sends it once)."""
    ctrl, learner = make_controller(episode_seconds=100.0)
    arm = Arm(ctrl)
    arm.publish()
    for _ in range(20):
        arm.publish(goal_stamp=99.0)  # the goal's stamp never changes: it is not covered by the watchdog
        arm.step()
    assert len(learner.transitions) >= 18
    np.testing.assert_allclose(learner.transitions[-1].obs[15:18], GOAL)


def test_drive_home_on_a_real_arm_between_episodes():
    ctrl, learner = make_controller(episode_seconds=0.5, reset_timeout=5.0, home_tolerance=0.05)
    arm = Arm(ctrl)
    arm.run(200)
    reasons = [c.reason for _, c in arm.commands]
    assert Reason.HOME in reasons and sum(c.episode is not None for _, c in arm.commands) >= 3
    assert ctrl.phase in (Phase.RUN, Phase.SETTLE, Phase.HOME)


class _NanPolicy:
    obs_dim, act_dim = 21, 6

    def act(self, obs, deterministic=False, rng=None):
        return np.full(6, np.nan)


def test_policy_returning_nan_commands_zero_action_and_says_so():
    ctrl, learner = make_controller(policy=_NanPolicy(), episode_seconds=100.0)
    arm = Arm(ctrl)
    cmds = arm.run(20)
    assert sum("NaN/Inf" in e.text for c in cmds for e in c.events) == 1  # said once, not every step
    assert np.all(arm.sent() == 0.0)
    assert all(tr.finite() and np.all(tr.action == 0.0) for tr in learner.transitions)


def test_safety_case_cites_only_tests_that_exist():
    """docs/safety.md names a test for every hazard: each named test must exist (renames break the case)."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    text = (repo / "docs" / "safety.md").read_text()
    cited = re.findall(r"(test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)", text)
    assert len(cited) >= 20
    missing = [f"{f}::{name}" for f, name in cited
               if not re.search(rf"^def {name}\(", (repo / "test" / f).read_text(), re.MULTILINE)]
    assert not missing, f"docs/safety.md cites tests that do not exist: {missing}"


def test_control_imports_no_ros():
    """control/ is the agent's decisions without ROS: importing it loads no rclpy (nor torch, nor mujoco)."""
    import subprocess
    import sys

    code = ("import sys, mbpo_ros.control, mbpo_ros.control.controller; "
            "print(sorted(m for m in ('rclpy', 'torch', 'mujoco') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_regression_a_snapshot_never_pairs_a_joint_state_with_another_states_end_effector():
    """Regression (found by test_arm_launch's stand-in UR5e): with robot_model, the observation's end-effector
    position is the forward kinematics of its joint state. The node's control thread takes snapshots while
    the executor thread accepts joint states; the state was replaced before its forward kinematics ran, so
    8 of 100 logged transitions paired q with the previous state's end effector (up to 5 mm apart at 1 rad/s).
    A snapshot taken while a state is being accepted (here: from inside the forward kinematics) must see a
    consistent pair."""
    from mbpo_ros.control.inputs import InputCache

    seen = []

    def fk(q):
        seen.append(cache.snapshot())  # what the control thread reads while the kinematics run
        return np.array([q[0], q[1], 0.0])

    cache = InputCache(["a", "b"], forward_kinematics=fk)
    for k in range(3):
        assert cache.on_joint_state(["b", "a"], [0.2 * k, 0.1 * k], [0.0, 0.0], (k + 1) * 10**7, 0.0)
    for snap in [*seen[1:], cache.snapshot()]:
        assert snap.state.seq == snap.ee.seq and snap.state.stamp_ns == snap.ee.stamp_ns
        np.testing.assert_array_equal(snap.ee.value[:2], snap.state.q)
