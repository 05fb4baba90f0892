"""Digital twin speed: simulated seconds per wall-clock second, and twin_node's CPU share at real time.

Measures
1. ArmTwin alone (no ROS) at the default 2 ms physics step: the arm driven by a random velocity
   command changed every control period (0.05 s), simulated seconds per wall second;
   the same through the gym env (`mbpo_ros/ArmReach-v0`, env steps per second).
2. twin_node as a process at real_time_factor 1 (100 Hz /joint_states, /ee_pose, /goal, /clock):
   CPU share from /proc/<pid>/stat (utime + stime) over a window of wall time.
3. twin_node at real_time_factor 0 (as fast as possible): the real-time factor it reports on
   /diagnostics.
4. twin_node in lock-step: command -> state round trips per second with an rclpy client.

Run:  AMENT_PREFIX_PATH=$PWD/.venv .venv/bin/python benchmarks/twin_speed.py [--cpu-seconds 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mbpo_ros.graph import LOCAL_DISCOVERY

ROOT = Path(__file__).resolve().parents[1]


def twin_alone(sim_seconds: float) -> float:
    from mbpo_ros.sim import ArmTwin

    twin = ArmTwin()
    twin.reset(seed=0, home=(0.0, 0.35, 1.35, 1.44, 0.0, 0.0))
    rng = np.random.default_rng(0)
    n = int(round(sim_seconds / 0.05))
    cmds = rng.uniform(-1.0, 1.0, size=(n, twin.n_joints))
    t0 = time.perf_counter()
    for c in cmds:
        twin.apply_command(c)
        twin.advance(0.05)
        twin.read()
        twin.ee_pose()
    return sim_seconds / (time.perf_counter() - t0)


def gym_steps_per_second(steps: int) -> float:
    import gymnasium as gym

    import mbpo_ros.sim  # noqa: F401

    env = gym.make("mbpo_ros/ArmReach-v0")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    acts = rng.uniform(-1, 1, size=(steps, 6)).astype(np.float32)
    t0 = time.perf_counter()
    for a in acts:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t0)


def _start_twin(*params: str) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "twin_node"
    argv = [str(exe), "--ros-args", "--params-file", str(ROOT / "config" / "twin.yaml")]
    for p in params:
        argv += ["-p", p]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def twin_node_cpu_share(window: float) -> float:
    proc = _start_twin("real_time_factor:=1.0")
    try:
        time.sleep(4.0)  # start-up (imports, model load) is not part of the steady state
        hz = os.sysconf("SC_CLK_TCK")
        c0, t0 = _cpu_ticks(proc.pid), time.monotonic()
        time.sleep(window)
        c1, t1 = _cpu_ticks(proc.pid), time.monotonic()
        return (c1 - c0) / hz / (t1 - t0)
    finally:
        _stop(proc)


def twin_node_max_rtf(window: float) -> float:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    proc = _start_twin("real_time_factor:=0.0")
    rclpy.init()
    node = rclpy.create_node("twin_speed_probe")
    values: list[float] = []

    def on_diag(msg):
        for st in msg.status:
            for kv in st.values:
                if kv.key == "real_time_factor":
                    values.append(float(kv.value))

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    try:
        end = time.monotonic() + window + 6.0
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        _stop(proc)
    steady = values[2:] or values  # skip the first reports (start-up)
    return float(np.median(steady)) if steady else float("nan")


def twin_node_lockstep_rate(n_steps: int) -> float:
    """Lock-step round trips per wall second: command -> one control period -> joint state back."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    proc = _start_twin("lockstep:=true")
    rclpy.init()
    node = rclpy.create_node("twin_speed_lockstep")
    stamps: list[int] = []
    node.create_subscription(JointState, "/joint_states",
                             lambda m: stamps.append(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec),
                             qos_profile_sensor_data)
    pub = node.create_publisher(Float64MultiArray, "/arm_controller/commands", 10)
    msg = Float64MultiArray(data=[0.1, 0.0, 0.0, 0.0, 0.0, -0.1])
    try:
        end = time.monotonic() + 30.0
        while (pub.get_subscription_count() == 0 or not stamps) and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
        t0 = time.perf_counter()
        for _ in range(n_steps):
            last = stamps[-1]
            pub.publish(msg)
            while stamps[-1] == last:
                rclpy.spin_once(node, timeout_sec=1.0)
        return n_steps / (time.perf_counter() - t0)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        _stop(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-seconds", type=float, default=10.0, help="window of the CPU share measurement")
    ap.add_argument("--sim-seconds", type=float, default=100.0, help="simulated seconds for the twin-alone run")
    args = ap.parse_args()
    os.environ.setdefault("AMENT_PREFIX_PATH", str(Path(sys.prefix)))
    os.environ.update(LOCAL_DISCOVERY)  # the twins this starts and the probe here: this host only
    from domain_coordinator import domain_id

    print("command: AMENT_PREFIX_PATH=$PWD/.venv .venv/bin/python benchmarks/twin_speed.py "
          f"--cpu-seconds {args.cpu_seconds:g} --sim-seconds {args.sim_seconds:g}")
    rtf = twin_alone(args.sim_seconds)
    print(f"ArmTwin alone, 2 ms physics step, 0.05 s control period: {rtf:.0f} simulated s per wall s")
    print(f"gym env mbpo_ros/ArmReach-v0: {gym_steps_per_second(5000):.0f} env steps/s (random actions)")
    with domain_id() as did:
        os.environ["ROS_DOMAIN_ID"] = str(did)
        share = twin_node_cpu_share(args.cpu_seconds)
        print(f"twin_node at real_time_factor 1 (100 Hz publishing): CPU {100 * share:.1f} % of one core "
              f"over {args.cpu_seconds:g} s")
        max_rtf = twin_node_max_rtf(args.cpu_seconds)
        print(f"twin_node at real_time_factor 0 (as fast as possible, publishing every 10 ms of sim time): "
              f"achieved real-time factor {max_rtf:.1f} (median of /diagnostics)")
        rate = twin_node_lockstep_rate(500)
        print(f"twin_node lock-step round trips (command -> 0.05 s simulated -> joint state), rclpy client in "
              f"another process: {rate:.0f} steps/s = {rate * 0.05:.1f} simulated s per wall s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
