"""Helpers for the agent_node tests (no tests here): the node as a subprocess, a fake robot node.

The agent runs as `.venv/bin/agent_node --ros-args --params-file config/mbpo.yaml -p ...`, exactly
as a launch file would start it; a test rclpy node on the test's own ROS domain plays the robot.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "config" / "mbpo.yaml"
JOINTS = ["shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3"]


def agent_executable() -> list[str]:
    exe = Path(sys.executable).parent / "agent_node"
    if exe.is_file():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from mbpo_ros.nodes.agent_node import main; sys.exit(main())"]


def yaml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(yaml_value(x) for x in v) + "]"
    return str(v) if v else "''"



class AgentProcess:
    """agent_node as a subprocess; `stop()` sends SIGINT and returns the exit code (kills after timeout)."""

    def __init__(self, tmp_path: Path, params: dict, name: str = "agent") -> None:
        self.log_path = tmp_path / f"{name}.log"
        self.expected_exit = 0
        argv = agent_executable() + ["--ros-args", "--params-file", str(PARAMS)]
        for k, v in params.items():
            argv += ["-p", f"{k}:={yaml_value(v)}"]
        env = dict(os.environ)
        env.setdefault("AMENT_PREFIX_PATH", str(Path(sys.executable).parents[1]))
        env["PYTHONUNBUFFERED"] = "1"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60.0, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


class FakeRobot:
    """A test node that plays the robot: publishes joint states, goal and ee_pose; records commands."""

    def __init__(self, context, joints=JOINTS) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PointStamped, PoseStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        self.rclpy = rclpy
        self.joints = list(joints)
        self.node = Node("fake_robot", context=context)
        self.js_pub = self.node.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        # latched like twin_node's: the agent subscribes reliable + transient local
        self.goal_pub = self.node.create_publisher(PointStamped, "/goal", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.ee_pub = self.node.create_publisher(PoseStamped, "/ee_pose", qos_profile_sensor_data)
        self.lock = threading.Lock()
        self.commands: list[tuple[float, np.ndarray]] = []
        self.diagnostics: list[tuple[float, object]] = []
        self.node.create_subscription(Float64MultiArray, "/arm_controller/commands", self._on_cmd, 100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        from trajectory_msgs.msg import JointTrajectory

        self.trajectories: list[tuple[float, object]] = []
        self.node.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory",
                                      lambda m: self.trajectories.append((time.monotonic(), m)), 100)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        # spun in short slices and stopped before the node is destroyed (close()): executor.shutdown()
        # does not wait for a spin() in another thread, and destroying a node that thread is waiting on
        # races with it
        self._spin_stop = threading.Event()
        self._spin = threading.Thread(target=self._spin_until_closed, daemon=True)
        self._spin.start()
        self._pub_thread: threading.Thread | None = None
        self._pub_stop = threading.Event()
        self.q = np.linspace(0.1, 0.6, len(self.joints))
        self.shuffle = False
        self.integrate = False  # True: q follows the velocity commands (a kinematic arm)
        self.publish_ee = True  # False: /ee_pose goes silent while /joint_states goes on
        self.ee_frame = ""  # frame_id of /ee_pose
        self.publish_goal = True  # False: no /goal with each state (a latched one sent once is enough)
        self.published = 0
        self.q_history: list[tuple[float, np.ndarray]] = []

    def _spin_until_closed(self) -> None:
        while not self._spin_stop.is_set() and self.node.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def _on_cmd(self, msg) -> None:
        with self.lock:
            self.commands.append((time.monotonic(), np.array(msg.data)))

    def _on_diag(self, msg) -> None:
        with self.lock:
            self.diagnostics.append((time.monotonic(), msg))

    def stamp(self):
        return self.node.get_clock().now().to_msg()

    def publish_state(self, q=None, names=None, velocity=None, stamp=None) -> None:
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import JointState

        q = self.q if q is None else np.asarray(q, dtype=float)
        names = list(self.joints) if names is None else list(names)
        stamp = self.stamp() if stamp is None else stamp
        msg = JointState()
        msg.header.stamp = stamp
        msg.name = names
        msg.position = [float(x) for x in q]
        msg.velocity = [0.0] * len(q) if velocity is None else [float(x) for x in velocity]
        self.js_pub.publish(msg)
        ee = PoseStamped()
        ee.header.stamp = stamp
        ee.header.frame_id = self.ee_frame
        ee.pose.position.x, ee.pose.position.y, ee.pose.position.z = 0.3, 0.0, 0.3
        if self.publish_ee:
            self.ee_pub.publish(ee)
        if self.publish_goal:
            self.publish_goal_once(stamp)
        self.published += 1

    def publish_goal_once(self, stamp=None) -> None:
        from geometry_msgs.msg import PointStamped

        goal = PointStamped()
        goal.header.stamp = self.stamp() if stamp is None else stamp
        goal.point.x, goal.point.y, goal.point.z = 0.4, 0.1, 0.2
        self.goal_pub.publish(goal)

    def start_publishing(self, rate_hz: float = 100.0, clock=None) -> None:
        """Publish states at `rate_hz` (wall clock); `clock()`, if given, is the stamp (a Time message) of each."""
        self._pub_stop.clear()

        def run() -> None:
            rng = np.random.default_rng(0)
            period = 1.0 / rate_hz
            nxt = time.monotonic()
            while not self._pub_stop.is_set():
                if self.integrate:
                    with self.lock:
                        v = self.commands[-1][1] if self.commands else np.zeros(len(self.joints))
                    self.q = self.q + v * period
                    self.q_history.append((time.monotonic(), self.q.copy()))
                stamp = clock() if clock is not None else None
                if self.shuffle:
                    perm = rng.permutation(len(self.joints))
                    self.publish_state(q=self.q[perm], names=[self.joints[i] for i in perm], stamp=stamp)
                else:
                    self.publish_state(stamp=stamp)
                nxt += period
                time.sleep(max(0.0, nxt - time.monotonic()))

        self._pub_thread = threading.Thread(target=run, daemon=True)
        self._pub_thread.start()

    def stop_publishing(self) -> float:
        """Stop the state stream; returns the monotonic time of the last message."""
        self._pub_stop.set()
        if self._pub_thread is not None:
            self._pub_thread.join(2.0)
        return time.monotonic()

    def commands_since(self, t: float) -> list[tuple[float, np.ndarray]]:
        with self.lock:
            return [(tt, c) for tt, c in self.commands if tt >= t]

    def wait_for_commands(self, n: int = 1, timeout: float = 30.0, since: float = 0.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.commands_since(since)) >= n:
                return True
            time.sleep(0.05)
        return False

    def latest_status(self, name: str, since: float = 0.0):
        """The newest DiagnosticStatus named `name` received after `since` (or None)."""
        with self.lock:
            for t, arr in reversed(self.diagnostics):
                if t < since:
                    break
                for st in arr.status:
                    if st.name == name:
                        return st
        return None

    def wait_for_status(self, name: str, predicate, timeout: float = 15.0, since: float = 0.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.latest_status(name, since)
            if st is not None and predicate(st):
                return st
            time.sleep(0.1)
        return None

    def call(self, srv_type, name: str, request, timeout: float = 15.0, resend_every: float | None = None):
        """One service call. ``resend_every`` (for a query that may be repeated, such as GetState): send the
        request again after that many seconds without an answer. DDS can lose a reply when the server
        answers before its reply writer has matched the new client's reader (a discovery race that
        wait_for_service does not close; ros2/rmw_connextdds#132 describes it), most likely right after a
        node starts on a loaded machine."""
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {name} not available within {timeout} s")
            deadline = time.monotonic() + timeout
            futures = [client.call_async(request)]
            sent = time.monotonic()
            while not any(f.done() for f in futures) and time.monotonic() < deadline:
                time.sleep(0.02)
                if resend_every is not None and time.monotonic() - sent > resend_every:
                    futures.append(client.call_async(request))
                    sent = time.monotonic()
            answered = [f for f in futures if f.done()]
            if not answered:
                raise TimeoutError(f"no answer from {name} within {timeout} s ({len(futures)} requests sent)")
            return answered[0].result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.stop_publishing()
        self._spin_stop.set()
        self._spin.join(5.0)
        if self._spin.is_alive():
            raise RuntimeError("FakeRobot: the spin thread did not stop within 5 s")
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()


def values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


# --------------------------------------------------------------------------- fixtures

VEL_LIMITS = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
BASE = {
    "mode": "collect",
    "log_transitions": False,
    "control_rate": 50.0,
    "velocity_limits": VEL_LIMITS,
    "max_velocity_step": 0.2,
    "state_timeout": 0.3,
    "reset_service": "",
}

def robot_fixture(ros_context):
    """Body of a `robot` fixture: a FakeRobot on the test's context, closed afterwards."""
    r = FakeRobot(ros_context)
    yield r
    r.close()


def start_agent_fixture(tmp_path, base=None):
    """Body of a `start_agent` fixture: start(**params) -> AgentProcess; every agent must exit 0 (or the
    code a test set in its `expected_exit`)."""
    procs: list[AgentProcess] = []
    base = BASE if base is None else base

    def start(**params) -> AgentProcess:
        p = AgentProcess(tmp_path, {**base, "run_dir": str(tmp_path / "run"), **params}, name=f"agent{len(procs)}")
        procs.append(p)
        return p

    yield start
    for p in procs:
        code = p.stop()
        assert code == p.expected_exit, f"agent_node exited with {code}:\n{p.output()[-3000:]}"
