"""Test helpers for node graphs run as subprocesses: Graph (start, stop, logs) and Probe (a listener).

Used by the graph tests (test_e2e_graph.py, test_reference.py, test_fleet_graph.py, ...); not a test
module itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from mbpo_ros import graph


def spin_until(executor, predicate, timeout: float, alive=lambda: True) -> bool:
    """Spin `executor` until predicate() holds (True), `alive()` turns false or `timeout` s pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        if not alive():
            return False
        executor.spin_once(timeout_sec=0.05)
    return predicate()


class Graph:
    """The node processes of a graph; stop() SIGINTs them (agent first) and returns the exit codes.

    Processes are keyed by node name; where two nodes share a name (a fleet), by ``<namespace>_<name>``
    (arm1_agent_node).
    """

    def __init__(self, specs, log_dir: Path):
        names = [s.name for s in specs]
        self.specs = {self.key(s) if names.count(s.name) > 1 else s.name: s for s in specs}
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        for key in self.specs:
            self.start(key)

    @staticmethod
    def key(spec) -> str:
        return f"{spec.namespace.strip('/').replace('/', '_')}_{spec.name}" if spec.namespace else spec.name

    def start(self, key: str) -> subprocess.Popen:
        """(Re)start one node; a restart appends to its log."""
        self.logs[key] = self.log_dir / f"{key}.log"
        with open(self.logs[key], "a") as log:
            self.procs[key] = subprocess.Popen(graph.command_line(self.specs[key]), stdout=log,
                                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                               start_new_session=True, env=graph.local_env())
        return self.procs[key]

    def log_text(self) -> str:
        return "\n".join(f"--- {n}:\n{p.read_text(errors='replace')[-3000:]}" for n, p in self.logs.items())

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs.values())

    def stop(self) -> dict[str, int | None]:
        """Stop each node as ros2 launch would (graph.NodeSpec.stop_sequence: SIGINT, then SIGTERM after
        its grace); None for a node that needed SIGKILL."""
        codes = {}
        for name in sorted(self.procs, key=lambda n: not n.endswith("agent_node")):
            p = self.procs[name]
            codes[name] = None
            for sig, wait in self.specs[name].stop_sequence()[:2]:
                if p.poll() is None:
                    p.send_signal(getattr(signal, sig))
                try:
                    codes[name] = p.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        for p in self.procs.values():  # never leave a process behind, whatever happened above
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        return codes


class Probe:
    """An rclpy node on the test's domain recording joint states and commands with arrival times.

    It listens on the relative names joint_states and arm_controller/commands inside ``namespace``
    (empty = the root namespace: /joint_states, /arm_controller/commands).
    """

    def __init__(self, ctx, namespace: str = ""):
        import rclpy
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        self.node = rclpy.create_node("e2e_probe", context=ctx, namespace=namespace or None)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self.states: list[tuple[float, float, np.ndarray]] = []  # (wall, stamp, position)
        self.commands: list[tuple[float, np.ndarray]] = []
        self.node.create_subscription(JointState, "joint_states", self._on_state, qos_profile_sensor_data)
        self.node.create_subscription(Float64MultiArray, "arm_controller/commands", self._on_command, 50)

    def _on_state(self, msg):
        stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        self.states.append((time.monotonic(), stamp, np.array(msg.position)))

    def _on_command(self, msg):
        self.commands.append((time.monotonic(), np.array(msg.data)))

    def spin_until(self, predicate, timeout: float, alive=lambda: True) -> bool:
        return spin_until(self.executor, predicate, timeout, alive)

    def close(self):
        self.executor.remove_node(self.node)
        self.node.destroy_node()
