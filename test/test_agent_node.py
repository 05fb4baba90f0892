"""agent_node over real ROS 2 topics: the node runs as a subprocess, a test node plays the robot."""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_agent_support import (
    JOINTS,
    VEL_LIMITS,
    agent_executable,
    robot_fixture,
    start_agent_fixture,
    values,
)

pytestmark = pytest.mark.ros


@pytest.fixture
def robot(ros_context):
    yield from robot_fixture(ros_context)


@pytest.fixture
def start_agent(tmp_path, ros_domain):
    yield from start_agent_fixture(tmp_path)

def test_commands_at_control_rate_inside_limits(robot, start_agent):
    agent = start_agent()
    robot.start_publishing(100.0)
    assert robot.wait_for_commands(5, timeout=30), agent.output()
    t0 = time.monotonic()
    time.sleep(3.0)
    cmds = robot.commands_since(t0)
    rate = len(cmds) / 3.0
    assert 30.0 < rate < 65.0, f"{len(cmds)} commands in 3 s at control_rate 50 Hz"
    arr = np.array([c for _, c in cmds])
    assert arr.shape[1] == len(JOINTS)
    assert np.all(np.abs(arr) <= np.array(VEL_LIMITS) + 1e-9)
    # random exploration actions are rate-limited to max_velocity_step per step
    assert np.max(np.abs(np.diff(arr, axis=0))) <= 0.2 + 1e-9
    assert np.max(np.abs(arr)) > 0.05, "collect mode should command random (non-zero) actions"
    st = robot.wait_for_status("agent_node: control loop", lambda s: float(values(s)["rate_hz"]) > 0, timeout=10)
    assert st is not None
    v = values(st)
    assert 40.0 < float(v["rate_hz"]) < 60.0, v
    for key in ("jitter_ms", "period_err_p99_ms", "period_err_max_ms", "step_p99_ms"):
        assert key in v
    # shutdown (SIGINT): the last command the arm hears is a stop (velocity interface: zeros)
    assert agent.stop() == 0, agent.output()
    time.sleep(0.5)
    with robot.lock:
        last = robot.commands[-1][1]
    assert np.all(last == 0.0), last


def test_watchdog_fires_when_state_stops(robot, start_agent):
    agent = start_agent(stale_action="zero", state_timeout=0.3)
    robot.start_publishing(100.0)
    assert robot.wait_for_commands(20, timeout=30), agent.output()
    time.sleep(0.5)
    t_last = robot.stop_publishing()
    time.sleep(1.5)
    after = robot.commands_since(t_last + 0.3 + 0.5)  # well past state_timeout
    assert len(after) > 20, "commands must keep coming (zero) while the state is stale"
    arr = np.array([c for _, c in after])
    assert np.all(arr == 0.0)
    # the first zero command comes within state_timeout (plus scheduling slack)
    first_zero = next(t for t, c in robot.commands_since(t_last) if np.all(c == 0.0))
    assert first_zero - t_last < 0.3 + 0.5
    st = robot.wait_for_status("agent_node: safety", lambda s: values(s)["watchdog"] == "stale", timeout=5)
    assert st is not None and st.level == b"\x02"  # ERROR
    assert int(values(st)["watchdog_trips"]) >= 1
    # state comes back -> commands resume (random actions again, rate-limited from the stop command)
    robot.start_publishing(100.0)
    t_back = time.monotonic()
    time.sleep(1.5)
    resumed = np.array([c for _, c in robot.commands_since(t_back + 0.5)])
    assert len(resumed) > 10 and np.any(np.any(resumed != resumed[0], axis=1))
    st = robot.wait_for_status("agent_node: safety", lambda s: values(s)["watchdog"] == "ok", timeout=5)
    assert st is not None


def test_watchdog_covers_ee_pose(robot, start_agent):
    """/ee_pose is part of the observation: when it stops (joint states still flowing) -> stale."""
    agent = start_agent(stale_action="zero", state_timeout=0.3)
    robot.start_publishing(100.0)
    assert robot.wait_for_commands(20, timeout=30), agent.output()
    robot.publish_ee = False
    t = time.monotonic()
    time.sleep(1.5)
    after = np.array([c for _, c in robot.commands_since(t + 0.8)])
    assert len(after) > 20 and np.all(after == 0.0)
    st = robot.wait_for_status("agent_node: safety", lambda s: values(s)["watchdog"] == "stale", timeout=5)
    assert st is not None and values(st)["state_age_s"] != "inf"
    robot.publish_ee = True
    t = time.monotonic()
    time.sleep(1.0)
    assert np.any(np.array([c for _, c in robot.commands_since(t + 0.3)]) != 0.0)


