"""Fleet figures: policy lag publish -> install, bytes per arm, learner SAC updates/s with 1, 2, 4 arms.

Every process runs on this machine over real DDS (its own ROS_DOMAIN_ID, discovery on localhost):

- lag:     a publisher process sends policy snapshots (learner/wire.py SNAPSHOT frames, learner_node's QoS)
           of a Reach-size (obs 21, act 6, SAC actor 2x128) and a Hopper-size (obs 11, act 3, 2x256) policy;
           an agent-side process installs them through RemoteLink.on_snapshot (decode, SHA-256, identity
           check, PolicySnapshot) and records wall-clock publish -> install. p50/p99 over --snapshots.
- bytes:   what RemoteLink.frames_out sends per arm at control_rate 20 Hz (TRANSITIONS frames every
           50 ms as agent_node's timer does, a HEAD frame per second): payload bytes/s, without DDS headers.
- updates: a real learner_node (reach preset, device cpu, init_random_steps 200) fed by 1, 2 and 4
           simulated arms (one process, a RemoteLink per arm publishing random Reach transitions at
           20 Hz with the bundled arm's identity); SAC updates/s from the learner's own /diagnostics
           (its sac_updates counter over --seconds after the first update).

Transitions lost across a learner restart and a 30 s cut are measured by the slow graph test
(test/test_fleet_graph.py::test_learner_restart_and_cut_lose_nothing, which fails on any loss).

    nice -n 10 .venv/bin/python benchmarks/fleet.py                   # all three
    nice -n 10 .venv/bin/python benchmarks/fleet.py --only lag --snapshots 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mbpo_ros import graph  # noqa: E402

SIZES = {"reach": (21, 6, 128), "hopper": (11, 3, 256)}


def _identity(obs_dim: int, act_dim: int) -> dict:
    from mbpo_ros.core.identity import robot_identity
    from mbpo_ros.core.reach import ReachConfig, ReachTask

    task = ReachTask(ReachConfig(), n_joints=6)
    robot = robot_identity(["shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3"],
                           [-3.0, -2.0, -2.6, -2.6, -3.0, -3.0], [3.0, 2.0, 2.6, 2.6, 3.0, 3.0], [3.14] * 6,
                           "velocity", 20.0)
    settings = task.settings()
    settings.update(obs_dim=obs_dim, act_dim=act_dim)
    return {"task": settings, "robot": robot}


def _policy(obs_dim: int, act_dim: int, hidden: int, version: int):
    from mbpo_ros.core.policy import PolicySnapshot

    rng = np.random.default_rng(version)
    dims = [obs_dim, hidden, hidden, 2 * act_dim]
    return PolicySnapshot([rng.standard_normal((a, b)).astype(np.float32) * 0.1 for a, b in zip(dims, dims[1:])],
                          [np.zeros(b, np.float32) for b in dims[1:]], -20.0, 2.0, version)


# ----------------------------------------------------------------------------- roles (child processes)


def role_lag_agent(size: str, count: int, out: str) -> None:
    """Install snapshots as agent_node does; write the publish -> install lags (s) to `out`."""
    import rclpy
    from std_msgs.msg import UInt8MultiArray

    from mbpo_ros.learner.remote import RemoteLink
    from mbpo_ros.nodes.learner_node import POLICY_QOS

    o, a, _h = SIZES[size]
    link = RemoteLink("/bench/agent_node", _identity(o, a), o, a)
    lags: list[float] = []
    rclpy.init()
    node = rclpy.create_node("bench_agent")

    def on(msg):
        before = link.installs
        link.on_snapshot(bytes(msg.data), time.monotonic())
        if link.installs > before:
            lags.append(link.last_lag_s)

    node.create_subscription(UInt8MultiArray, "/mbpo_fleet/policy", on, POLICY_QOS)
    deadline = time.monotonic() + 60.0 + count * 0.2
    while len(lags) < count and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    Path(out).write_text(json.dumps(lags))
    node.destroy_node()
    rclpy.shutdown()


def role_arms(n: int, seconds: float) -> None:
    """n simulated arms: random Reach transitions at 20 Hz through RemoteLink, as agent_node sends them."""
    import rclpy
    from std_msgs.msg import UInt8MultiArray

    from mbpo_ros.learner.remote import RemoteLink
    from mbpo_ros.nodes.learner_node import TRANSITIONS_QOS, frame_msg

    o, a, _h = SIZES["reach"]
    rclpy.init()
    node = rclpy.create_node("bench_arms")
    pub = node.create_publisher(UInt8MultiArray, "/mbpo_fleet/transitions", TRANSITIONS_QOS)
    links = [RemoteLink(f"/arm{i + 1}/agent_node", _identity(o, a), o, a) for i in range(n)]
    rng = np.random.default_rng(0)
    t0 = next_t = time.monotonic()
    try:
        while time.monotonic() - t0 < seconds:
            for link in links:
                obs = rng.standard_normal(o).astype(np.float32)
                link.submit(obs, rng.uniform(-1, 1, a), float(rng.standard_normal()), obs + 0.01, False, False)
                for f in link.frames_out(time.monotonic()):
                    pub.publish(frame_msg(f))
            next_t += 0.05
            rclpy.spin_once(node, timeout_sec=max(0.0, next_t - time.monotonic()))
    except Exception:
        if rclpy.ok():
            raise
        return  # SIGTERM from the benchmark: rclpy shut the context down
    node.destroy_node()
    rclpy.shutdown()


# ----------------------------------------------------------------------------- measurements


def _env(domain: int) -> dict:
    return graph.local_env(ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1")


def measure_lag(size: str, count: int, domain: int) -> dict:
    import rclpy
    from std_msgs.msg import UInt8MultiArray

    from mbpo_ros.learner import wire
    from mbpo_ros.nodes.learner_node import POLICY_QOS, frame_msg

    o, a, h = SIZES[size]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "lags.json"
        agent = subprocess.Popen([sys.executable, __file__, "--role", "lag-agent", "--size", size, "--count", str(count),
                                  "--out", str(out)], env=_env(domain))
        os.environ["ROS_DOMAIN_ID"] = str(domain)
        rclpy.init()
        node = rclpy.create_node("bench_learner")
        pub = node.create_publisher(UInt8MultiArray, "/mbpo_fleet/policy", POLICY_QOS)
        ident = _identity(o, a)
        while pub.get_subscription_count() == 0 and agent.poll() is None:
            rclpy.spin_once(node, timeout_sec=0.1)
        time.sleep(1.0)
        nbytes = 0
        for v in range(1, count + 1):
            data = wire.encode_snapshot(v, "bench", v, ident, _policy(o, a, h, v).to_arrays(), stamp=time.time())
            nbytes = len(data)
            pub.publish(frame_msg(data))
            time.sleep(0.1)
        agent.wait(120)
        node.destroy_node()
        rclpy.shutdown()
        lags = np.array(json.loads(out.read_text())) * 1e3
    return {"size": size, "snapshot_bytes": nbytes, "installed": len(lags), "sent": count,
            "lag_p50_ms": float(np.percentile(lags, 50)), "lag_p99_ms": float(np.percentile(lags, 99)),
            "lag_max_ms": float(lags.max())}


def measure_bytes(seconds: float = 60.0) -> dict:
    from mbpo_ros.learner.remote import RemoteLink

    o, a, _h = SIZES["reach"]
    link = RemoteLink("/arm1/agent_node", _identity(o, a), o, a, now=0.0)
    rng = np.random.default_rng(0)
    total = 0
    for k in range(int(seconds * 20)):
        obs = rng.standard_normal(o)
        link.submit(obs, rng.uniform(-1, 1, a), 0.0, obs, False, False)
        total += sum(len(f) for f in link.frames_out(k * 0.05))  # the 50 ms timer after each 20 Hz step
    return {"control_rate_hz": 20, "payload_bytes_per_s": total / seconds,
            "payload_bytes_per_transition": total / (seconds * 20)}


def measure_updates(n_arms: int, seconds: float, domain: int, tmp: Path) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    cfg = tmp / "learner.yaml"
    cfg.write_text("/**/learner_node:\n  ros__parameters:\n    mbpo:\n      init_random_steps: 200\n")
    spec, = graph.learner_graph(graph.LearnerArgs(run_dir=str(tmp / f"learner{n_arms}"), device="cpu",
                                                  checkpoint_period=0.0, config=str(cfg)))
    log = open(tmp / f"learner{n_arms}.log", "w")  # noqa: SIM115
    learner = subprocess.Popen(graph.command_line(spec), env=_env(domain), stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    arms = subprocess.Popen([sys.executable, __file__, "--role", "arms", "--arms", str(n_arms),
                             "--seconds", str(seconds + 200)], env=_env(domain))
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    rclpy.init()
    node = rclpy.create_node("bench_probe")
    latest: dict = {}

    def on(msg):
        for st in msg.status:
            if st.name == "learner_node: fleet":
                latest["v"] = {kv.key: kv.value for kv in st.values}

    node.create_subscription(DiagnosticArray, "/diagnostics", on, 10)
    try:
        t_end = time.monotonic() + 240.0
        while time.monotonic() < t_end and int(latest.get("v", {}).get("sac_updates") or 0) == 0:
            rclpy.spin_once(node, timeout_sec=0.2)
        v0, t0 = dict(latest.get("v", {})), time.monotonic()
        t_end = t0 + seconds
        while time.monotonic() < t_end:
            rclpy.spin_once(node, timeout_sec=0.2)
        v1, t1 = dict(latest.get("v", {})), time.monotonic()
    finally:
        node.destroy_node()
        rclpy.shutdown()
        arms.terminate()
        learner.send_signal(2)
        try:
            learner.wait(120)
        except subprocess.TimeoutExpired:
            learner.kill()
        arms.wait(30)
        log.close()
    du = int(v1.get("sac_updates") or 0) - int(v0.get("sac_updates") or 0)
    return {"arms": n_arms, "seconds": round(t1 - t0, 1), "sac_updates": du, "updates_per_s": du / (t1 - t0),
            "fleet_transitions": int(v1.get("env_steps") or 0), "model_trains_note": "retrains every 250 fleet steps"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=("lag", "bytes", "updates"))
    ap.add_argument("--snapshots", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0, help="updates/s window per arm count")
    ap.add_argument("--arm-counts", default="1,2,4")
    ap.add_argument("--domain", type=int, default=77)
    ap.add_argument("--role", choices=("lag-agent", "arms"), help=argparse.SUPPRESS)
    ap.add_argument("--size", default="reach", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    ap.add_argument("--arms", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "lag-agent":
        role_lag_agent(args.size, args.count, args.out)
        return 0
    if args.role == "arms":
        role_arms(args.arms, args.seconds)
        return 0
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    if args.only in (None, "bytes"):
        print(json.dumps({"bytes": measure_bytes()}), flush=True)
    if args.only in (None, "lag"):
        for size in SIZES:
            print(json.dumps({"lag": measure_lag(size, args.snapshots, args.domain)}), flush=True)
    if args.only in (None, "updates"):
        with tempfile.TemporaryDirectory() as tmp:
            for n in (int(x) for x in args.arm_counts.split(",")):
                print(json.dumps({"updates": measure_updates(n, args.seconds, args.domain + n, Path(tmp))}),
                      flush=True)
    print(f"load after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
