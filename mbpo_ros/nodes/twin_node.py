"""twin_node: the MuJoCo arm (ArmTwin) over ROS 2, looking like an arm driven by ros2_control.

Wiring (names as resolved in the root namespace: the node uses relative names, so under namespace
/arm1 they are /arm1/joint_states, /arm1/arm_controller/commands, ...; /clock and /diagnostics are
global; config/twin.yaml's `/**/twin_node:` section applies in any namespace)::

    parameters (config/twin.yaml)  -> TwinConfig (sim/arm_twin.py) + reach.* (core/reach.py) + node settings
    /arm_controller/commands       std_msgs/Float64MultiArray, one value per joint (forward_command_controller)
    /arm_controller/joint_trajectory  trajectory_msgs/JointTrajectory (first point), optional
    -> ArmTwin.apply_command (holds the last command; wrong length / NaN / Inf rejected, logged, counted)
    physics: real_time_factor 1 = wall-clock time, >1 faster, 0 = as fast as possible;
             lockstep = one control_period per command received
    /joint_states   sensor_msgs/JointState (names, position, velocity, effort), publish_rate Hz
    /ee_pose        geometry_msgs/PoseStamped of the end-effector site
    /goal           geometry_msgs/PointStamped (transient local: late joiners get it)
    /clock          rosgraph_msgs/Clock, when the twin owns time (publish_clock, the default)
    /diagnostics    diagnostic_msgs/DiagnosticArray at 1 Hz: achieved real-time factor, rejected commands
    ~/reset         std_srvs/Trigger: new episode (home pose + noise, new goal from the reach box)

Time: the twin is the time source and never uses sim time itself. When it owns time, every
message is stamped with simulated time (starting at 0 and never going back, across resets) and
/clock is published with each state. In lock-step mode each accepted command advances exactly one
control_period and then publishes /joint_states, /ee_pose, /goal and /clock with the new time; the
initial state is published at start and after each reset (a reset takes one control_period of
simulated time, so the first state of an episode is newer than the last one of the previous), and
when no command arrives for lockstep_republish_period wall seconds the current state is published
again with the SAME stamp, so a late-joining agent can start and can tell a repeat from a new state.

Realism knobs (all off by default): sensor noise, command latency and per-episode randomisation of
masses, damping and friction live in ArmTwin (TwinConfig); drop_probability loses incoming commands
(the arm keeps the previous one; in lock-step the period still elapses) and outgoing joint states
(in lock-step the next re-publish delivers the state).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped, PoseStamped
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from mbpo_ros.core.reach import ReachConfig, ReachTask
from mbpo_ros.nodes.params import (
    ParameterError,
    ParamSpec,
    check_command_line_params_files,
    check_value,
    declare_specs,
    report_bad_parameter,
)
from mbpo_ros.nodes.ros_logging import route_python_logging
from mbpo_ros.sim.arm_twin import ArmTwin, TwinConfig

NODE_NAME = "twin_node"
#: reach.* parameters the twin reads (goal box and start pose); the agent reads the same names.
REACH_FIELDS = ("goal_low", "goal_high", "home_pose", "home_noise")
#: parameters that may change while the node runs (everything else is read-only: read at start-up).
LIVE_PARAMETERS = ("drop_probability",)


@dataclasses.dataclass(frozen=True)
class TwinNodeParams:
    """twin_node's own settings (the arm and its physics are TwinConfig, the task box reach.*)."""

    publish_rate: float = dataclasses.field(default=100.0, metadata={
        "doc": "rate of /joint_states and /ee_pose in the node's time (simulated time when it owns time) [Hz]; "
               "not used in lock-step mode", "lo": 1.0, "hi": 1000.0})
    real_time_factor: float = dataclasses.field(default=1.0, metadata={
        "doc": "simulated seconds per wall-clock second: 1 = real time, >1 faster, 0 = as fast as possible",
        "lo": 0.0, "hi": 1000.0})
    lockstep: bool = dataclasses.field(default=False, metadata={
        "doc": "advance exactly one control_period per command received (deterministic, compute-bound)"})
    control_period: float = dataclasses.field(default=0.05, metadata={
        "doc": "lock-step: simulated seconds advanced per command [s]", "lo": 0.001, "hi": 10.0})
    lockstep_republish_period: float = dataclasses.field(default=0.5, metadata={
        "doc": "lock-step: re-publish the current state (same stamp) after this long without a command "
               "[wall s]", "lo": 0.01, "hi": 60.0})
    publish_clock: bool = dataclasses.field(default=True, metadata={
        "doc": "own the time: publish /clock and stamp in simulated time; false = stamp with the wall "
               "clock like a real arm (only with real_time_factor 1 and without lockstep)"})
    frame_id: str = dataclasses.field(default="base_link", metadata={
        "doc": "frame of /ee_pose and /goal (the arm's base)"})
    seed: int = dataclasses.field(default=0, metadata={
        "doc": "seed of goals, start poses, noise, randomisation and dropped messages", "lo": 0, "hi": 2**31 - 1})
    drop_probability: float = dataclasses.field(default=0.0, metadata={
        "doc": "probability that a command is lost and that a joint state is not published (realism)",
        "lo": 0.0, "hi": 0.9})
    diagnostics_period: float = dataclasses.field(default=1.0, metadata={
        "doc": "period of /diagnostics [wall s]", "lo": 0.05, "hi": 60.0})


