"""agent_lifecycle_node: agent_node as a managed node, driven through its lifecycle over real DDS.

The transitions are requested as a lifecycle manager (or `ros2 lifecycle set`) does, through the
node's lifecycle_msgs services; a fake robot (test_agent_support) publishes joint states and records
the commands. Deploy mode with a real (tiny) checkpoint: configure loads its policy.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import test_agent_support as support
from test_agent_support import BASE, robot_fixture, start_agent_fixture
from test_cli import _tiny_checkpoint

pytestmark = pytest.mark.ros


@pytest.fixture
def robot(ros_context):
    yield from robot_fixture(ros_context)


@pytest.fixture
def start_managed(tmp_path, ros_domain, monkeypatch):
    exe = Path(sys.executable).parent / "agent_lifecycle_node"
    argv = [str(exe)] if exe.is_file() else [
        sys.executable, "-c", "import sys; from mbpo_ros.nodes.agent_lifecycle_node import main; sys.exit(main())"]
    monkeypatch.setattr(support, "agent_executable", lambda: argv)
    yield from start_agent_fixture(tmp_path, BASE)


def _state(robot) -> str:
    from lifecycle_msgs.srv import GetState

    return robot.call(GetState, "/agent_node/get_state", GetState.Request(), timeout=30,
                      resend_every=5.0).current_state.label


def _change(robot, transition: int) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    req = ChangeState.Request(transition=Transition(id=transition))
    return robot.call(ChangeState, "/agent_node/change_state", req, timeout=60).success


def _quiet(robot, seconds: float = 1.0) -> bool:
    t = time.monotonic()
    time.sleep(seconds)
    return not robot.commands_since(t)


def test_managed_agent_commands_only_while_active_and_stops_with_zero(tmp_path, robot, start_managed):
    from lifecycle_msgs.msg import Transition
    from std_srvs.srv import SetBool

    _tiny_checkpoint(tmp_path / "trained" / "checkpoint")
    robot.start_publishing(100.0)
    agent = start_managed(mode="deploy", checkpoint=str(tmp_path / "trained" / "checkpoint"))
    assert _state(robot) == "unconfigured", agent.output()
    assert _quiet(robot), "an unconfigured agent commanded the arm"

    assert _change(robot, Transition.TRANSITION_CONFIGURE), agent.output()
    assert _state(robot) == "inactive"
    assert _quiet(robot), "an inactive agent commanded the arm"
    assert robot.call(SetBool, "/agent_node/estop", SetBool.Request(data=False)).success  # services are up

    for _ in range(2):  # activation can follow a deactivation
        t = time.monotonic()
        assert _change(robot, Transition.TRANSITION_ACTIVATE), agent.output()
        assert _state(robot) == "active"
        assert robot.wait_for_commands(20, timeout=30, since=t), agent.output()
        assert _change(robot, Transition.TRANSITION_DEACTIVATE), agent.output()
        assert _state(robot) == "inactive"
        time.sleep(0.3)  # the stop command in flight
        cmds = robot.commands_since(t)
        assert any(np.any(np.abs(c) > 0) for _, c in cmds), "the checkpoint's policy commanded nothing"
        np.testing.assert_array_equal(cmds[-1][1], np.zeros(6))  # deactivate: zero is the last word
        assert _quiet(robot), "commands went on after deactivate"

    assert _change(robot, Transition.TRANSITION_CLEANUP), agent.output()
    assert _state(robot) == "unconfigured"
    from rclpy.node import Node  # noqa: F401  (the robot node below lists the services)

    names = {n for n, _ in robot.node.get_service_names_and_types()}
    assert "/agent_node/estop" not in names and "/agent_node/change_state" in names
    assert agent.stop() == 0, agent.output()


def test_managed_agent_refuses_bad_parameters_at_start_in_one_line(tmp_path, ros_domain, start_managed):
    agent = support.AgentProcess(tmp_path, {**BASE, "control_rate": 0.0})  # not the fixture's: it must exit 2
    try:
        assert agent.proc.wait(60) == 2
    finally:
        agent.stop()
    text = agent.output()
    assert "control_rate" in text and "Traceback" not in text, text
