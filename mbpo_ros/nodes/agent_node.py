"""agent_node: controls an arm over ROS 2 while MBPO learns in the background.

Wiring diagram (every decision lives in control/ and core/; docs/safety.md is the safety case):

    parameters   nodes/params.py: every core.config field + reach.* + the node's own (validated)
    names        relative (joint_states, goal, ee_pose, command_topic, reset_service), resolved in the
                 node's namespace; /diagnostics and /clock are global; ~/ private
    inputs       joint_states (sensor-data QoS), ee_pose (sensor-data), goal (reliable, transient local; not with
                 goal_source task) -> control.InputCache (validation, stamps, plausibility) -> latest-state cache
    control      its own thread: wall-clock deadlines at control_rate, ROS-clock deadlines with
                 use_sim_time (bounded wall-clock waits: a rewound /clock cannot block them), or one
                 step per new joint-state stamp in lock-step mode:
                 control.Controller.step(inputs, now) -> Command -> the one command publisher
    episodes     Command.episode / .started (control/episodes.py) -> episode (std_msgs/String, one JSON object
                 per start and end; reliable, depth 50); goal_source task: Command.goal, the current target
                 point (each episode's first, then whenever it moves) -> goal (PointStamped in base_frame,
                 stamped as its joint state, reliable + transient local, depth 1)
    learning     nodes/agent_learning.AgentLearning (the Controller's Learner): learner.LearningSession
                 (transition log first, then the supervised learner child, which replays the log after any
                 crash and is restarted), episodes.csv, metrics, the session's periodic checkpoints
    records      <run_dir>/transitions/ (rosbag2), episodes.csv, metrics.csv + tb/ (train/, model/ scalars),
                 learning_curve.png, checkpoints every checkpoint_period (the session's thread), on
                 ~/save_checkpoint, and at exit (SIGINT or SIGTERM)
    services     ~/estop (SetBool), ~/save_checkpoint (Trigger), ~/pause_training (SetBool)
    threads      control (its own), one SingleThreadedExecutor (inputs, services, timers),
                 periodic checkpoints (the session's, waits on the learner)
    diagnostics  /diagnostics at 1 Hz (wall clock): loop rate and jitter, Controller.status(),
                 publishers on the command topic, learner and transition-log health (ERROR while the
                 learner is down or the disk is full, said once through the logger per change)
    exit code    0; 2 bad parameters; 1 failed to start or the control loop died; 3 training was asked
                 for and the learner was dead at shutdown
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped, PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.task import Future
from rclpy.time import Time
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String, UInt8MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from mbpo_ros.control import Command, Controller, EpisodeStart, EpisodeSummary, PeriodStats, Phase
from mbpo_ros.control.episodes import end_record, start_record, to_json
from mbpo_ros.control.inputs import RejectedMessage, ResetStatus
from mbpo_ros.nodes.agent_learning import AgentLearning
from mbpo_ros.nodes.params import (
    AgentSettings,
    ParameterError,
    agent_parameter_names,
    agent_task_class,
    check_value,
    controller_config,
    declare_parameters,
    node_specs,
)
from mbpo_ros.nodes.ros_logging import route_python_logging
from mbpo_ros.nodes.run import run_node

#: ReachConfig fields that change the reward (config/mbpo.yaml must carry ReachConfig's defaults)
REWARD_FIELDS = ("success_threshold", "distance_weight", "action_penalty", "success_bonus")
#: exit code when training was asked for and the learner was dead at shutdown
EXIT_LEARNER_DEAD = 3
_LEVELS = {"OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN, "ERROR": DiagnosticStatus.ERROR}


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class AgentWiring:
    """The agent's wiring, shared by the plain AgentNode and the managed (lifecycle) one
    (nodes/agent_lifecycle_node.py): parameters (`_declare`), learner + inputs + outputs + services
    (`_configure`), the control thread (`_start_control` / `_stop_control`), shutdown (`close`).
    Mixed into an rclpy Node class."""

    def _declare(self) -> None:
        """Parameters, validated (ParameterError otherwise), and what follows from them alone."""
        route_python_logging(self)  # io/'s and learner/'s Python logging: through this node's ROS logger
        self.settings: AgentSettings = declare_parameters(self)
        self.p = p = self.settings.node
        self.task = agent_task_class(p.task)(self.settings.reach, n_joints=len(p.joint_names))
        self.period = 1.0 / p.control_rate
        self.run_dir = Path(p.run_dir or os.path.join("runs", "agent_node")).expanduser().resolve()
        self._stop = threading.Event()
        self.control_thread: threading.Thread | None = None

    def _configure(self) -> None:
        """Load the policy / start the learner (AgentLearning), then subscriptions, publishers, services."""
        p, s = self.p, self.settings
        try:
            self.learning = AgentLearning(p, s, self.task, self.run_dir, self.get_logger(),
                                          arm=p.arm_id or self.get_fully_qualified_name())
        except ValueError as exc:  # a deploy checkpoint that does not fit this arm
            raise ParameterError(str(exc)) from exc
        try:
            self._wire(p, s)
        except BaseException:
            self.learning.abort()
            raise

    def _wire(self, p, s: AgentSettings) -> None:
        io_group, srv_group, diag_group = (MutuallyExclusiveCallbackGroup() for _ in range(3))
        js_sub = self.create_subscription(JointState, "joint_states", self._on_joint_state, qos_profile_sensor_data,
                                          callback_group=io_group)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)  # a goal sent before we started counts
        self.goal_pub = None
        if p.goal_source == "task":  # the task draws each episode's goal: published for anyone to see
            self.goal_pub = self.create_publisher(PointStamped, "goal", latched)
            goal_topic = self.goal_pub.topic_name
        else:
            goal_topic = self.create_subscription(PointStamped, "goal", self._on_goal, latched, callback_group=io_group,
                                                  event_callbacks=SubscriptionEventCallbacks(
                                                      incompatible_qos=self._on_goal_qos_mismatch)).topic_name
        self.episode_pub = self.create_publisher(String, "episode",
                                                 QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        fk = None
        if p.robot_model:  # the end-effector position from the joint states: no ee_pose publisher needed
            from mbpo_ros.sim.kinematics import ForwardKinematics

            try:
                fk = ForwardKinematics(p.robot_model, p.joint_names, p.ee_body, p.ee_site, p.robot_servo)
            except ValueError as exc:
                raise ParameterError(f"parameter 'robot_model': {exc}") from exc
        ee_sub = None if fk is not None else self.create_subscription(
            PoseStamped, "ee_pose", self._on_ee_pose, qos_profile_sensor_data, callback_group=io_group)
        ee_topic = ee_sub.topic_name if ee_sub is not None else f"forward kinematics of {p.robot_model}"
        self.topics = (js_sub.topic_name, ee_topic, goal_topic)
        self.controller = Controller(controller_config(s), self.task, self.learning, self.learning.env_steps_at_start,
                                     self.topics, episodes=self.learning.episodes_at_start)
        self.controller.inputs.forward_kinematics = fk
        self.loop_stats = PeriodStats(self.period)
        self._state_cv = threading.Condition()
        self._reset = (0, ResetStatus.NOT_CALLED)

        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        trajectory = p.command_type == "trajectory"
        self.cmd_pub = self.create_publisher(JointTrajectory if trajectory else Float64MultiArray,
                                             p.trajectory_topic if trajectory else p.command_topic, reliable)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(SetBool, "~/estop", self._on_estop, callback_group=srv_group)
        self.create_service(Trigger, "~/save_checkpoint", self._on_save_checkpoint,
                            callback_group=MutuallyExclusiveCallbackGroup())  # held while it awaits
        self.create_service(SetBool, "~/pause_training", self._on_pause, callback_group=srv_group)
        self.reset_client = (self.create_client(Trigger, p.reset_service, callback_group=srv_group)
                             if p.reset_service else None)
        wall = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=diag_group, clock=wall)
        if self.learning.remote is not None:
            self._wire_remote(p, wall)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(
            f"mode {p.mode}, {len(p.joint_names)} joints, {p.control_rate:g} Hz{' lock-step' if p.lockstep else ''}, "
            f"{p.command_interface} commands on {self.cmd_pub.topic_name} (state from {', '.join(self.topics)}), "
            f"goals from {'the task, published on ' if self.goal_pub else ''}{goal_topic}, episodes announced on "
            f"{self.episode_pub.topic_name}, run directory {self.run_dir}")

    def _wire_remote(self, p, wall: Clock) -> None:
        """learner:=remote: fleet frames to and from a learner_node (learner/remote.py decides)."""
        from mbpo_ros.nodes.learner_node import GAPS_QOS, POLICY_QOS, TRANSITIONS_QOS, frame_msg

        link, topic, group = self.learning.remote, p.fleet_topic.rstrip("/"), MutuallyExclusiveCallbackGroup()
        fleet_pub = self.create_publisher(UInt8MultiArray, f"{topic}/transitions", TRANSITIONS_QOS)

        def send(frames: list[bytes]) -> None:
            for data in frames:
                fleet_pub.publish(frame_msg(data))

        def on_policy(msg: UInt8MultiArray) -> None:
            line = link.on_snapshot(bytes(msg.data), time.monotonic())
            if line is not None:
                (self.get_logger().warning if line.startswith("refused") else self.get_logger().info)(line)

        self.create_subscription(UInt8MultiArray, f"{topic}/gaps", lambda m: send(link.on_gaps(bytes(m.data))),
                                 GAPS_QOS, callback_group=group)
        self.create_subscription(UInt8MultiArray, f"{topic}/policy", on_policy, POLICY_QOS, callback_group=group)
        self.create_timer(0.05, lambda: send(link.frames_out(time.monotonic())), callback_group=group, clock=wall)
        self.get_logger().info(f"remote learner: arm {link.arm}, stream {link.stream} on {topic}/{{transitions,gaps,"
                               "policy}")

    # ------------------------------------------------------------------ inputs

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _feed(self, accept, *args) -> None:
        try:
            if accept(*args, self._now()):
                self._wake_control()
        except RejectedMessage as exc:
            self.get_logger().warning(f"rejected message ({exc.reason}): {exc.detail}"[:400],
                                      throttle_duration_sec=1.0)

    def _on_joint_state(self, msg: JointState) -> None:
        self._feed(self.controller.inputs.on_joint_state, msg.name, msg.position, msg.velocity, _stamp_ns(msg.header))

    def _on_goal(self, msg: PointStamped) -> None:
        self._feed(self.controller.inputs.on_goal, (msg.point.x, msg.point.y, msg.point.z), _stamp_ns(msg.header))

    def _on_ee_pose(self, msg: PoseStamped) -> None:
        if self.p.base_frame and msg.header.frame_id and msg.header.frame_id != self.p.base_frame:
            self.controller.inputs.rejects.add(self.topics[1], "frame_id")
            self.get_logger().warning(f"rejected ee_pose in frame {msg.header.frame_id!r}: base_frame is "
                                      f"{self.p.base_frame!r}", throttle_duration_sec=1.0)
            return
        pos = msg.pose.position
        self._feed(self.controller.inputs.on_ee_pose, (pos.x, pos.y, pos.z), _stamp_ns(msg.header))

    def _on_goal_qos_mismatch(self, _event) -> None:
        self.get_logger().error(f"a publisher on {self.topics[2]} is not reliable + transient local: its goals "
                                "cannot reach this node (publish the goal latched, as twin_node does)")

    def _wake_control(self, _future=None) -> None:
        with self._state_cv:
            self._state_cv.notify_all()

    # ------------------------------------------------------------------ control thread

    @property
    def stopped(self) -> bool:
        """True once close() began or the control loop died."""
        return self._stop.is_set()

    def start(self) -> None:
        self._start_control()
        self.learning.start()

    def _start_control(self) -> None:
        """Commanding begins: a fresh control thread (the managed node starts one per activation)."""
        self._stop.clear()
        self.control_thread = threading.Thread(target=self._control_loop, name="agent-control", daemon=True)
        self.control_thread.start()

    def _stop_control(self) -> None:
        """Commanding ends: the control thread stops, then the stop command (zero, or hold) is the last word."""
        self._stop.set()
        self._wake_control()
        if self.control_thread is not None and self.control_thread.is_alive():
            self.control_thread.join(timeout=5.0)
        try:
            self._publish(self.controller.shutdown_command(), final=True)
        except Exception as exc:  # the context may already be gone; the arm's own controller remains
            self.get_logger().warning(f"could not publish the final stop command: {exc}")
        ended = self.controller.close_episode(self._now())
        if ended is not None:
            try:
                self._announce_end(ended)
            except Exception as exc:  # as above: the context may be gone
                self.get_logger().warning(f"could not announce the end of episode {ended.index}: {exc}")

    def _control_loop(self) -> None:
        try:
            if self.p.lockstep:
                self._lockstep_loop()
            elif self.get_parameter("use_sim_time").value:
                self._ros_clock_loop()
            else:
                self._wall_clock_loop()
        except Exception as exc:  # the loop must never die silently: stop the arm and say why
            self.get_logger().fatal(f"control loop failed: {type(exc).__name__}: {exc}")
            self._stop.set()
            self._publish(self.controller.shutdown_command(), final=True)
            raise

    def _tick(self, t: float) -> None:
        t0 = time.monotonic()
        self.loop_stats.tick(t)
        self._apply(self.controller.step(self.controller.inputs.snapshot(t0, self._reset), self._now()))
        self.loop_stats.work(time.monotonic() - t0)

    def _wall_clock_loop(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            self._tick(time.monotonic())
            next_t += self.period
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_t = time.monotonic()  # overrun: do not try to catch up with a burst

    def _ros_clock_loop(self) -> None:
        """ROS-clock deadlines, waited for in wall-clock slices woken by every clock change: a /clock that
        jumps back re-bases the deadline instead of blocking the loop (rclpy's sleep_until would)."""
        changed = JumpThreshold(min_forward=Duration(nanoseconds=1), min_backward=Duration(nanoseconds=-1))
        with self.get_clock().create_jump_callback(changed, post_callback=self._wake_control):
            next_t = self._now()
            while not self._stop.is_set():
                self._tick(self._now())
                next_t += self.period
                now = self._now()
                while not self._stop.is_set():
                    now = self._now()
                    if now >= next_t or next_t - now > 2.0 * self.period:  # due, or the clock went back
                        break
                    with self._state_cv:
                        self._state_cv.wait(timeout=min(0.05, self.period))
                if not 0.0 <= now - next_t < self.period:
                    next_t = now  # overrun or a rewound clock: the next step is one period from now

    def _lockstep_loop(self) -> None:
        """One control step per new joint-state stamp (Controller.ready); in the reset phase every 0.1 s too."""
        def ready() -> bool:
            return self.controller.ready(self.controller.inputs.snapshot(time.monotonic(), self._reset))

        while not self._stop.is_set():
            with self._state_cv:
                self._state_cv.wait_for(lambda: self._stop.is_set() or ready(), timeout=0.1)
            if self._stop.is_set():
                return
            if ready() or self.controller.phase is Phase.RESET:
                self._tick(time.monotonic())

    def _log(self, events) -> None:
        log = self.get_logger()
        for ev in events:  # one call site per severity: rclpy refuses a call site that changes it
            if ev.level == "error":
                log.error(ev.text)
            elif ev.level == "warning":
                log.warning(ev.text)
            else:
                log.info(ev.text)

    def _apply(self, cmd: Command) -> None:
        self._log(cmd.events)
        if cmd.values is not None:
            self._publish(cmd.values)
        if cmd.episode is not None:
            self.learning.episode_done(cmd.episode)
            self._announce_end(cmd.episode)
        if cmd.goal is not None and self.goal_pub is not None:
            self._publish_goal(*cmd.goal)
        if cmd.started is not None:
            self._announce_start(cmd.started)
        if cmd.call_reset is not None and self.reset_client is not None and self._reset != (cmd.call_reset,
                                                                                            ResetStatus.PENDING):
            self._call_reset(cmd.call_reset)

    def _announce_end(self, end: EpisodeSummary) -> None:
        self.episode_pub.publish(String(data=to_json(end_record(end))))

    def _publish_goal(self, point: np.ndarray, stamp_ns: int) -> None:
        """goal_source task: the current target point (latched), stamped with the joint state it holds for."""
        msg = PointStamped()
        msg.header.stamp = Time(nanoseconds=int(stamp_ns)).to_msg()
        msg.header.frame_id = self.p.base_frame
        msg.point.x, msg.point.y, msg.point.z = (float(v) for v in point)
        self.goal_pub.publish(msg)

    def _announce_start(self, start: EpisodeStart) -> None:
        """After its first target point was published (goal_source task): the announcement."""
        self.episode_pub.publish(String(data=to_json(start_record(start, self.p.base_frame, self.p.goal_source))))

    def _call_reset(self, rid: int) -> None:
        if not self.reset_client.service_is_ready():
            self._reset = (rid, ResetStatus.UNAVAILABLE)
            return
        self._reset = (rid, ResetStatus.PENDING)
        self.reset_client.call_async(Trigger.Request()).add_done_callback(lambda f: self._on_reset_done(rid, f))

    def _on_reset_done(self, rid: int, future) -> None:
        res = future.result()
        if res is None or not res.success:
            self.get_logger().error(f"reset failed: {getattr(res, 'message', 'no answer')}")
        self._reset = (rid, ResetStatus.SUCCEEDED if res is not None and res.success else ResetStatus.FAILED)
        self._wake_control()

    def _publish(self, cmd: np.ndarray | None, final: bool = False) -> None:
        if cmd is None or (self._stop.is_set() and not final):
            return  # nothing safe to send / shutting down: the final stop command is the last word
        if self.p.command_type == "trajectory":
            pt = JointTrajectoryPoint(time_from_start=Duration(nanoseconds=int(self.period * 1e9)).to_msg())
            if self.p.command_interface == "velocity":
                st = self.controller.inputs.state
                q = st.q if st is not None else np.zeros(len(cmd))
                pt.positions, pt.velocities = [float(x) for x in q + cmd * self.period], [float(x) for x in cmd]
            else:
                pt.positions = [float(x) for x in cmd]
            msg = JointTrajectory(joint_names=list(self.p.joint_names), points=[pt])
        else:
            msg = Float64MultiArray(data=[float(x) for x in cmd])
        self.cmd_pub.publish(msg)

    # ------------------------------------------------------------------ services, parameters

    def _on_estop(self, req: SetBool.Request, res: SetBool.Response) -> SetBool.Response:
        if req.data:
            fresh = self.controller.estop.engage("~/estop service")
            self._wake_control()
            self.get_logger().error("E-STOP engaged (latched until ~/estop false)")
            res.message = "e-stop engaged" if fresh else "e-stop was already engaged"
        else:
            was = self.controller.estop.release()
            self.get_logger().warning("e-stop released" if was else "e-stop release: it was not engaged")
            res.message = "e-stop released" if was else "e-stop was not engaged"
        res.success = True
        return res

    async def _on_save_checkpoint(self, req: Trigger.Request, res: Trigger.Response) -> Trigger.Response:
        """Waits for the trainer in a helper thread; the executor goes on serving everything else."""
        done = Future(executor=self.executor)
        done.add_done_callback(lambda _f: None)  # set_result from the helper thread wakes the executor

        def work() -> None:
            try:
                done.set_result((True, self.learning.save_checkpoint()))
            except (RuntimeError, TimeoutError) as exc:
                done.set_result((False, str(exc)))

        threading.Thread(target=work, name="agent-checkpoint-request", daemon=True).start()
        res.success, res.message = await done
        return res

    def _on_pause(self, req: SetBool.Request, res: SetBool.Response) -> SetBool.Response:
        if self.learning.trainer is None:
            res.success, res.message = False, ("learner:=remote: training runs in the learner_node, not here"
                                               if self.learning.remote is not None
                                               else f"mode '{self.p.mode}' does not train")
            return res
        try:
            self.learning.trainer.set_paused(bool(req.data))
            res.success, res.message = True, "training paused" if req.data else "training resumed"
        except RuntimeError as exc:
            res.success, res.message = False, str(exc)
        return res

    def _on_set_parameters(self, params):
        from rcl_interfaces.msg import SetParametersResult

        specs = {s.name: s for s in node_specs()}
        for prm in params:
            try:
                if prm.name in specs:
                    check_value(specs[prm.name], prm.value)
                    self.controller.set_parameter(prm.name, prm.value)
            except ValueError as exc:  # ParameterError or the controller's reason
                return SetParametersResult(successful=False, reason=str(exc))
            if hasattr(self.p, prm.name):
                setattr(self.p, prm.name, prm.value)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ diagnostics

    def _publish_diagnostics(self) -> None:
        self._log(self.controller.note_command_publishers(self.count_publishers(self.cmd_pub.topic_name)))
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        for name, (level, message, values) in (
                ("control loop", self.loop_stats.status(self.p.control_rate, check_rate=not self.p.lockstep,
                                                        phase=self.controller.phase.value)),
                ("safety", self.controller.status()),
                ("learner", self.learning.status(self.controller.env_steps))):
            arr.status.append(DiagnosticStatus(level=_LEVELS[level], name=f"agent_node: {name}", message=message,
                                               hardware_id=self.get_fully_qualified_name(),
                                               values=[KeyValue(key=k, value=str(v)) for k, v in values.items()]))
        self.diag_pub.publish(arr)

    # ------------------------------------------------------------------ shutdown

    def close(self) -> bool:
        """Stop the control thread (after a last stop command), flush records, final checkpoint.

        False when training was asked for and the learner was dead at shutdown."""
        self._stop_control()
        return self.learning.close()


class AgentNode(AgentWiring, Node):
    """The agent (plain node): configured at construction, commanding from start() until close()."""

    def __init__(self, **node_kwargs: Any) -> None:
        Node.__init__(self, "agent_node", **node_kwargs)
        self._declare()
        self._configure()


def main(args: list[str] | None = None) -> int:
    """Run agent_node until SIGINT/SIGTERM (both: final stop command, final checkpoint, clean exit).

    Exit code 0; 2 on bad parameters; 1 if it failed to start or the control loop died;
    EXIT_LEARNER_DEAD (3) if training was asked for and the learner was dead at shutdown."""
    sys.setswitchinterval(0.001)  # the control thread needs the GIL promptly when its deadline comes

    def close(node: AgentNode, code: int) -> int:
        return EXIT_LEARNER_DEAD if not node.close() and code == 0 else code

    return run_node("agent_node", agent_parameter_names(), AgentNode, args,
                    start=AgentNode.start, stopped=lambda node: node.stopped, close=close)


if __name__ == "__main__":
    sys.exit(main())