def _specs() -> list[ParamSpec]:
    """ParamSpecs of every twin_node parameter: node settings, TwinConfig fields, reach.* fields."""
    out = []
    for f in dataclasses.fields(TwinNodeParams):
        m = f.metadata
        ro = f.name not in LIVE_PARAMETERS
        out.append(ParamSpec(f.name, f.default, m["doc"], m.get("lo"), m.get("hi"), ro, None, "node"))
    for f in dataclasses.fields(TwinConfig):
        m = f.metadata
        default = f.default
        doc = m["doc"]
        choices = None
        if isinstance(default, tuple):  # joint/actuator names: ['auto'] = found from the model
            default = ["auto"]
            doc = doc.replace("empty =", "['auto'] =")
        elif f.name == "model_path":
            doc = doc.replace("empty =", "'' =")
        if f.name == "command_interface":
            choices = ("velocity", "position")
        out.append(ParamSpec(f.name, default, doc, m.get("lo"), m.get("hi"), True, choices, "twin"))
    for f in dataclasses.fields(ReachConfig):
        if f.name in REACH_FIELDS:
            m = f.metadata
            default = list(f.default) if isinstance(f.default, tuple) else f.default
            out.append(ParamSpec(f"reach.{f.name}", default, m["doc"], m.get("lo"), m.get("hi"), True, None,
                                 "reach"))
    return out