def test_estop_latches_and_releases(robot, start_agent):
    from std_srvs.srv import SetBool

    agent = start_agent()
    robot.start_publishing(100.0)
    assert robot.wait_for_commands(10, timeout=30), agent.output()
    res = robot.call(SetBool, "/agent_node/estop", SetBool.Request(data=True))
    assert res.success
    t = time.monotonic()
    time.sleep(1.0)
    stopped = np.array([c for _, c in robot.commands_since(t + 0.1)])
    assert len(stopped) > 20 and np.all(stopped == 0.0), "e-stop must zero every command while the state flows"
    st = robot.wait_for_status("agent_node: safety", lambda s: values(s)["estop"] == "True", timeout=5)
    assert st is not None and st.level == b"\x02"
    # still latched a while later (no automatic release)
    time.sleep(0.5)
    assert np.all(np.array([c for _, c in robot.commands_since(t + 1.0)]) == 0.0)
    res = robot.call(SetBool, "/agent_node/estop", SetBool.Request(data=False))
    assert res.success
    t = time.monotonic()
    time.sleep(1.0)
    moving = np.array([c for _, c in robot.commands_since(t + 0.2)])
    assert np.any(moving != 0.0), "after release the agent commands again"


def test_bad_messages_are_rejected_and_counted(robot, start_agent):
    agent = start_agent()
    robot.start_publishing(50.0)
    assert robot.wait_for_commands(10, timeout=30), agent.output()
    bad = 0
    for _ in range(5):
        robot.publish_state(q=[0.1, np.nan, 0.1, 0.1, 0.1, 0.1])  # NaN
        robot.publish_state(q=[0.1] * 5, names=JOINTS[:5] + ["wrist_3"], velocity=[0.0] * 6)  # wrong size
        robot.publish_state(q=[0.1] * 7, names=JOINTS + ["gripper"])  # unknown joint
        old = robot.stamp()
        old.sec -= 100
        robot.publish_state(stamp=old)  # out of order
        bad += 4
        time.sleep(0.05)
    st = robot.wait_for_status("agent_node: safety",
                               lambda s: int(values(s)["rejected_total"]) >= bad - 4, timeout=10)
    assert st is not None, robot.latest_status("agent_node: safety")
    v = values(st)
    for reason in ("non_finite", "wrong_size", "unknown_joint", "out_of_order"):
        assert int(v.get(f"rejected /joint_states:{reason}", 0)) >= 3, v
    assert v["watchdog"] == "ok"
    assert agent.alive()
    t = time.monotonic()
    time.sleep(0.5)
    assert len(robot.commands_since(t)) > 10, "the control loop keeps running"


def test_joint_order_is_matched_by_name(robot, start_agent):
    # position commands with tiny velocity limits: every command stays within 1e-4 rad of the
    # measured positions, so a joint matched to the wrong name shows up as a wrong command
    agent = start_agent(command_interface="position", stale_action="hold", estop_action="hold",
                        velocity_limits=[0.001] * 6)
    robot.shuffle = True
    robot.start_publishing(100.0)
    assert robot.wait_for_commands(20, timeout=30), agent.output()
    t = time.monotonic()
    time.sleep(1.0)
    cmds = np.array([c for _, c in robot.commands_since(t)])
    assert len(cmds) > 10
    np.testing.assert_allclose(cmds, np.broadcast_to(robot.q, cmds.shape), atol=1e-3)


@pytest.mark.parametrize(
    "override,expected",
    [
        ("sac.lr:=-1.0", ["sac.lr", "-1.0", "[1e-06, 1.0]"]),
        ("control_rate:=5000.0", ["control_rate", "5000.0", "[1.0, 1000.0]"]),
        ("control_rate:=20", ["control_rate", "floating-point"]),
        ("stale_action:=brake", ["stale_action", "brake", "zero", "hold"]),
        ("stale_action:=hold", ["stale_action", "hold", "velocity", "keeps moving"]),
        ("estop_action:=hold", ["estop_action", "hold", "velocity", "keeps moving"]),
        ("max_abs_position:=2.0", ["max_abs_position", "joint limits"]),
        ("velocity_limits:=[1.0, 1.0]", ["velocity_limits", "2 values", "6 joints"]),
    ],
)
def test_bad_parameter_fails_at_startup(tmp_path, ros_domain, override, expected):
    import subprocess

    from test_agent_support import PARAMS

    argv = agent_executable() + ["--ros-args", "--params-file", str(PARAMS), "-p", "mode:=collect",
                                 "-p", f"run_dir:={tmp_path / 'run'}", "-p", override]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert out.returncode == 2, out.stdout + out.stderr
    for word in expected:
        assert word in out.stderr, out.stderr


