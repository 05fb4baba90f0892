"""train.launch.py brought up with launch_pytest, asserting on live topics.

Runs where a full ROS 2 install provides launch_pytest (e.g. `colcon test` on a Jazzy machine).
Its subprocess twin, test/test_e2e_graph.py, starts the same executables with the same
`--ros-args` that mbpo_ros/graph.py gives this launch file, and runs everywhere.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

launch_pytest = pytest.importorskip(
    "launch_pytest",
    reason="launch_pytest comes with a full ROS 2 install; the subprocess twin of this test runs everywhere",
)
import launch  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

pytestmark = [pytest.mark.launch, pytest.mark.ros]

TRAIN_LAUNCH = Path(__file__).resolve().parents[1] / "launch" / "train.launch.py"


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return tmp_path / "run"


@launch_pytest.fixture
def train_graph_ld(ros_domain, run_dir):
    """train.launch.py in lock-step simulated time, on this test's own ROS domain."""
    return launch.LaunchDescription([
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(str(TRAIN_LAUNCH)),
            launch_arguments={
                "lockstep": "true",
                "real_time_factor": "0",
                "run_dir": str(run_dir),
                "seed": "0",
                "device": "cpu",
            }.items(),
        ),
        launch_pytest.actions.ReadyToTest(),
    ])


def _listen(domain_id: int, subscribe, done, seconds: float) -> None:
    """Spin a probe node on `domain_id`, its subscriptions made by `subscribe(node)`, until `done()` or
    `seconds` have passed."""
    import rclpy
    from graph_helpers import spin_until

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    try:
        node = rclpy.create_node("launch_probe", context=ctx)
        subscribe(node)
        executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        spin_until(executor, done, seconds)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def _count_messages(domain_id: int, seconds: float) -> dict[str, int]:
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    counts = {"joint_states": 0, "commands": 0}

    def subscribe(node) -> None:
        node.create_subscription(JointState, "/joint_states",
                                 lambda _m: counts.__setitem__("joint_states", counts["joint_states"] + 1),
                                 qos_profile_sensor_data)
        node.create_subscription(Float64MultiArray, "/arm_controller/commands",
                                 lambda _m: counts.__setitem__("commands", counts["commands"] + 1), 10)

    _listen(domain_id, subscribe, lambda: counts["joint_states"] > 20 and counts["commands"] > 20, seconds)
    return counts


@pytest.mark.launch(fixture=train_graph_ld)
def test_train_launch_graph_runs_and_checkpoints_on_shutdown(ros_domain, run_dir):
    result: dict[str, int] = {}
    worker = threading.Thread(target=lambda: result.update(_count_messages(ros_domain, 60.0)))
    worker.start()
    worker.join()
    assert result["joint_states"] > 20, f"twin published {result['joint_states']} joint states in 60 s"
    assert result["commands"] > 20, f"agent published {result['commands']} commands in 60 s"
    yield
    # After launch shut the graph down (SIGINT), the agent has written its final checkpoint and the log.
    assert (run_dir / "checkpoint").is_dir(), f"no final checkpoint in {run_dir}"
    assert (run_dir / "transitions" / "metadata.yaml").is_file(), f"no transition log (rosbag2 directory) in {run_dir}"


ARM_LAUNCH = Path(__file__).resolve().parents[1] / "launch" / "arm.launch.py"
STAND_IN_ARM = Path(__file__).resolve().parent / "stand_in_arm.py"


@pytest.fixture
def ur5e_user_dir(tmp_path, monkeypatch) -> Path:
    """The working directory of the README's real-arm commands: ur5e.urdf and ur5e_limits.yaml in it."""
    from arm_urdf import ur5e_urdf
    from test_arm_launch import readme_limits_yaml

    ur5e_urdf(tmp_path / "ur5e.urdf")
    (tmp_path / "ur5e_limits.yaml").write_text(readme_limits_yaml())
    monkeypatch.chdir(tmp_path)
    return tmp_path


@launch_pytest.fixture
def arm_collect_ld(ros_domain, ur5e_user_dir):
    """The README's `arm.launch.py mode:=collect ...` command, as written, beside the stand-in UR5e."""
    import sys

    from launch.actions import ExecuteProcess
    from test_arm_launch import arm_commands

    return launch.LaunchDescription([
        ExecuteProcess(cmd=[sys.executable, str(STAND_IN_ARM)], output="screen"),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(ARM_LAUNCH)),
                                 launch_arguments=arm_commands()["collect"].items()),
        launch_pytest.actions.ReadyToTest(),
    ])


def _arm_commands(domain_id: int, seconds: float) -> list[list[float]]:
    from std_msgs.msg import Float64MultiArray

    got: list[list[float]] = []
    _listen(domain_id,
            lambda node: node.create_subscription(Float64MultiArray, "/forward_velocity_controller/commands",
                                                  lambda m: got.append(list(m.data)), 50),
            lambda: sum(any(v != 0.0 for v in c) for c in got) >= 40, seconds)
    return got


@pytest.mark.launch(fixture=arm_collect_ld)
def test_arm_launch_collects_from_the_stand_in_ur5e(ros_domain, ur5e_user_dir):
    got: list[list[float]] = []
    worker = threading.Thread(target=lambda: got.extend(_arm_commands(ros_domain, 60.0)))
    worker.start()
    worker.join()
    moving = [c for c in got if any(v != 0.0 for v in c)]
    assert len(moving) >= 40, f"{len(got)} commands ({len(moving)} non-zero) on forward_velocity_controller/commands"
    assert all(len(c) == 6 and max(abs(v) for v in c) <= 1.2 for c in got), "6 joints, within the limits file"
    yield
    run = ur5e_user_dir / "runs" / "ur5e-collect"
    assert (run / "transitions" / "metadata.yaml").is_file(), f"no transition log (rosbag2 directory) in {run}"