def _stamp(ns: int) -> TimeMsg:
    return TimeMsg(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


class TwinNode(Node):
    """ArmTwin behind ros2_control-like topics; see the module docstring for the wiring."""

    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        route_python_logging(self)  # sim/'s and io/'s Python logging: through this node's ROS logger
        self.p, twin_cfg, reach_cfg = self._declare_parameters()
        self.twin = ArmTwin(twin_cfg)
        self.task = ReachTask(reach_cfg, n_joints=self.twin.n_joints)
        self.rng = np.random.default_rng(self.p.seed)
        self.drop_rng = np.random.default_rng(self.p.seed + 1)
        self.owns_time = self.p.publish_clock
        self.sim_ns = 0  # simulated time since start, never reset [ns]
        self.episode = 0
        self.rejected = 0
        self.dropped_commands = 0
        self.dropped_states = 0
        self.commands = 0
        self.last_msgs: tuple | None = None  # the last published (JointState, PoseStamped, PointStamped)

        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.js_pub = self.create_publisher(JointState, "joint_states", reliable)
        self.ee_pub = self.create_publisher(PoseStamped, "ee_pose", reliable)
        self.goal_pub = self.create_publisher(PointStamped, "goal", latched)
        self.clock_pub = self.create_publisher(Clock, "/clock", reliable) if self.owns_time else None
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", reliable)
        self.create_subscription(Float64MultiArray, "arm_controller/commands", self._on_command, 10)
        self.create_subscription(JointTrajectory, "arm_controller/joint_trajectory", self._on_trajectory, 10)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._reset_episode()
        now = time.monotonic()
        self.diag_last = (now, self.sim_ns)
        self.last_publish_wall = now
        self.pub_ns = int(round(1e9 / self.p.publish_rate))
        if self.p.lockstep:
            self._publish_state()
            self.create_timer(min(0.1, self.p.lockstep_republish_period / 2), self._on_republish_timer)
        else:
            self.rt_start = (now, self.sim_ns)
            # rtf 0: a zero-period timer (runs whenever nothing else is ready); else at most 1 kHz of wall time.
            rtf = self.p.real_time_factor
            period = 0.0 if rtf == 0 else max(1.0 / (self.p.publish_rate * rtf), 0.001)
            self.create_timer(period, self._on_physics_timer)
        self.create_timer(self.p.diagnostics_period, self._on_diagnostics_timer)
        mode = "lock-step" if self.p.lockstep else f"real_time_factor {self.p.real_time_factor}"
        self.get_logger().info(
            f"twin of {self.twin.model_path}: joints {list(self.twin.joint_names)}, "
            f"{self.twin.cfg.command_interface} commands, {mode}, physics step {self.twin.physics_dt} s, "
            f"{'owns /clock' if self.owns_time else 'wall-clock stamps'}"
        )

    # ------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> tuple[TwinNodeParams, TwinConfig, ReachConfig]:
        values = declare_specs(self, _specs())
        node = TwinNodeParams(**{f.name: values[f.name] for f in dataclasses.fields(TwinNodeParams)})
        twin_kw: dict[str, Any] = {}
        for f in dataclasses.fields(TwinConfig):
            v = values[f.name]
            if isinstance(v, list):
                v = () if v == ["auto"] else tuple(v)
            twin_kw[f.name] = v
        twin_cfg = TwinConfig(**twin_kw)
        reach_kw = {k: (tuple(values[f"reach.{k}"]) if isinstance(values[f"reach.{k}"], list)
                        else values[f"reach.{k}"]) for k in REACH_FIELDS}
        reach_cfg = ReachConfig(**reach_kw)
        if node.lockstep and not node.publish_clock:
            raise ParameterError("parameter 'publish_clock' = false with lockstep = true: in lock-step the twin "
                                 "owns time and must publish /clock")
        if not node.publish_clock and node.real_time_factor != 1.0:
            raise ParameterError(f"parameter 'publish_clock' = false with real_time_factor = "
                                 f"{node.real_time_factor}: only real time (1.0) may use wall-clock stamps")
        if node.publish_clock and self.get_parameter("use_sim_time").value:
            raise ParameterError("parameter 'use_sim_time' = true: twin_node is the time source (it publishes "
                                 "/clock) and must run on the wall clock; set use_sim_time only on the other nodes")
        # Cross-checks that need the model happen in ArmTwin/ReachTask (ValueError naming the field).
        return node, twin_cfg, reach_cfg

    def _on_set_parameters(self, params):
        """Live changes of LIVE_PARAMETERS, range-checked (read-only ones are refused by rclpy)."""
        from rcl_interfaces.msg import SetParametersResult

        specs = {s.name: s for s in _specs()}
        updates = {}
        for prm in params:
            if prm.name in LIVE_PARAMETERS:
                try:
                    updates[prm.name] = check_value(specs[prm.name], prm.value)
                except ParameterError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
        if updates:
            self.p = dataclasses.replace(self.p, **updates)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ time
    def _stamp_now(self) -> TimeMsg:
        if self.owns_time:
            return _stamp(self.sim_ns)
        return self.get_clock().now().to_msg()

    def _advance(self, seconds: float) -> None:
        steps = self.twin.advance(seconds)
        self.sim_ns += int(round(steps * self.twin.physics_dt * 1e9))

    # ------------------------------------------------------------------ publishing
    def _publish_state(self) -> None:
        """Publish /joint_states, /ee_pose, /goal (and /clock) for the current state, stamped now."""
        stamp = self._stamp_now()
        r = self.twin.read()
        js = JointState()
        js.header.stamp = stamp
        js.name = list(self.twin.joint_names)
        js.position = r.position.tolist()
        js.velocity = r.velocity.tolist()
        js.effort = r.effort.tolist()
        pos, quat = self.twin.ee_pose()
        ee = PoseStamped()
        ee.header.stamp = stamp
        ee.header.frame_id = self.p.frame_id
        ee.pose.position.x, ee.pose.position.y, ee.pose.position.z = (float(v) for v in pos)
        ee.pose.orientation.w, ee.pose.orientation.x, ee.pose.orientation.y, ee.pose.orientation.z = (
            float(v) for v in quat)
        goal = PointStamped()
        goal.header.stamp = stamp
        goal.header.frame_id = self.p.frame_id
        goal.point.x, goal.point.y, goal.point.z = (float(v) for v in self.twin.goal)
        self.last_msgs = (js, ee, goal)
        self._send(js, ee, goal, stamp)

    def _send(self, js: JointState, ee: PoseStamped, goal: PointStamped, stamp: TimeMsg) -> None:
        if self.clock_pub is not None:
            self.clock_pub.publish(Clock(clock=stamp))
        # Goal and pose first, so that an agent which steps on a new joint state has them already.
        self.goal_pub.publish(goal)
        self.ee_pub.publish(ee)
        if self.p.drop_probability > 0 and self.drop_rng.random() < self.p.drop_probability:
            self.dropped_states += 1
        else:
            self.js_pub.publish(js)
        self.last_publish_wall = time.monotonic()

    # ------------------------------------------------------------------ timers
    def _on_physics_timer(self) -> None:
        """Free-running modes: keep simulated time at real_time_factor x wall time (0: flat out)."""
        rtf = self.p.real_time_factor
        if rtf == 0:
            self._advance(self.pub_ns * 1e-9)
            self._publish_state()
            return
        wall0, sim0 = self.rt_start
        target_ns = sim0 + int((time.monotonic() - wall0) * rtf * 1e9)
        due = (target_ns - self.sim_ns) // self.pub_ns
        if due <= 0:
            return
        if due > 5:  # fell behind (slow machine): do not try to catch up more than 5 periods at once
            self.rt_start = (wall0 + (due - 5) * self.pub_ns * 1e-9 / rtf, sim0)
            due = 5
        self._advance(due * self.pub_ns * 1e-9)
        self._publish_state()

    def _on_republish_timer(self) -> None:
        """Lock-step: nothing happened for a while: publish the current state again, same stamp."""
        if self.last_msgs is None:
            return
        if time.monotonic() - self.last_publish_wall >= self.p.lockstep_republish_period:
            js, ee, goal = self.last_msgs
            self._send(js, ee, goal, js.header.stamp)

    def _on_diagnostics_timer(self) -> None:
        now = time.monotonic()
        wall0, sim0 = self.diag_last
        rtf = (self.sim_ns - sim0) * 1e-9 / max(now - wall0, 1e-9)
        self.diag_last = (now, self.sim_ns)
        st = DiagnosticStatus()
        st.name = f"{self.get_name()}: simulation"
        st.hardware_id = self.get_fully_qualified_name()  # tells the arms of a namespaced graph apart
        target = self.p.real_time_factor
        if not self.p.lockstep and target > 0 and rtf < 0.8 * target:
            st.level = DiagnosticStatus.WARN
            st.message = f"real-time factor {rtf:.2f} below the target {target}"
        else:
            st.level = DiagnosticStatus.OK
            st.message = "running"
        if self.rejected:
            st.level = max(st.level, DiagnosticStatus.WARN)
            st.message += f"; {self.rejected} commands rejected"
        values = {
            "real_time_factor": f"{rtf:.4f}",
            "real_time_factor_target": "lockstep" if self.p.lockstep else f"{target}",
            "rejected_commands": str(self.rejected),
            "commands_received": str(self.commands),
            "dropped_commands": str(self.dropped_commands),
            "dropped_joint_states": str(self.dropped_states),
            "sim_time": f"{self.sim_ns * 1e-9:.3f}",
            "episode": str(self.episode),
            "model_path": self.twin.model_path,
        }
        st.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self._stamp_now()
        msg.status = [st]
        self.diag_pub.publish(msg)

    # ------------------------------------------------------------------ commands
    def _reject(self, reason: str) -> None:
        self.rejected += 1
        self.get_logger().error(f"rejected command ({self.rejected} so far): {reason}; holding the last command",
                                throttle_duration_sec=1.0)

    def _accept(self, values) -> None:
        if self.p.drop_probability > 0 and self.drop_rng.random() < self.p.drop_probability:
            # Lost on the way: the arm keeps the previous command. In lock-step, time still moves on
            # (as it would on a real arm), so the agent sees the effect of the lost command.
            self.dropped_commands += 1
        else:
            try:
                self.twin.apply_command(values)
            except ValueError as exc:
                self._reject(str(exc))
                return
            self.commands += 1
        if self.p.lockstep:
            self._advance(self.p.control_period)
            self._publish_state()

    def _on_command(self, msg: Float64MultiArray) -> None:
        self._accept(msg.data)

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        if not msg.points:
            self._reject("JointTrajectory has no points")
            return
        point = msg.points[0]
        velocity = self.twin.cfg.command_interface == "velocity"
        values = list(point.velocities if velocity else point.positions)
        names = list(self.twin.joint_names)
        if msg.joint_names and list(msg.joint_names) != names:
            unknown = sorted(set(msg.joint_names) - set(names))
            if unknown or len(msg.joint_names) != len(names) or len(values) != len(names):
                self._reject(f"JointTrajectory joint_names {list(msg.joint_names)} do not match the arm's {names}")
                return
            order = {n: i for i, n in enumerate(msg.joint_names)}
            values = [values[order[n]] for n in names]
        if not values:
            kind = "velocities" if velocity else "positions"
            self._reject(f"JointTrajectory's first point has no {kind} (command_interface is "
                         f"{self.twin.cfg.command_interface})")
            return
        self._accept(values)

    # ------------------------------------------------------------------ episodes
    def _reset_episode(self) -> None:
        goal = self.task.sample_goal(self.rng)
        home = self.task.sample_home(self.rng)
        self.twin.reset(seed=int(self.rng.integers(2**31 - 1)), home=home, goal=goal)
        self.episode += 1

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._reset_episode()
        if self.p.lockstep:
            # A reset takes one control period, so the new episode's first state has a new stamp.
            self.sim_ns += int(round(self.p.control_period * 1e9))
            self._publish_state()
        g = self.twin.goal
        response.success = True
        response.message = f"episode {self.episode}: goal ({g[0]:.3f}, {g[1]:.3f}, {g[2]:.3f}) m"
        self.get_logger().info(response.message)
        return response


def main(args: list[str] | None = None) -> int:
    """Console script `twin_node`: init, spin, shut down cleanly on SIGINT/SIGTERM (exit code 0)."""
    node = None
    try:  # rclpy ignores params-file keys nobody declares: a misspelt one is refused here
        check_command_line_params_files(sys.argv if args is None else args, "twin_node", [s.name for s in _specs()])
    except ParameterError as exc:
        return report_bad_parameter("twin_node", exc)
    rclpy.init(args=args)
    code = 0
    try:
        node = TwinNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        code = 0
    except (ParameterError, ValueError) as exc:
        if node is not None and not node.context.ok():
            code = 0  # shutting down: a callback was cut short
        else:
            code = report_bad_parameter("twin_node", exc)
    except Exception:
        # SIGINT/SIGTERM shut the context down while a callback was publishing: a clean stop.
        if node is None or node.context.ok():
            raise
        code = 0
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
