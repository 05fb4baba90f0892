"""A stand-in for a real UR5e under ros2_control, for the real-arm launch tests: not the twin, plain rclpy.

What it does is what the ros2_control stack of a UR5e with a gripper looks like from outside:

- publishes ``joint_states`` (sensor_msgs/JointState, wall-clock stamps, `rate` Hz) for the six UR joints
  *and* a gripper joint, in a new random order in every message (joint_state_broadcaster sorts by its
  interface list, which need not be the controller's order);
- listens on ``forward_velocity_controller/commands`` (std_msgs/Float64MultiArray, one velocity per
  joint in the controller's order: shoulder_pan_joint ... wrist_3_joint) as forward_command_controller
  does: a command of another length is refused (counted, logged), the last good one is held (the
  controller has no timeout);
- integrates the held velocity at the publishing rate, each joint clipped to its velocity limit and its
  position range (the UR5e datasheet values in arm_urdf.py); the gripper joint never moves.

Names are relative, so ``--namespace /arm1`` moves it. Run as a process::

    python test/stand_in_arm.py [--namespace NS] [--rate HZ] [--start q1,...,q6] [--seed S]

It exits 0 on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from arm_urdf import UR5E_JOINTS, UR5E_LIMITS, UR5E_VELOCITY  # noqa: E402

GRIPPER_JOINT = "robotiq_85_left_knuckle_joint"
COMMAND_TOPIC = "forward_velocity_controller/commands"
#: where the arm starts: away from the twin-style home pose, each joint somewhere else
START = (0.3, -1.2, 1.0, -0.8, -1.4, 0.6)


class StandInArm:
    """The arm's state and its controller's rule, without ROS (the node below wires it)."""

    def __init__(self, start=START) -> None:
        self.q = np.array(start, dtype=np.float64)
        self.qd = np.zeros(len(UR5E_JOINTS))
        self.command = np.zeros(len(UR5E_JOINTS))
        self.lower = np.array([lo for lo, _ in UR5E_LIMITS])
        self.upper = np.array([hi for _, hi in UR5E_LIMITS])
        self.vmax = np.array(UR5E_VELOCITY)
        self.refused = 0
        self.received = 0

    def on_command(self, data) -> bool:
        v = np.asarray(data, dtype=np.float64)
        if v.shape != (len(UR5E_JOINTS),) or not np.all(np.isfinite(v)):
            self.refused += 1
            return False
        self.command = v
        self.received += 1
        return True

    def advance(self, dt: float) -> None:
        v = np.clip(self.command, -self.vmax, self.vmax)
        q = np.clip(self.q + v * dt, self.lower, self.upper)
        self.qd = (q - self.q) / dt
        self.q = q


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--namespace", default="")
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--start", default=",".join(str(x) for x in START))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    arm = StandInArm([float(x) for x in args.start.split(",")])
    lock = threading.Lock()
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # our own handlers below end the loop
    node = rclpy.create_node("stand_in_arm", namespace=args.namespace or None)
    pub = node.create_publisher(JointState, "joint_states", qos_profile_sensor_data)

    def on_command(msg) -> None:
        with lock:
            ok = arm.on_command(msg.data)
        if not ok:
            node.get_logger().error(f"command of {len(msg.data)} values refused: the controller has "
                                    f"{len(UR5E_JOINTS)} joints", throttle_duration_sec=1.0)

    node.create_subscription(Float64MultiArray, COMMAND_TOPIC, on_command, 10)
    names = [*UR5E_JOINTS, GRIPPER_JOINT]
    rng = np.random.default_rng(args.seed)
    period = 1.0 / args.rate
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    node.get_logger().info(f"stand-in UR5e: joint_states at {args.rate:g} Hz, commands on {COMMAND_TOPIC}")
    nxt = time.monotonic()
    while not stop.is_set():
        with lock:
            arm.advance(period)
            q, qd = np.append(arm.q, 0.0), np.append(arm.qd, 0.0)
        order = rng.permutation(len(names))
        msg = JointState()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.name = [names[i] for i in order]
        msg.position = [float(q[i]) for i in order]
        msg.velocity = [float(qd[i]) for i in order]
        pub.publish(msg)
        nxt += period
        time.sleep(max(0.0, nxt - time.monotonic()))
    spinner.join(2.0)
    node.get_logger().info(f"stand-in UR5e: {arm.received} commands held, {arm.refused} refused")
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
