"""train.launch.py brought up with launch_pytest, asserting on live topics.

Runs where a full ROS 2 install provides launch_pytest (e.g. `colcon test` on a Jazzy machine).
Its subprocess twin, test/test_e2e_graph.py, starts the same executables with the same
`--ros-args` that mbpo_ros/graph.py gives this launch file, and runs everywhere.
"""

from __future__ import annotations

import threading
import time
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


def _count_messages(domain_id: int, seconds: float) -> dict[str, int]:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    counts = {"joint_states": 0, "commands": 0}
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    try:
        node = rclpy.create_node("launch_probe", context=ctx)
        node.create_subscription(JointState, "/joint_states",
                                 lambda _m: counts.__setitem__("joint_states", counts["joint_states"] + 1),
                                 qos_profile_sensor_data)
        node.create_subscription(Float64MultiArray, "/arm_controller/commands",
                                 lambda _m: counts.__setitem__("commands", counts["commands"] + 1), 10)
        executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (counts["joint_states"] > 20 and counts["commands"] > 20):
            executor.spin_once(timeout_sec=0.1)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
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
