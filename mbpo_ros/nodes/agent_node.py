"""agent_node: controls an arm over ROS 2 while MBPO learns in the background.

Wiring diagram (everything that decides anything lives in core/ and io/):

    parameters     nodes/params.py: every core.config field + reach.* + the node's own (validated)
    names          relative (joint_states, goal, ee_pose, command_topic, reset_service), so they
                   resolve in the node's namespace; /diagnostics and /clock are global; ~/ private
    inputs         joint_states (sensor-data QoS, matched by joint name), goal, ee_pose
                   -> core.safety validators -> latest-state cache (with stamps)
    control        its own thread: wall-clock deadlines at control_rate, ROS-clock deadlines with
                   use_sim_time, or one step per new joint-state stamp in lock-step mode
                   obs = ReachTask.observe(...) ; a = PolicySnapshot.act(obs) (NumPy)
                   -> core.safety.CommandShaper (limits, rate limit) -> command topic (reliable)
    safety         core.safety: watchdog (stale state -> hold/zero), latched e-stop (~/estop)
    learning       core.trainer_process.TrainerProcess (a child process): submit transitions,
                   swap in policy snapshots; lock-step waits for it (deterministic runs)
    records        io.transition_log.TransitionLog (<run_dir>/transitions.mcap), episodes.csv,
                   checkpoints on a timer, on ~/save_checkpoint and on shutdown
    services       ~/estop (SetBool), ~/save_checkpoint (Trigger), ~/pause_training (SetBool)
    threads        control (its own), one SingleThreadedExecutor (inputs, services, timers),
                   periodic checkpoints (waits on the trainer); the learner is a child process
    diagnostics    /diagnostics at 1 Hz (wall clock): loop rate and jitter, watchdog, e-stop,
                   rejected messages, learner statistics
"""

from __future__ import annotations

import csv
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped, PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from mbpo_ros.core.reach import ReachTask
from mbpo_ros.core.safety import (
    CommandShaper,
    EStop,
    JointLimits,
    JointStateValidator,
    PeriodStats,
    RejectCounter,
    RejectedMessage,
    StampOrder,
    Watchdog,
    check_finite,
)
from mbpo_ros.nodes.params import AgentSettings, ParameterError, declare_parameters

#: ReachConfig fields that change the reward (config/mbpo.yaml must carry ReachConfig's defaults)
REWARD_FIELDS = ("success_threshold", "distance_weight", "action_penalty", "success_bonus")
EPISODE_COLUMNS = ("env_steps", "episodes", "episode_return", "success", "final_distance_m",
                   "achieved_utd", "model_loss", "wall_seconds")


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@dataclass(frozen=True)
class ArmState:
    """One accepted joint state, in arm joint order. q, qd: [n]; stamp_ns: header stamp; rx: receipt (s)."""

    q: np.ndarray
    qd: np.ndarray
    stamp_ns: int
    rx: float


@dataclass(frozen=True)
class Vec3:
    """An accepted /goal or /ee_pose position: value [3], header stamp (ns)."""

    value: np.ndarray
    stamp_ns: int