def test_real_arm_drives_home_between_episodes(robot, start_agent):
    """reset_service '' (a real arm): after each episode the agent drives back to reach.home_pose."""
    from mbpo_ros.core.reach import ReachConfig

    home = np.array(ReachConfig().home_pose)
    robot.integrate = True
    agent = start_agent(**{"reach.episode_seconds": 0.4, "reset_timeout": 5.0, "home_tolerance": 0.03})
    robot.start_publishing(100.0)
    assert robot.wait_for_commands(10, timeout=30), agent.output()
    time.sleep(6.0)
    hist = np.array([q for _, q in robot.q_history])
    err = np.max(np.abs(hist - home), axis=1)
    assert err[0] > 0.5
    at_home = err < 0.04
    assert at_home.any(), f"closest to home: {err.min():.3f} rad"
    # after reaching home the next episode starts and random actions move the arm away again
    first = int(np.argmax(at_home))
    assert err[first:].max() > 0.06
    cmds = np.array([c for _, c in robot.commands_since(0.0)])
    assert np.all(np.abs(cmds) <= np.array(VEL_LIMITS) + 1e-9)
    assert np.max(np.abs(np.diff(cmds, axis=0))) <= 0.2 + 1e-9


def test_joint_trajectory_commands(robot, start_agent):
    """command_type trajectory: one JointTrajectory point per step, named joints, limits applied."""
    agent = start_agent(command_type="trajectory")
    robot.start_publishing(100.0)
    deadline = time.monotonic() + 30
    while len(robot.trajectories) < 50 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(robot.trajectories) >= 50, agent.output()
    assert not robot.commands, "no Float64MultiArray commands when the trajectory interface is chosen"
    for _, msg in robot.trajectories[-20:]:
        assert list(msg.joint_names) == JOINTS
        assert len(msg.points) == 1
        pt = msg.points[0]
        v = np.array(pt.velocities)
        assert v.shape == (6,) and np.all(np.abs(v) <= np.array(VEL_LIMITS) + 1e-9)
        np.testing.assert_allclose(np.array(pt.positions), robot.q + v * 0.02, atol=1e-9)
        assert pt.time_from_start.nanosec == 20_000_000


def test_live_parameter_changes(robot, start_agent):
    """Safe live changes apply at once; read-only and out-of-range ones are refused with a reason."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    def set_param(name, **value):
        req = SetParameters.Request(parameters=[Parameter(name=name, value=ParameterValue(**value))])
        return robot.call(SetParameters, "/agent_node/set_parameters", req).results[0]

    agent = start_agent(stale_action="zero")
    robot.start_publishing(100.0)
    assert robot.wait_for_commands(10, timeout=30), agent.output()
    res = set_param("sac.lr", type=ParameterType.PARAMETER_DOUBLE, double_value=0.1)
    assert not res.successful and "read-only" in res.reason
    res = set_param("state_timeout", type=ParameterType.PARAMETER_DOUBLE, double_value=-1.0)
    assert not res.successful
    res = set_param("stale_action", type=ParameterType.PARAMETER_STRING, string_value="hold")
    assert not res.successful and "keeps moving" in res.reason  # hold is motion on a velocity interface
    res = set_param("max_velocity_step", type=ParameterType.PARAMETER_DOUBLE, double_value=0.01)
    assert res.successful, res.reason
    res = set_param("state_timeout", type=ParameterType.PARAMETER_DOUBLE, double_value=0.5)
    assert res.successful, res.reason
    t = time.monotonic()
    time.sleep(1.0)
    arr = np.array([c for _, c in robot.commands_since(t + 0.1)])
    assert np.max(np.abs(np.diff(arr, axis=0))) <= 0.01 + 1e-9  # the new rate limit is in force
    t_last = robot.stop_publishing()
    time.sleep(1.5)
    stopped = np.array([c for _, c in robot.commands_since(t_last + 0.5 + 0.5)])
    assert len(stopped) > 10 and np.all(stopped == 0.0)  # stale -> zero, the refused hold never applied


def test_collect_mode_scripted_sine_actions(robot, start_agent):
    """collect_actions sine: a smooth sweep (random actions would hit the 0.2 rate limit)."""
    agent = start_agent(collect_actions="sine", max_velocity_step=0.5)
    robot.start_publishing(100.0)
    assert robot.wait_for_commands(60, timeout=30), agent.output()
    t = time.monotonic()
    time.sleep(1.5)
    arr = np.array([c for _, c in robot.commands_since(t)])
    steps = np.abs(np.diff(arr, axis=0))
    # joint j: 1.2 sin(2 pi f_j t) rad/s, f_j = 0.2 + 0.1 j Hz -> at most 1.2 * 2 pi f_j / 50 per step
    bound = 1.2 * 2 * np.pi * (0.2 + 0.1 * np.arange(6)) / 50.0
    assert np.all(steps.max(axis=0) <= bound + 1e-6), steps.max(axis=0)
    assert np.max(np.abs(arr)) > 0.3
