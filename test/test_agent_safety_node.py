"""Issue 10's cases where the bug lived in the node: agent_node as a subprocess over real DDS.

The Controller-level regression tests of the same cases are in test_control_regressions.py.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from test_agent_support import robot_fixture, start_agent_fixture, values

pytestmark = pytest.mark.ros


@pytest.fixture
def robot(ros_context):
    yield from robot_fixture(ros_context)


@pytest.fixture
def start_agent(tmp_path, ros_domain):
    yield from start_agent_fixture(tmp_path)


def test_regression_clock_jump_back_under_sim_time_does_not_stop_the_control_loop(robot, start_agent):
    """/clock jumps back (a simulator reset) under use_sim_time: before, the control loop's sleep never
    woke, the last velocity stayed on the controller and SIGINT ended in SIGABRT. Now control goes on
    on the new timeline, the jump is on /diagnostics, and the node exits 0 (the fixture checks)."""
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    clock_pub = robot.node.create_publisher(Clock, "/clock", 10)
    sim = {"ns": 1000 * 10**9}
    lock = threading.Lock()

    def sim_stamp() -> Time:  # 10 ms of simulated time per state (100 Hz, real time), /clock first
        with lock:
            sim["ns"] += 10_000_000
            t = Time(sec=sim["ns"] // 10**9, nanosec=sim["ns"] % 10**9)
        clock_pub.publish(Clock(clock=t))
        return t

    agent = start_agent(use_sim_time=True)
    robot.start_publishing(100.0, clock=sim_stamp)
    assert robot.wait_for_commands(20, timeout=30), agent.output()
    with lock:
        sim["ns"] = 10 * 10**9  # the simulator resets: time back from ~1000 s to 10 s
    t_jump = time.monotonic()
    time.sleep(3.0)
    after = np.array([c for _, c in robot.commands_since(t_jump + 1.0)])
    assert len(after) > 20, f"{len(after)} commands in the 2 s after the jump:\n{agent.output()[-2000:]}"
    assert np.any(after != 0.0), "control goes on (collect mode: random actions) on the new timeline"
    st = robot.wait_for_status("agent_node: safety", lambda s: int(values(s)["clock_jumps"]) >= 1, timeout=5)
    assert st is not None, robot.latest_status("agent_node: safety")
    assert "clock jumped back" in values(st)["last_clock_jump"]
    assert "clock jumped back" in agent.output()
    assert agent.alive()


def test_regression_second_publisher_on_the_command_topic_is_an_error_and_estops(robot, start_agent):
    from std_msgs.msg import Float64MultiArray

    agent = start_agent(estop_on_foreign_publisher=True)
    robot.start_publishing(100.0)
    assert robot.wait_for_commands(20, timeout=30), agent.output()
    rogue = robot.node.create_publisher(Float64MultiArray, "/arm_controller/commands", 10)
    t = time.monotonic()
    for _ in range(20):
        rogue.publish(Float64MultiArray(data=[1e9] * 6))
        time.sleep(0.05)
    st = robot.wait_for_status("agent_node: safety", lambda s: values(s)["command_publishers"] == "2", timeout=10,
                               since=t)
    assert st is not None, robot.latest_status("agent_node: safety")
    assert st.level == b"\x02" and values(st)["estop"] == "True", (st.message, values(st))
    time.sleep(0.5)
    ours = [c for c in robot.commands_since(time.monotonic() - 0.4) if c[1][0] != 1e9]
    assert ours and all(np.all(c == 0.0) for _, c in ours), "the agent's own commands are zero (e-stop)"
    assert "publishers on the command topic" in agent.output()


def test_regression_negative_stamps_do_not_kill_the_node(robot, start_agent, tmp_path):
    """Before: one JointState stamped -99.91 s reached the transition log and killed the control thread."""
    from builtin_interfaces.msg import Time

    from mbpo_ros.io.transition_log import read_transitions

    agent = start_agent(log_transitions=True)
    robot.start_publishing(100.0)
    assert robot.wait_for_commands(20, timeout=30), agent.output()
    for _ in range(20):
        robot.publish_state(stamp=Time(sec=-100, nanosec=90_000_000))
        time.sleep(0.02)
    st = robot.wait_for_status("agent_node: safety",
                               lambda s: int(values(s).get("rejected /joint_states:negative_stamp", 0)) >= 10)
    assert st is not None, robot.latest_status("agent_node: safety")
    t = time.monotonic()
    time.sleep(0.5)
    assert agent.alive() and len(robot.commands_since(t)) > 10, agent.output()[-2000:]
    assert agent.stop() == 0, agent.output()
    log = read_transitions(tmp_path / "run" / "transitions.mcap")
    assert len(log["stamp_ns"]) > 10 and np.all(log["stamp_ns"] > 0)
    assert np.all(np.isfinite(log["obs"])) and np.all(np.isfinite(log["reward"]))


def test_regression_estop_hold_set_live_then_estop_commands_zero(robot, start_agent):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from std_srvs.srv import SetBool

    agent = start_agent()
    robot.start_publishing(100.0)
    assert robot.wait_for_commands(20, timeout=30), agent.output()
    req = SetParameters.Request(parameters=[Parameter(name="estop_action", value=ParameterValue(
        type=ParameterType.PARAMETER_STRING, string_value="hold"))])
    res = robot.call(SetParameters, "/agent_node/set_parameters", req).results[0]
    assert not res.successful and "velocity" in res.reason and "keeps moving" in res.reason
    assert robot.call(SetBool, "/agent_node/estop", SetBool.Request(data=True)).success
    t = time.monotonic()
    time.sleep(1.0)
    stopped = np.array([c for _, c in robot.commands_since(t + 0.1)])
    assert len(stopped) > 20 and np.all(stopped == 0.0)


def test_goal_published_before_the_agent_starts_is_received(robot, start_agent):
    """/goal is latched (transient local) on both sides: one goal sent before the agent exists is enough."""
    robot.publish_goal = False
    robot.publish_goal_once()
    time.sleep(0.5)
    agent = start_agent()
    robot.start_publishing(100.0)
    assert robot.wait_for_commands(30, timeout=30), agent.output()
    t = time.monotonic()
    time.sleep(1.0)
    cmds = np.array([c for _, c in robot.commands_since(t)])
    assert len(cmds) > 20 and np.any(cmds != 0.0), "not stale: the goal arrived"
    st = robot.wait_for_status("agent_node: safety", lambda s: values(s)["watchdog"] == "ok", timeout=5)
    assert st is not None