class EpisodeLog:
    """Appends one row per episode to <run_dir>/episodes.csv (header once, flushed per row)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.episodes = 0
        self.wall_offset = 0.0
        if path.exists() and path.stat().st_size > 0:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            if rows:
                self.episodes = int(float(rows[-1].get("episodes") or len(rows)))
                self.wall_offset = float(rows[-1].get("wall_seconds") or 0.0)
            self._file = open(path, "a", newline="")  # noqa: SIM115 - closed in close()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "w", newline="")  # noqa: SIM115
            self._file.write(",".join(EPISODE_COLUMNS) + "\n")
            self._file.flush()
        self._writer = csv.writer(self._file)
        self._t0 = time.monotonic()

    def append(self, env_steps: int, episode_return: float, success: bool, final_distance: float,
               achieved_utd: float, model_loss: float) -> None:
        self.episodes += 1
        wall = self.wall_offset + time.monotonic() - self._t0
        self._writer.writerow([env_steps, self.episodes, f"{episode_return:.6g}", int(bool(success)),
                               f"{final_distance:.6g}", f"{achieved_utd:.4g}", f"{model_loss:.6g}", f"{wall:.3f}"])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class AgentNode(Node):
    """The agent: parameters, inputs, control thread, safety, learner, records, services."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("agent_node", **node_kwargs)
        self.settings: AgentSettings = declare_parameters(self)
        p, s = self.settings.node, self.settings
        self.p = p
        self.task = ReachTask(s.reach, n_joints=len(p.joint_names))
        self.period = 1.0 / p.control_rate
        self.steps_per_episode = s.reach.steps_per_episode
        self.run_dir = Path(p.run_dir or os.path.join("runs", "agent_node")).expanduser().resolve()
        self.rng = np.random.default_rng(s.cfg.seed)

        # safety (core/safety.py)
        self.limits = JointLimits(tuple(p.joint_names), np.array(p.position_lower), np.array(p.position_upper),
                                  np.array(p.velocity_limits))
        self.shaper = CommandShaper(self.limits, p.command_interface, p.position_margin, p.max_velocity_step)
        self.watchdog = Watchdog(p.state_timeout)  # /joint_states
        self.ee_watchdog = Watchdog(p.state_timeout)  # /ee_pose is part of the observed state too
        self.estop = EStop()
        self.rejects = RejectCounter()
        self.js_validator = JointStateValidator(p.joint_names, p.allow_extra_joints)
        self.goal_order = StampOrder("goal")
        self.ee_order = StampOrder("ee_pose")
        self.loop_stats = PeriodStats(self.period)

        # latest-state cache: each field is replaced by one assignment (readers never see half a state)
        self.state: ArmState | None = None
        self.goal: Vec3 | None = None
        self.ee: Vec3 | None = None
        self._state_cv = threading.Condition()

        # learner, policy and records
        self.trainer = None
        self.policy = None  # PolicySnapshot used for control (deploy mode, or the trainer's latest)
        self.env_steps = 0  # real transitions so far (including those of a resumed run)
        self.submitted = 0
        self.tlog = None
        self.episode_log: EpisodeLog | None = None
        self.last_checkpoint = ""
        self.checkpoint_error = ""
        self._checkpoint_request = threading.Event()
        self._stop = threading.Event()
        try:
            self._start_learning()
        except BaseException:
            if self.trainer is not None:
                self.trainer.close(checkpoint=False, timeout=10.0)
            raise

        # episode bookkeeping (control thread only)
        self.phase = "run"  # run | reset | home
        self.ep_steps = 0
        self.ep_return = 0.0
        self.prev: tuple[np.ndarray, np.ndarray, int] | None = None  # (obs, applied action, state stamp)
        self.last_cmd_stamp = -1
        self.episode_end_stamp = -1
        self.settle_until = -math.inf
        self.reset_future = None
        self.reset_deadline = 0.0
        self.last_cmd = np.zeros(self.limits.n)
        self.stale_logged = False

        # ROS wiring
        io_group = MutuallyExclusiveCallbackGroup()
        srv_group = MutuallyExclusiveCallbackGroup()
        diag_group = MutuallyExclusiveCallbackGroup()
        # Relative names: they resolve in the node's namespace (/joint_states in the root namespace,
        # /arm1/joint_states under namespace /arm1). Messages are named by their resolved topic.
        js_sub = self.create_subscription(JointState, "joint_states", self._on_joint_state,
                                          qos_profile_sensor_data, callback_group=io_group)
        goal_sub = self.create_subscription(PointStamped, "goal", self._on_goal, 10, callback_group=io_group)
        ee_sub = self.create_subscription(PoseStamped, "ee_pose", self._on_ee_pose, qos_profile_sensor_data,
                                          callback_group=io_group)
        self.js_topic, self.goal_topic, self.ee_topic = js_sub.topic_name, goal_sub.topic_name, ee_sub.topic_name
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        if p.command_type == "trajectory":
            self.cmd_pub = self.create_publisher(JointTrajectory, p.trajectory_topic, reliable)
        else:
            self.cmd_pub = self.create_publisher(Float64MultiArray, p.command_topic, reliable)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(SetBool, "~/estop", self._on_estop, callback_group=srv_group)
        self.create_service(Trigger, "~/save_checkpoint", self._on_save_checkpoint,
                            callback_group=MutuallyExclusiveCallbackGroup())  # held while it awaits
        self.create_service(SetBool, "~/pause_training", self._on_pause, callback_group=srv_group)
        self.reset_client = None
        if p.reset_service:
            self.reset_client = self.create_client(Trigger, p.reset_service, callback_group=srv_group)
        wall = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=diag_group, clock=wall)
        if p.checkpoint_period > 0 and self.trainer is not None:
            self.create_timer(p.checkpoint_period, self._checkpoint_request.set, callback_group=diag_group,
                              clock=wall)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        for name in ("stale_action", "estop_action"):
            if getattr(p, name) == "hold" and p.command_interface == "velocity":
                self.get_logger().warning(f"{name} = hold with velocity commands repeats the last velocity "
                                          "(the arm keeps moving); 'zero' stops it")
        self.control_thread = threading.Thread(target=self._control_loop, name="agent-control", daemon=True)
        self.worker_thread = threading.Thread(target=self._worker_loop, name="agent-checkpoints", daemon=True)
        self.get_logger().info(
            f"mode {p.mode}, {self.limits.n} joints, {p.control_rate:g} Hz"
            f"{' lock-step' if p.lockstep else ''}, {p.command_interface} commands on "
            f"{self.cmd_pub.topic_name} (state from {self.js_topic}, {self.ee_topic}, {self.goal_topic}), "
            f"run directory {self.run_dir}"
        )

    # ------------------------------------------------------------------ learner and records

    def _start_learning(self) -> None:
        p, s = self.p, self.settings
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if p.mode == "train":
            from mbpo_ros.core.trainer_process import TrainerProcess

            # The child builds the same ReachTask (reach.* parameters included), so its model rollouts
            # score with exactly the reward the node logs for real transitions.
            self.trainer = TrainerProcess(self.task.obs_dim, self.task.act_dim, s.cfg, p.task, self.run_dir,
                                          resume=True, queue_size=p.queue_size, lockstep=p.lockstep,
                                          task_kwargs={"cfg": s.reach, "n_joints": len(p.joint_names)})
            self.trainer.start()
            st = self.trainer.stats()
            self.env_steps = int(st.get("env_steps", 0))
            self.policy = self.trainer.latest_snapshot()
            if st.get("resumed"):
                self.get_logger().info(f"resumed from {self.run_dir / 'checkpoint'} at {self.env_steps} env steps")
        elif p.mode == "deploy":
            self.policy = load_policy(p.checkpoint)
            if self.policy.obs_dim != self.task.obs_dim or self.policy.act_dim != self.task.act_dim:
                raise ParameterError(
                    f"parameter 'checkpoint': its policy maps {self.policy.obs_dim} observations to "
                    f"{self.policy.act_dim} actions; this arm needs {self.task.obs_dim} -> {self.task.act_dim}"
                )
        if p.log_transitions and p.mode != "deploy":
            self.tlog = open_transition_log(self.run_dir / "transitions.mcap", self.task.obs_dim,
                                            self.task.act_dim)
        if p.mode != "deploy":
            self.episode_log = EpisodeLog(self.run_dir / "episodes.csv")

    def _worker_loop(self) -> None:
        """Background thread: periodic checkpoints (they wait on the trainer). Never touches the arm."""
        while not self._stop.is_set():
            if self._checkpoint_request.wait(0.2):
                self._checkpoint_request.clear()
                try:
                    self.save_checkpoint()
                except (RuntimeError, TimeoutError) as exc:
                    self.get_logger().warning(f"periodic checkpoint skipped, next period retries: {exc}")

    def save_checkpoint(self, timeout: float = 120.0) -> str:
        """Ask the trainer for a checkpoint of everything submitted so far; returns its path."""
        if self.trainer is None:
            raise RuntimeError(f"mode '{self.p.mode}' has no learner to checkpoint")
        try:
            path = self.trainer.request_checkpoint(timeout=timeout)
        except (RuntimeError, TimeoutError) as exc:
            self.checkpoint_error = str(exc)
            self.get_logger().error(f"checkpoint failed: {exc}")
            raise
        self.last_checkpoint, self.checkpoint_error = path, ""
        if self.tlog is not None and hasattr(self.tlog, "flush"):
            self.tlog.flush()
        self.get_logger().info(f"checkpoint written: {path} ({self.submitted} transitions this session)")
        return path

    # ------------------------------------------------------------------ inputs

    def _reject(self, topic: str, exc: RejectedMessage) -> None:
        n = self.rejects.add(topic, exc.reason)
        self.get_logger().warning(f"rejected {topic} message ({n} {exc.reason} so far): {exc.detail}",
                                  throttle_duration_sec=1.0)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            q, qd, is_new = self.js_validator.validate(msg.name, msg.position, msg.velocity, _stamp_ns(msg.header))
        except RejectedMessage as exc:
            self._reject(self.js_topic, exc)
            return
        now = self._now()
        self.watchdog.feed(now)
        if is_new or self.state is None:
            self.state = ArmState(q, qd, _stamp_ns(msg.header), now)
            with self._state_cv:
                self._state_cv.notify_all()

    def _on_vec3(self, topic: str, order: StampOrder, header, xyz) -> Vec3 | None:
        try:
            v = check_finite(xyz, topic)
            stamp = _stamp_ns(header)
            order.check(stamp)
        except RejectedMessage as exc:
            self._reject(topic, exc)
            return None
        order.accept(stamp)
        return Vec3(v, stamp)

    def _on_goal(self, msg: PointStamped) -> None:
        v = self._on_vec3(self.goal_topic, self.goal_order, msg.header, (msg.point.x, msg.point.y, msg.point.z))
        if v is not None:
            self.goal = v
            with self._state_cv:
                self._state_cv.notify_all()

    def _on_ee_pose(self, msg: PoseStamped) -> None:
        pos = msg.pose.position
        v = self._on_vec3(self.ee_topic, self.ee_order, msg.header, (pos.x, pos.y, pos.z))
        if v is not None:
            self.ee = v
            self.ee_watchdog.feed(self._now())
            with self._state_cv:
                self._state_cv.notify_all()

    # ------------------------------------------------------------------ control thread

    @property
    def stopped(self) -> bool:
        """True once close() began or the control loop died."""
        return self._stop.is_set()

    def start(self) -> None:
        self.control_thread.start()
        self.worker_thread.start()

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
            self._stop_command("zero" if self.p.command_interface == "velocity" else "hold", final=True)
            raise

    def _wall_clock_loop(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            t0 = time.monotonic()
            self.loop_stats.tick(t0)
            self._step()
            self.loop_stats.work(time.monotonic() - t0)
            next_t += self.period
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_t = time.monotonic()  # overrun: do not try to catch up with a burst

    def _ros_clock_loop(self) -> None:
        clock = self.get_clock()
        next_t = clock.now()
        step = Duration(nanoseconds=int(self.period * 1e9))
        while not self._stop.is_set():
            self.loop_stats.tick(clock.now().nanoseconds * 1e-9)
            self._step()
            next_t = next_t + step
            if clock.now() < next_t:
                if not clock.sleep_until(next_t, context=self.context):
                    next_t = clock.now()
            else:
                next_t = clock.now()

    def _lockstep_loop(self) -> None:
        """One control step per new joint-state stamp, once /ee_pose and /goal are as new as it."""
        while not self._stop.is_set():
            with self._state_cv:
                self._state_cv.wait_for(lambda: self._stop.is_set() or self._lockstep_ready(), timeout=0.1)
            if self._stop.is_set():
                return
            if self._lockstep_ready():
                self.loop_stats.tick(time.monotonic())
                self._step()

    def _lockstep_ready(self) -> bool:
        st, ee, goal = self.state, self.ee, self.goal
        if self.phase == "reset":
            return self.reset_future is None or self.reset_future.done()
        return (st is not None and st.stamp_ns > self.last_cmd_stamp and ee is not None and goal is not None
                and ee.stamp_ns >= st.stamp_ns and goal.stamp_ns >= st.stamp_ns)

    def _publish(self, cmd: np.ndarray, final: bool = False) -> None:
        if self._stop.is_set() and not final:
            return  # shutting down: the final stop command is the last word
        self.last_cmd = cmd
        if self.p.command_type == "trajectory":
            msg = JointTrajectory()
            msg.joint_names = list(self.p.joint_names)
            pt = JointTrajectoryPoint()
            if self.p.command_interface == "velocity":
                q = self.state.q if self.state is not None else np.zeros(self.limits.n)
                pt.positions = [float(x) for x in q + cmd * self.period]
                pt.velocities = [float(x) for x in cmd]
            else:
                pt.positions = [float(x) for x in cmd]
            pt.time_from_start = Duration(nanoseconds=int(self.period * 1e9)).to_msg()
            msg.points = [pt]
        else:
            msg = Float64MultiArray()
            msg.data = [float(x) for x in cmd]
        self.cmd_pub.publish(msg)

    def _stop_command(self, mode: str, final: bool = False) -> None:
        q = self.state.q if self.state is not None else None
        cmd = self.shaper.stop(mode, q)
        if cmd is not None:  # None: position commands before any state: nothing is safe to send
            self._publish(cmd, final=final)
        self.prev = None  # no transition across a gap

    def _step(self) -> None:
        """One control step: safety first, then the episode, the transition and the next command."""
        now = self._now()
        stale_js = self.watchdog.check(now)
        stale = self.ee_watchdog.check(now) or stale_js
        st, ee, goal = self.state, self.ee, self.goal
        if self.estop.engaged:
            self._stop_command(self.p.estop_action)
            return
        if stale or ee is None or goal is None or st is None:
            if stale and not self.stale_logged and (self.watchdog.trips or self.ee_watchdog.trips):
                what = self.js_topic if stale_js else self.ee_topic
                age = self.watchdog.age(now) if stale_js else self.ee_watchdog.age(now)
                self.get_logger().error(
                    f"no valid {what} for {age:.3f} s (> state_timeout {self.p.state_timeout} s): "
                    f"command {self.p.stale_action}")
                self.stale_logged = True
            self._stop_command(self.p.stale_action)
            return
        self.stale_logged = False
        if self.phase == "reset":
            self._continue_reset()
            return
        if self.phase == "home":
            self._drive_home(st)
            return
        if now < self.settle_until:  # just after a reset: let states from before it drain
            self._stop_command("zero" if self.p.command_interface == "velocity" else "hold")
            return
        obs = self.task.observe(st.q, st.qd, ee.value, goal.value)
        if self.prev is not None:
            if st.stamp_ns <= self.prev[2]:
                self._publish(self.last_cmd)  # no new state since the last command: hold it
                return
            # deploy: no learning, no episodes (the policy runs until stopped; goals come from outside)
            if self.p.mode != "deploy" and self._record(self.prev[0], self.prev[1], obs, st.stamp_ns):
                return  # the episode ended
        self._command(obs, st)

    def _record(self, obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray, stamp_ns: int) -> bool:
        """Build and hand over one transition; returns True when it ended the episode."""
        reward = self.task.reward(obs, act, next_obs)
        terminated = bool(self.task.termination_batch(obs[None], act[None], next_obs[None])[0])
        self.ep_steps += 1
        self.ep_return += reward
        truncated = self.ep_steps >= self.steps_per_episode and not terminated
        if self.trainer is not None:
            if self.trainer.submit(obs, act, reward, next_obs, terminated, truncated):
                self.submitted += 1
                self.env_steps += 1
        else:
            self.env_steps += 1
        if self.tlog is not None:  # non-blocking: the log has its own bounded queue and writer thread
            episode = self.episode_log.episodes if self.episode_log is not None else 0
            self.tlog.append(obs, act, reward, next_obs, terminated, truncated, episode, self.ep_steps - 1,
                             stamp_ns)
        if terminated or truncated:
            self._end_episode(next_obs)
            return True
        return False

    def _command(self, obs: np.ndarray, st: ArmState) -> None:
        """Choose the action for `obs`, make it safe, publish it, remember (obs, applied action)."""
        p = self.p
        if self.trainer is not None:
            if p.lockstep and not self.trainer.wait_until_trained(self.env_steps, p.lockstep_train_timeout):
                self.get_logger().warning(
                    f"trainer not done with step {self.env_steps} within {p.lockstep_train_timeout} s "
                    f"({self.trainer.stats().get('error') or 'still busy'}); going on with the last policy",
                    throttle_duration_sec=10.0)
            snapshot = self.trainer.latest_snapshot()
            if snapshot is not None:
                self.policy = snapshot
        if p.mode == "collect" and p.collect_actions == "sine":
            action = self._sine_action()
        elif p.mode == "collect" or self.policy is None or (
            p.mode == "train" and self.env_steps < self.settings.cfg.mbpo.init_random_steps
        ):
            action = self.rng.uniform(-1.0, 1.0, size=self.task.act_dim)
        else:
            action = np.asarray(self.policy.act(obs, deterministic=(p.mode == "deploy"), rng=self.rng),
                                dtype=np.float64).reshape(-1)
            if not np.all(np.isfinite(action)):
                self.get_logger().error("the policy returned NaN/Inf: zero command", throttle_duration_sec=1.0)
                action = np.zeros(self.task.act_dim)
        velocity = self.task.action_to_command(action)
        vmax = self.settings.reach.max_joint_velocity
        if p.command_interface == "velocity":
            cmd = self.shaper.shape(velocity, st.q, self.period)
            applied = np.clip(cmd / vmax, -1.0, 1.0)
        else:
            cmd = self.shaper.shape(st.q + velocity * self.period, st.q, self.period)
            applied = np.clip((cmd - st.q) / (self.period * vmax), -1.0, 1.0)
        self._publish(cmd)
        self.last_cmd_stamp = st.stamp_ns
        self.prev = (obs, applied.astype(np.float32), st.stamp_ns)

    def _sine_action(self) -> np.ndarray:
        """Scripted excitation for collect mode: joint j follows 0.8 sin(2 pi f_j t), f_j = 0.2 + 0.1 j Hz
        (t counts control steps of the episode), a smooth sweep for system identification."""
        t = self.ep_steps * self.period
        freqs = 0.2 + 0.1 * np.arange(self.task.act_dim)
        return 0.8 * np.sin(2.0 * np.pi * freqs * t)

    # ------------------------------------------------------------------ episodes

    def _end_episode(self, final_obs: np.ndarray) -> None:
        st = self.trainer.stats() if self.trainer is not None else {}
        distance = float(self.task.distance(final_obs))
        if self.episode_log is not None:
            self.episode_log.append(self.env_steps, self.ep_return, self.task.success(final_obs), distance,
                                    float(st.get("achieved_utd", math.nan)),
                                    float(st.get("model_holdout_loss", math.nan)))
        self.ep_steps, self.ep_return, self.prev = 0, 0.0, None
        self.episode_end_stamp = self.state.stamp_ns if self.state is not None else -1
        self.reset_deadline = time.monotonic() + self.p.reset_timeout
        if self.reset_client is not None:
            self.phase = "reset"
            self.reset_future = None
            self._continue_reset()
        else:
            self.phase = "home"
            if self.state is not None:
                self._drive_home(self.state)

    def _continue_reset(self) -> None:
        """Simulation: call the twin's reset service (asynchronously) and wait for its answer."""
        if self.reset_future is None:
            if not self.reset_client.service_is_ready():
                if time.monotonic() > self.reset_deadline:
                    self.get_logger().error(f"reset service {self.reset_client.service_name} is not available; "
                                            "going on without a reset", throttle_duration_sec=10.0)
                    self._begin_episode()
                    return
                if not self.p.lockstep:
                    self._stop_command("zero" if self.p.command_interface == "velocity" else "hold")
                else:
                    time.sleep(0.01)
                return
            self.reset_future = self.reset_client.call_async(Trigger.Request())
            self.reset_future.add_done_callback(self._wake_control)
        if self.reset_future.done():
            result = self.reset_future.result()
            if result is None or not result.success:
                self.get_logger().error(f"reset failed: {getattr(result, 'message', 'no answer')}")
            self._begin_episode()
        elif time.monotonic() > self.reset_deadline:
            self.get_logger().error(f"no answer from {self.reset_client.service_name} within {self.p.reset_timeout} s")
            self._begin_episode()
        elif not self.p.lockstep:
            self._stop_command("zero" if self.p.command_interface == "velocity" else "hold")

    def _wake_control(self, _future=None) -> None:
        with self._state_cv:
            self._state_cv.notify_all()

    def _begin_episode(self) -> None:
        self.phase = "run"
        self.reset_future = None
        self.prev = None
        # lock-step: the twin publishes a fresh state after a reset; the new episode starts from a
        # state newer than the episode's last one, without commanding in between
        self.last_cmd_stamp = self.episode_end_stamp if self.p.lockstep else -1
        if not self.p.lockstep:  # wall clock: states sent before the reset may still be in flight
            self.settle_until = self._now() + 2.0 * self.period
        self.shaper.reset(np.zeros(self.limits.n) if self.p.command_interface == "velocity" else None)

    def _drive_home(self, st: ArmState) -> None:
        """Real arm: P-control back to reach.home_pose under the same safety limits."""
        err = self.task.home_pose - st.q
        if float(np.max(np.abs(err))) < self.p.home_tolerance or time.monotonic() > self.reset_deadline:
            if float(np.max(np.abs(err))) >= self.p.home_tolerance:
                self.get_logger().warning(f"home pose not reached within {self.p.reset_timeout} s")
            self._stop_command("zero" if self.p.command_interface == "velocity" else "hold")
            self.phase = "run"
            return
        velocity = np.clip(2.0 * err, -self.settings.reach.max_joint_velocity, self.settings.reach.max_joint_velocity)
        if self.p.command_interface == "velocity":
            self._publish(self.shaper.shape(velocity, st.q, self.period))
        else:
            self._publish(self.shaper.shape(st.q + velocity * self.period, st.q, self.period))

    # ------------------------------------------------------------------ services, parameters

    def _on_estop(self, req: SetBool.Request, res: SetBool.Response) -> SetBool.Response:
        if req.data:
            fresh = self.estop.engage("~/estop service")
            self._stop_command(self.p.estop_action)
            self.get_logger().error("E-STOP engaged (latched until ~/estop false)")
            res.message = "e-stop engaged" if fresh else "e-stop was already engaged"
        else:
            was = self.estop.release()
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
                done.set_result((True, self.save_checkpoint()))
            except (RuntimeError, TimeoutError) as exc:
                done.set_result((False, str(exc)))

        threading.Thread(target=work, name="agent-checkpoint-request", daemon=True).start()
        res.success, res.message = await done
        return res

    def _on_pause(self, req: SetBool.Request, res: SetBool.Response) -> SetBool.Response:
        if self.trainer is None:
            res.success, res.message = False, f"mode '{self.p.mode}' does not train"
            return res
        try:
            self.trainer.set_paused(bool(req.data))
            res.success, res.message = True, "training paused" if req.data else "training resumed"
        except RuntimeError as exc:
            res.success, res.message = False, str(exc)
        return res

    def _on_set_parameters(self, params):
        from rcl_interfaces.msg import SetParametersResult

        from mbpo_ros.nodes.params import check_value, node_specs

        specs = {s.name: s for s in node_specs()}
        for prm in params:
            spec = specs.get(prm.name)
            if spec is None:
                continue
            try:
                check_value(spec, prm.value)
            except ParameterError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        for prm in params:
            if prm.name == "state_timeout":
                self.watchdog.timeout = self.ee_watchdog.timeout = float(prm.value)
            elif prm.name == "position_margin":
                self.shaper.position_margin = float(prm.value)
            elif prm.name == "max_velocity_step":
                self.shaper.max_velocity_step = float(prm.value)
            elif prm.name in ("stale_action", "estop_action"):
                if prm.value == "zero" and self.p.command_interface == "position":
                    return SetParametersResult(successful=False,
                                               reason=f"{prm.name} 'zero' with position commands means 0 rad")
            if hasattr(self.p, prm.name):
                setattr(self.p, prm.name, prm.value)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ diagnostics

    def _publish_diagnostics(self) -> None:
        loop = self.loop_stats.summary()
        now = self._now()
        stale = self.watchdog.stale or self.ee_watchdog.stale
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()

        def status(name: str, level: bytes, message: str, values: dict[str, Any]) -> DiagnosticStatus:
            return DiagnosticStatus(level=level, name=f"agent_node: {name}", message=message,
                                    hardware_id=self.get_fully_qualified_name(),
                                    values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])

        lvl = DiagnosticStatus.OK
        msg = f"{loop['rate_hz']:.1f} Hz"
        if not self.p.lockstep and loop["n"] and loop["rate_hz"] < 0.9 * self.p.control_rate:
            lvl, msg = DiagnosticStatus.WARN, f"{loop['rate_hz']:.1f} Hz, below {self.p.control_rate:g} Hz"
        arr.status.append(status("control loop", lvl, msg, {
            "target_rate_hz": self.p.control_rate, "rate_hz": f"{loop['rate_hz']:.3f}",
            "period_mean_ms": f"{loop['period_mean_ms']:.3f}", "jitter_ms": f"{loop['jitter_ms']:.3f}",
            "period_err_p50_ms": f"{loop['err_p50_ms']:.3f}", "period_err_p99_ms": f"{loop['err_p99_ms']:.3f}",
            "period_err_max_ms": f"{loop['err_max_ms']:.3f}", "ticks": self.loop_stats.ticks,
            "step_p50_ms": f"{loop['work_p50_ms']:.3f}", "step_p99_ms": f"{loop['work_p99_ms']:.3f}",
            "step_max_ms": f"{loop['work_max_ms']:.3f}",
            "lockstep": self.p.lockstep, "phase": self.phase}))
        if self.estop.engaged:
            lvl, msg = DiagnosticStatus.ERROR, f"e-stop engaged: command {self.p.estop_action}"
        elif stale:
            lvl, msg = DiagnosticStatus.ERROR, f"stale joint state: command {self.p.stale_action}"
        elif self.rejects.total():
            lvl, msg = DiagnosticStatus.WARN, f"{self.rejects.total()} input messages rejected"
        else:
            lvl, msg = DiagnosticStatus.OK, "ok"
        age = self.watchdog.age(now)
        arr.status.append(status("safety", lvl, msg, {
            "watchdog": "stale" if stale else "ok", "state_age_s": f"{age:.3f}" if math.isfinite(age) else "inf",
            "ee_pose_age_s": f"{self.ee_watchdog.age(now):.3f}" if math.isfinite(self.ee_watchdog.age(now)) else "inf",
            "state_timeout_s": self.p.state_timeout,
            "watchdog_trips": self.watchdog.trips + self.ee_watchdog.trips,
            "estop": self.estop.engaged, "estop_count": self.estop.count,
            "rejected_total": self.rejects.total(), **{f"rejected {k}": v for k, v in self.rejects.as_dict().items()},
            "last_command": " ".join(f"{x:.4f}" for x in self.last_cmd)}))
        learner: dict[str, Any] = {"mode": self.p.mode, "env_steps": self.env_steps,
                                   "episodes": self.episode_log.episodes if self.episode_log else 0,
                                   "log_dropped": self.tlog.dropped if self.tlog is not None else 0}
        lvl, msg = DiagnosticStatus.OK, self.p.mode
        if self.trainer is not None:
            st = self.trainer.stats()
            for key in ("real_buffer", "model_buffer", "model_holdout_loss", "sac_updates", "updates_per_s",
                        "achieved_utd", "queue_dropped", "paused", "alive"):
                learner[key] = st.get(key, "")
            learner["last_checkpoint"] = self.last_checkpoint or st.get("last_checkpoint", "")
            if st.get("error") or not st.get("alive", True):
                lvl, msg = DiagnosticStatus.ERROR, f"trainer: {st.get('error') or 'not running'}"[:200]
            elif self.checkpoint_error:
                lvl, msg = DiagnosticStatus.WARN, f"checkpoint failed: {self.checkpoint_error}"[:200]
        arr.status.append(status("learner", lvl, msg, learner))
        self.diag_pub.publish(arr)

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Stop the control thread (after a last stop command), flush records, final checkpoint."""
        self._stop.set()
        with self._state_cv:
            self._state_cv.notify_all()
        if self.control_thread.is_alive():
            self.control_thread.join(timeout=5.0)
        try:
            self._stop_command("zero" if self.p.command_interface == "velocity" else "hold", final=True)
        except Exception as exc:  # the context may already be gone; the arm's own controller remains
            self.get_logger().warning(f"could not publish the final stop command: {exc}")
        if self.worker_thread.is_alive():
            self.worker_thread.join(timeout=130.0)
        if self.trainer is not None:
            self.trainer.close(checkpoint=True, timeout=120.0)
            st = self.trainer.stats()
            if st.get("error"):
                self.get_logger().error(f"trainer: {st['error']}")
            else:
                self.last_checkpoint = st.get("last_checkpoint", "")
                self.get_logger().info(f"final checkpoint: {self.last_checkpoint} "
                                       f"({st.get('env_steps')} env steps)")
        if self.tlog is not None:
            self.tlog.close()
        if self.episode_log is not None:
            self.episode_log.close()


def open_transition_log(path: Path, obs_dim: int, act_dim: int):
    """io.transition_log.TransitionLog appending to `path` (an existing log is continued)."""
    from mbpo_ros.io.transition_log import TransitionLog

    return TransitionLog(path, obs_dim=obs_dim, act_dim=act_dim, resume=True)


def load_policy(checkpoint: str):
    """The PolicySnapshot stored in a training checkpoint directory (or a run directory)."""
    from mbpo_ros.sim_eval import load_policy as _load

    return _load(checkpoint)


def main(args: list[str] | None = None) -> int:
    """Run agent_node until SIGINT/SIGTERM; final stop command and checkpoint; exit 0 (2 on bad parameters)."""
    # the control thread needs the GIL promptly when its deadline comes (default interval: 5 ms)
    sys.setswitchinterval(0.001)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    node = None
    executor = None
    spin = None
    code = 0
    try:
        node = AgentNode()
        # one executor thread: inputs, services, timers (the control loop has its own thread; the only
        # slow service, ~/save_checkpoint, awaits its helper thread without blocking the executor)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spin = threading.Thread(target=executor.spin, name="agent-executor", daemon=True)
        spin.start()
        node.start()
        while not stop.wait(0.2):
            if node.stopped or not spin.is_alive():
                code = 1
                break
    except ParameterError as exc:
        print(f"agent_node: invalid parameter: {exc}", file=sys.stderr, flush=True)
        code = 2
    except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
        print(f"agent_node: failed to start: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        if node is not None:
            node.close()
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        if spin is not None:
            spin.join(timeout=5.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
