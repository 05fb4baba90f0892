"""The agent's decisions without ROS: `Controller.step(inputs, now) -> Command`.

One control step, in this order (each rule is proven by test/test_control_properties.py; the
safety case, hazard by hazard, is docs/safety.md):

1. clock: a jump (backwards, or forwards by more than `max_clock_step`) is reported, ends the
   episode without a transition across it, and control goes on on the new timeline;
2. e-stop latched -> stop command (velocity interface: zeros; position interface: hold the
   measured position); it ends the running episode, and after the release the arm goes home first;
3. stale -> stop command: no joint state or /ee_pose with a NEWER stamp for `state_timeout`
   (frozen and zero stamps included), or no goal yet (goal_source topic);
4. episode phase (`Phase`): waiting for the reset service, driving home (and, goal_source topic, for
   a goal newer than the last episode's end), settling after a reset;
5. running: a new episode starts with the first new state (goal_source task: the task draws its
   goal, and every step observes its current value `task.target(goal, t)`, t = the joint-state stamp
   minus the episode's first one; the point is handed out in `Command.goal` when it changes); build the transition from the previous step (only between two valid states of one
   timeline with increasing stamps, every value finite), hand it to the learner, end the episode
   at its time limit; then choose the action (policy snapshot, or exploration) for the new state.

Episodes (control/episodes.py: goal sources, end reasons, announcements) start and end in
`Command.started` / `Command.episode`; deploy mode has no episodes.

Every command that leaves goes through the one `CommandShaper` (limits, rate limit, position
guard): policy commands, repeats (no new state since the last command), drive-home commands and
stop commands alike. Nothing here blocks except `Learner.policy` (lock-step waits for the trainer).

Inputs and outputs:
- `Inputs` (control/inputs.py): the latest accepted joint state, /ee_pose and /goal, a monotonic
  time, and the status of the reset call. Messages enter through `Controller.inputs` (an
  `InputCache`), which validates them.
- `Command`: the values to publish (None: publish nothing), why, the transition handed to the
  learner this step, a finished episode's summary, a reset request, and events to log.
- `Learner` (a protocol the node implements): `submit(transition) -> bool`, `policy(env_steps)`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mbpo_ros.control.episodes import (
    GOAL_SOURCES,
    EndReason,
    EpisodeStart,
    EpisodeSummary,
    TaskGoals,
    check_goal_source,
)
from mbpo_ros.control.inputs import ArmState, Bounds, InputCache, Inputs, ResetStatus
from mbpo_ros.control.safety import (
    CommandShaper,
    EStop,
    JointLimits,
    Watchdog,
    check_margin,
    check_stop_action,
    check_timeout,
)
from mbpo_ros.control.timing import ClockJump, ClockMonitor


class Phase(enum.Enum):
    """Where the episode stands."""

    RUN = "run"  # commanding the policy's (or exploration) actions
    SETTLE = "settle"  # just after a reset (wall-clock modes): states sent before it drain, stop commands
    RESET = "reset"  # simulated arm: waiting for the reset service's answer
    HOME = "home"  # real arm: driving back to reach.home_pose under the same limits


class Reason(enum.Enum):
    """Why a command was sent (or not)."""

    POLICY = "policy"  # the action chosen for a new state
    REPEAT = "repeat"  # no new state since the last command: the last one, re-shaped
    ESTOP = "estop"
    STALE = "stale"
    SETTLE = "settle"
    RESET = "reset"
    HOME = "home"


@dataclass(frozen=True)
class ControllerConfig:
    """The controller's settings (nodes/params.py declares each as a ROS parameter)."""

    limits: JointLimits
    period: float  # control period [s]
    command_interface: str = "velocity"
    position_margin: float = 0.05
    max_velocity_step: float = 3.0
    state_timeout: float = 0.25
    stale_action: str = "zero"
    estop_action: str = "zero"
    mode: str = "train"  # train | deploy | collect
    collect_actions: str = "random"  # random | sine
    init_random_steps: int = 0
    lockstep: bool = False
    reset_via_service: bool = True  # False: a real arm, drive home between episodes
    reset_timeout: float = 10.0
    home_tolerance: float = 0.05
    allow_extra_joints: bool = False
    bounds: Bounds = field(default_factory=Bounds)
    max_stamp_ahead: float = 5.0
    max_clock_step: float = 1.0
    estop_on_foreign_publisher: bool = False
    seed: int = 0
    goal_source: str = "topic"  # topic: goals from the goal topic; task: the task draws each episode's (episodes.py)


@dataclass(frozen=True)
class Transition:
    """One real transition. obs, next_obs: [obs_dim] float32; action: [act_dim] float32 in [-1, 1]
    (the command actually sent, scaled); step: index in the episode; start_stamp_ns < stamp_ns:
    stamps of the states of obs and next_obs. Every value is finite."""

    obs: np.ndarray
    action: np.ndarray
    reward: float
    next_obs: np.ndarray
    terminated: bool
    truncated: bool
    step: int
    start_stamp_ns: int
    stamp_ns: int

    def finite(self) -> bool:
        return bool(np.all(np.isfinite(self.obs)) and np.all(np.isfinite(self.action))
                    and np.all(np.isfinite(self.next_obs)) and math.isfinite(self.reward))


@dataclass(frozen=True)
class Event:
    """Something to log: level "info" | "warning" | "error" and a one-line text."""

    level: str
    text: str


@dataclass(frozen=True)
class Command:
    """The outcome of one step.

    values: [n] command to publish (already shaped), or None: publish nothing.
    transition: the transition handed to the learner in this step (None: none).
    episode: set when an episode ended in this step (announced before `started`).
    started: set when an episode began in this step (its goal is in the step's observation).
    goal: goal_source task: (point [3] m, stamp_ns) the current target point to publish on `goal`, stamped
        with the joint state it was computed for; set at an episode's start and whenever the point
        changes (a moving target: every step), else None.
    call_reset: a reset request id: the node calls the reset service for it (once per id) and
        reports back through `Inputs.reset`.
    """

    values: np.ndarray | None
    reason: Reason
    transition: Transition | None = None
    episode: EpisodeSummary | None = None
    call_reset: int | None = None
    events: tuple[Event, ...] = ()
    started: EpisodeStart | None = None
    goal: tuple[np.ndarray, int] | None = None


class Policy(Protocol):
    obs_dim: int
    act_dim: int

    def act(self, obs: np.ndarray, deterministic: bool = False, rng: Any = None) -> np.ndarray: ...


class Learner(Protocol):
    """What the controller needs from the learning side (TrainerProcess + log in the node)."""

    def submit(self, transition: Transition) -> bool:
        """Hand over one transition; True when it counts as an env step."""

    def policy(self, env_steps: int) -> Policy | None:
        """The latest policy snapshot (lock-step: once the learner finished the work due for `env_steps`)."""


@dataclass
class _Prev:
    obs: np.ndarray
    action: np.ndarray
    state: ArmState


class Controller:
    """The agent's decision logic (module docstring). `task` is an arm task (core/arm_task.py: Reach, Track, a
    plugin); one whose target moves needs goal_source task and mode train or collect (check_goal_source).

    Thread use: `step` and `ready` from the control thread; `inputs.on_*` from the thread that
    receives messages; `set_parameter`, `note_command_publishers`, `estop` and `status` from any
    thread (single assignments of checked values).
    """

    def __init__(self, cfg: ControllerConfig, task: Any, learner: Learner | None = None, env_steps: int = 0,
                 topics: tuple[str, str, str] = ("joint_states", "ee_pose", "goal"), episodes: int = 0) -> None:
        if not (cfg.period > 0 and math.isfinite(cfg.period)):
            raise ValueError(f"control period {cfg.period} must be a positive number of seconds")
        if task.act_dim != cfg.limits.n:
            raise ValueError(f"the task acts on {task.act_dim} joints, the arm has {cfg.limits.n}")
        for name in ("stale_action", "estop_action"):
            check_stop_action(name, getattr(cfg, name), cfg.command_interface)
        if cfg.goal_source not in GOAL_SOURCES:
            raise ValueError(f"goal_source = {cfg.goal_source!r} must be one of: {', '.join(GOAL_SOURCES)}")
        check_goal_source(task, cfg.goal_source, cfg.mode)
        if not cfg.lockstep and not cfg.max_clock_step > cfg.period:
            raise ValueError(f"max_clock_step = {cfg.max_clock_step} s must exceed the control period "
                             f"{cfg.period:g} s")
        self.cfg = cfg
        self.task = task
        self.learner = learner
        self.period = float(cfg.period)
        self.interface = cfg.command_interface
        self.shaper = CommandShaper(cfg.limits, cfg.command_interface, cfg.position_margin, cfg.max_velocity_step)
        self.watchdog = Watchdog(cfg.state_timeout)  # joint states
        self.ee_watchdog = Watchdog(cfg.state_timeout)  # /ee_pose is part of the observed state too
        self.estop = EStop()
        self.inputs = InputCache(cfg.limits.names, cfg.allow_extra_joints, cfg.bounds, cfg.max_stamp_ahead,
                                 cfg.state_timeout, topics)
        self.topics = topics
        self.clock = ClockMonitor(None if cfg.lockstep else cfg.max_clock_step)
        self.rng = np.random.default_rng(cfg.seed)
        self.stale_action = cfg.stale_action
        self.estop_action = cfg.estop_action
        self.estop_on_foreign_publisher = cfg.estop_on_foreign_publisher
        self.env_steps = int(env_steps)
        #: goal_source task: the task draws each episode's goal; None: goals come from the goal topic
        self.goals = TaskGoals(task, cfg.seed, int(episodes)) if cfg.goal_source == "task" else None
        self.episode_index = int(episodes)  # the current episode's number (or the next one's, between two)
        self.episode_open = False  # an episode has started and not ended yet
        self.episode_goal: np.ndarray | None = None  # [goal_dim] the current episode's goal (goal_source task)
        self.episode_origin_ns = 0  # goal_source task: the joint-state stamp at which the episode's time is 0
        self.episode_time = 0.0  # goal_source task: the episode time [s] of the latest observation
        self._goal_out: tuple[np.ndarray, int] | None = None  # the target point to publish with the next command
        self._goal_sent: np.ndarray | None = None  # the last target point handed out for publishing
        self._started: EpisodeStart | None = None  # announced with the next command
        self._last_obs: np.ndarray | None = None  # the episode's latest observation
        self._goal_seq = 0  # seq of the latest accepted goal message (InputCache)
        self._goal_seq_at_end = -1  # ... when the last episode ended
        self.policy: Policy | None = None
        self.phase = Phase.RUN
        self.ep_steps = 0
        self.ep_return = 0.0
        self.prev: _Prev | None = None
        self.last_cmd_seq = -1  # seq of the state the last policy command was computed for
        self.episode_end_seq = -1
        self.settle_until = -math.inf
        self.deadline: float | None = None  # wall-clock deadline of the reset or the drive home (None: not set yet)
        self.reset_id = 0
        self.command_publishers = 1
        self.dropped_transitions = 0
        self.last_command = np.zeros(cfg.limits.n)
        self._estop_commanded = False
        self._epoch = -1  # the stamp timeline of the joint states seen so far
        self._predicted: tuple[int, np.ndarray, float] = (-1, np.zeros(cfg.limits.n), 0.0)  # (seq, q, time)
        self._stale_reported = False
        self._policy_nan_reported = False

    # ------------------------------------------------------------------ one step

    def step(self, inputs: Inputs, now: float) -> Command:
        """Decide the command for this control step (module docstring)."""
        events: list[Event] = []
        episode = None
        if inputs.goal is not None:
            self._goal_seq = inputs.goal.seq
        jump = self.clock.update(now)
        if jump is not None:
            episode = self._on_clock_jump(jump, events)
        st, ee, goal = inputs.state, inputs.ee, inputs.goal
        if st is not None and st.epoch != self._epoch:  # the stamps started a new timeline
            if self._epoch >= 0:
                events.append(Event("warning", f"{self.topics[0]} stamps started a new timeline (now at "
                                               f"{st.stamp_ns * 1e-9:.3f} s): episode ended without a transition "
                                               "across it"))
                episode = self._abandon_episode(EndReason.NEW_TIMELINE, now) or episode
            self._epoch = st.epoch
        stale_js = self.watchdog.check(st.fresh_at if st is not None else None, now)
        stale_ee = self.ee_watchdog.check(ee.fresh_at if ee is not None else None, now)
        fresh = st if not stale_js else None
        if self.estop.engaged:
            self._estop_commanded = True
            if self.episode_open:  # an e-stop ends the episode; after the release the arm goes home first
                episode = self._close_episode(EndReason.ESTOP, now)
                self._go_home()
            if self.phase in (Phase.RESET, Phase.HOME):
                self.deadline = None  # the reset or the drive home gets its full time after the release
            return self._stop(Reason.ESTOP, fresh, st, events, episode)
        self._estop_commanded = False
        if stale_js or stale_ee or (goal is None and self.goals is None):
            if not self._stale_reported and (self.watchdog.trips or self.ee_watchdog.trips):
                topic, wd = (self.topics[0], self.watchdog) if stale_js else (self.topics[1], self.ee_watchdog)
                age = f"{wd.age:.3f} s" if math.isfinite(wd.age) and wd.age >= 0 else "an unknown time (clock went back)"
                events.append(Event("error", f"no {topic} with a newer stamp for {age} (> state_timeout "
                                             f"{self.watchdog.timeout:g} s): stop command ({self._stop_name()})"))
                self._stale_reported = True
            return self._stop(Reason.STALE, fresh, st, events, episode)
        self._stale_reported = False
        if self.phase is Phase.RESET:
            return self._continue_reset(inputs, st, now, events, episode)
        if self.phase is Phase.HOME:
            return self._drive_home(inputs, st, now, events, episode)
        if self.phase is Phase.SETTLE:
            if now < self.settle_until:
                return self._stop(Reason.SETTLE, st, st, events, episode)
            self.phase = Phase.RUN
        if st.seq == self.last_cmd_seq:  # no new state since the last command
            return self._repeat(st, now, events, episode)
        if not self.episode_open and self.cfg.mode != "deploy":
            self._open_episode(goal, st, now)
        obs = self.task.observe(st.q, st.qd, ee.value, self._task_target(st) if self.goals is not None else goal.value)
        if self.episode_open:
            self._last_obs = obs
        transition = None
        prev = self.prev
        if prev is not None:
            if st.stamp_ns <= prev.state.stamp_ns:  # cannot happen within one timeline; never a transition
                self.prev = None
            elif self.cfg.mode != "deploy":
                transition = self._record(prev, obs, st, events)
                if transition is not None and (transition.terminated or transition.truncated):
                    episode = self._end_episode(obs, st, now, EndReason.TERMINATED if transition.terminated
                                                else EndReason.TIME_LIMIT)
                    if self.phase is Phase.RESET:
                        return self._continue_reset(inputs, st, now, events, episode, transition)
                    return self._drive_home(inputs, st, now, events, episode, transition)
        return self._command(obs, st, events, episode, transition)

    def ready(self, inputs: Inputs) -> bool:
        """Lock-step: is there something to step on? A new joint state with /ee_pose and /goal at least as
        new (the twin stamps all three alike), a reset answer, or an e-stop not yet commanded."""
        if self.estop.engaged and not self._estop_commanded:
            return True
        if self.phase is Phase.RESET:
            rid, status = inputs.reset
            return rid != self.reset_id or status in (ResetStatus.SUCCEEDED, ResetStatus.FAILED)
        st, ee, goal = inputs.state, inputs.ee, inputs.goal
        goal_ok = self.goals is not None or (goal is not None and st is not None and goal.stamp_ns >= st.stamp_ns)
        return (st is not None and st.seq > self.last_cmd_seq and ee is not None and goal_ok
                and ee.stamp_ns >= st.stamp_ns)

    # ------------------------------------------------------------------ commands

    def _stop_name(self) -> str:
        return "zero velocity" if self.interface == "velocity" else "hold the position"

    def _emit(self, values: np.ndarray | None, reason: Reason, events: list[Event], episode=None,
              transition=None, call_reset=None) -> Command:
        if values is not None:
            self.last_command = values
        started, self._started = self._started, None
        goal, self._goal_out = self._goal_out, None
        return Command(values, reason, transition, episode, call_reset, tuple(events), started, goal)

    def _stop_values(self, fresh: ArmState | None, known: ArmState | None) -> np.ndarray | None:
        """Velocity: zeros. Position: hold the measured position when it is fresh, else the last target,
        else the last measured position; None when nothing is known (no target is safe)."""
        if self.interface == "velocity":
            return self.shaper.zero()
        if fresh is not None:
            return self.shaper.hold(fresh.q, self.period)
        last = self.shaper.last
        if last is not None:
            return last
        return self.shaper.hold(known.q, self.period) if known is not None else None

    def shutdown_command(self) -> np.ndarray | None:
        """The last command before the node exits: zeros (velocity) or hold the latest measured position."""
        st = self.inputs.state
        values = self._stop_values(st, st)
        if values is not None:
            self.last_command = values
        return values

    def _stop(self, reason: Reason, fresh: ArmState | None, known: ArmState | None, events: list[Event],
              episode=None, transition=None, call_reset=None) -> Command:
        self.prev = None  # no transition across a stop
        if known is not None:  # lock-step: this state has had its command
            self.last_cmd_seq = max(self.last_cmd_seq, known.seq)
        return self._emit(self._stop_values(fresh, known), reason, events, episode, transition, call_reset)

    def _repeat(self, st: ArmState, now: float, events: list[Event], episode) -> Command:
        """No new state since the last command: send the last command again, through the shaper, with the
        position extrapolated by the commands held since that state arrived (the guard sees where the arm
        may be by now)."""
        last = self.shaper.last
        if last is None:
            return self._stop(Reason.REPEAT, st, st, events, episode)
        if self.interface == "velocity":
            # where the arm may be by now: the state's position moved on by the velocities held since
            if self._predicted[0] != st.seq:
                self._predicted = (st.seq, st.q.copy(), st.fresh_at)
            _, q_est, t_est = self._predicted
            q_est = q_est + last * max(0.0, now - t_est)
            self._predicted = (st.seq, q_est, max(now, t_est))
            cmd = self.shaper.shape(last, q_est, self.period)
        else:
            cmd = self.shaper.shape(last, st.q, self.period)
        if not np.array_equal(cmd, last):
            self.prev = None  # what the arm did is no longer the recorded action
        return self._emit(cmd, Reason.REPEAT, events, episode)

    def _choose_action(self, obs: np.ndarray, events: list[Event]) -> np.ndarray:
        cfg = self.cfg
        if self.learner is not None:
            snapshot = self.learner.policy(self.env_steps)
            if snapshot is not None:
                self.policy = snapshot
        if cfg.mode == "collect" and cfg.collect_actions == "sine":
            # joint j follows 0.8 sin(2 pi f_j t), f_j = 0.2 + 0.1 j Hz, t = control steps of the episode
            t = self.ep_steps * self.period
            return 0.8 * np.sin(2.0 * np.pi * (0.2 + 0.1 * np.arange(self.task.act_dim)) * t)
        if cfg.mode == "collect" or self.policy is None or (
            cfg.mode == "train" and self.env_steps < cfg.init_random_steps
        ):
            return self.rng.uniform(-1.0, 1.0, size=self.task.act_dim)
        action = np.asarray(self.policy.act(obs, deterministic=(cfg.mode == "deploy"), rng=self.rng),
                            dtype=np.float64).reshape(-1)
        if action.shape != (self.task.act_dim,) or not np.all(np.isfinite(action)):
            if not self._policy_nan_reported:
                events.append(Event("error", f"the policy returned {action.tolist()[:8]} (NaN/Inf or wrong size): "
                                             "zero action"))
                self._policy_nan_reported = True
            return np.zeros(self.task.act_dim)
        self._policy_nan_reported = False
        return action

    def _command(self, obs: np.ndarray, st: ArmState, events: list[Event], episode, transition) -> Command:
        """Choose the action for `obs`, shape it, remember (obs, applied action) for the next transition."""
        velocity = self.task.action_to_command(self._choose_action(obs, events))
        vmax = self.task.cfg.max_joint_velocity
        if self.interface == "velocity":
            cmd = self.shaper.shape(velocity, st.q, self.period)
            applied = np.clip(cmd / vmax, -1.0, 1.0)
        else:
            cmd = self.shaper.shape(st.q + velocity * self.period, st.q, self.period)
            applied = np.clip((cmd - st.q) / (self.period * vmax), -1.0, 1.0)
        self.last_cmd_seq = st.seq
        self.prev = _Prev(obs, applied.astype(np.float32), st)
        return self._emit(cmd, Reason.POLICY, events, episode, transition)

    # ------------------------------------------------------------------ transitions and episodes

    def _record(self, prev: _Prev, obs: np.ndarray, st: ArmState, events: list[Event]) -> Transition | None:
        """Build the transition prev -> obs and hand it to the learner (None: dropped as non-finite)."""
        reward = float(self.task.reward(prev.obs, prev.action, obs))
        terminated = bool(self.task.termination_batch(prev.obs[None], prev.action[None], obs[None])[0])
        truncated = self.ep_steps + 1 >= self.task.cfg.steps_per_episode and not terminated
        tr = Transition(prev.obs, prev.action, reward, obs, terminated, truncated, self.ep_steps,
                        prev.state.stamp_ns, st.stamp_ns)
        if not tr.finite():  # cannot happen for validated inputs; never hand such a transition on
            self.dropped_transitions += 1
            events.append(Event("error", f"non-finite transition dropped (reward {reward}); "
                                         f"{self.dropped_transitions} so far"))
            return None
        self.ep_steps += 1
        self.ep_return += reward
        if self.learner is None or self.learner.submit(tr):
            self.env_steps += 1
        return tr

    def _open_episode(self, goal, st: ArmState, now: float) -> None:
        """An episode begins with this step's observation (state `st`): its goal drawn (goal_source task; the
        episode's time starts at st's stamp) or the latest one."""
        self.episode_open = True
        self.ep_steps, self.ep_return, self._last_obs = 0, 0.0, None
        if self.goals is None:
            self._started = EpisodeStart(self.episode_index, self.env_steps, goal.value.copy(), now)
            return
        self.episode_goal = self.goals.goal(self.episode_index)
        self.episode_origin_ns = st.stamp_ns
        self._goal_sent = None  # every episode publishes its first target point
        point = self.goals.target(self.episode_goal, 0.0)[:3]
        self._started = EpisodeStart(self.episode_index, self.env_steps, point.copy(), now,
                                     self.episode_goal.copy(), st.stamp_ns)

    def _task_target(self, st: ArmState) -> np.ndarray:
        """goal_source task: the goal's current value for state `st` (`task.target(goal, t)`, t = episode time
        from the joint-state stamps), and its point queued for publishing when it changed."""
        self.episode_time = max(0.0, (st.stamp_ns - self.episode_origin_ns) * 1e-9)
        target = self.goals.target(self.episode_goal, self.episode_time)
        point = target[:3]
        if self._goal_sent is None or not np.array_equal(point, self._goal_sent):
            self._goal_sent = point.copy()
            self._goal_out = (point.copy(), int(st.stamp_ns))
        return target

    def _close_episode(self, reason: EndReason, now: float) -> EpisodeSummary:
        """The open episode ends: its summary (from its latest observation), and the next number."""
        obs = self._last_obs
        success, distance = ((bool(self.task.success(obs)), float(self.task.distance(obs))) if obs is not None
                             else (False, math.nan))
        summary = EpisodeSummary(self.ep_return, success, distance, self.ep_steps, self.env_steps,
                                 self.episode_index, reason, now)
        self.episode_open = False
        if reason is not EndReason.STOPPED:  # a stopped episode is not counted: the next one takes its number
            self.episode_index += 1
        self._goal_seq_at_end = self._goal_seq
        self.ep_steps, self.ep_return, self.prev, self._last_obs = 0, 0.0, None, None
        return summary

    def close_episode(self, now: float) -> EpisodeSummary | None:
        """Control stops (shutdown, deactivation): the open episode ends (EndReason.STOPPED); None if none was open.
        Not counted (episodes.csv gets no row, the next episode takes the same number, as the transitions
        already logged for it say). Call from the control thread, or once it has stopped."""
        return self._close_episode(EndReason.STOPPED, now) if self.episode_open else None

    def _go_home(self) -> None:
        """After an episode: the reset service (simulated arm) or the drive home (real arm); the deadline
        starts with the first step of that phase."""
        self.deadline = None
        if self.cfg.reset_via_service:
            self.phase = Phase.RESET
            self.reset_id += 1
        else:
            self.phase = Phase.HOME

    def _end_episode(self, final_obs: np.ndarray, st: ArmState, now: float, reason: EndReason) -> EpisodeSummary:
        self._last_obs = final_obs
        summary = self._close_episode(reason, now)
        self.episode_end_seq = st.seq
        self._go_home()
        return summary

    def _abandon_episode(self, reason: EndReason, now: float) -> EpisodeSummary | None:
        """End the episode without a transition (a clock jump, a new timeline); a new one begins at once."""
        summary = self._close_episode(reason, now) if self.episode_open else None
        self.ep_steps, self.ep_return, self.prev = 0, 0.0, None
        if self.phase in (Phase.RUN, Phase.SETTLE):
            self._begin_episode(now)
        return summary

    def _on_clock_jump(self, jump: ClockJump, events: list[Event]) -> EpisodeSummary | None:
        events.append(Event("error", f"{jump}: episode ended without a transition across the jump; control "
                                     "goes on on the new timeline"))
        self.settle_until = -math.inf
        return self._abandon_episode(EndReason.CLOCK_JUMP, jump.after)

    def _begin_episode(self, now: float) -> None:
        self.prev = None
        # lock-step: the new episode starts from a state newer than the episode's last one
        self.last_cmd_seq = max(self.last_cmd_seq, self.episode_end_seq) if self.cfg.lockstep else -1
        if self.cfg.lockstep:
            self.phase = Phase.RUN
        else:  # wall clock: states sent before the reset may still be in flight
            self.phase = Phase.SETTLE
            self.settle_until = now + 2.0 * self.period
        if self.interface == "position":
            self.shaper.reset(None)  # step-limit from the measured position of the new episode

    def _continue_reset(self, inputs: Inputs, st: ArmState, now: float, events: list[Event], episode,
                        transition=None) -> Command:
        """Simulated arm: ask for the reset service (the node calls it) and wait for its answer."""
        rid, status = inputs.reset
        if self.deadline is None:
            self.deadline = inputs.wall + self.cfg.reset_timeout
        done = rid == self.reset_id and status in (ResetStatus.SUCCEEDED, ResetStatus.FAILED)
        if done or inputs.wall > self.deadline:
            if not done:
                events.append(Event("error", f"no reset within reset_timeout {self.cfg.reset_timeout:g} s "
                                             f"({status.value if rid == self.reset_id else 'not called'}); "
                                             "going on without a reset"))
            elif status is ResetStatus.FAILED:
                events.append(Event("error", "the reset service reported a failure; going on"))
            self._begin_episode(now)
            if self.cfg.lockstep:
                return self._emit(None, Reason.RESET, events, episode, transition)
            return self._stop(Reason.RESET, st, st, events, episode, transition)
        call = None if (rid == self.reset_id and status is ResetStatus.PENDING) else self.reset_id
        if self.cfg.lockstep:  # in lock-step a command would advance simulated time: send none
            self.prev = None
            return self._emit(None, Reason.RESET, events, episode, transition, call)
        return self._stop(Reason.RESET, st, st, events, episode, transition, call)

    def _drive_home(self, inputs: Inputs, st: ArmState, now: float, events: list[Event], episode,
                    transition=None) -> Command:
        """Real arm: P-control back to reach.home_pose under the same shaping. The next episode begins once
        the arm is home and (goal_source topic) a goal arrived after the last episode ended, or at the
        deadline (reset_timeout after the drive home began)."""
        if self.deadline is None:
            self.deadline = inputs.wall + self.cfg.reset_timeout
        err = self.task.home_pose - st.q
        reached = float(np.max(np.abs(err))) < self.cfg.home_tolerance
        new_goal = self.goals is not None or self._goal_seq > self._goal_seq_at_end
        if (reached and new_goal) or inputs.wall > self.deadline:
            if not reached:
                events.append(Event("warning", f"home pose not reached within {self.cfg.reset_timeout:g} s"))
            if not new_goal:
                events.append(Event("warning", f"no new goal on {self.topics[2]} within reset_timeout "
                                               f"{self.cfg.reset_timeout:g} s after episode {self.episode_index - 1} "
                                               f"ended: episode {self.episode_index} starts with the last goal"))
            self._begin_episode(now)
            return self._stop(Reason.HOME, st, st, events, episode, transition)
        vmax = self.task.cfg.max_joint_velocity
        velocity = np.clip(2.0 * err, -vmax, vmax)
        if self.interface == "velocity":
            cmd = self.shaper.shape(velocity, st.q, self.period)
        else:
            cmd = self.shaper.shape(st.q + velocity * self.period, st.q, self.period)
        self.prev = None
        return self._emit(cmd, Reason.HOME, events, episode, transition)

    # ------------------------------------------------------------------ live settings, monitors, status

    def set_parameter(self, name: str, value: Any) -> bool:
        """Apply a live change of one of the controller's settings; False when `name` is not one.

        Raises ValueError with the reason when the value is not allowed (nothing is changed then).
        """
        if name == "state_timeout":
            t = check_timeout(value)
            self.watchdog.timeout = self.ee_watchdog.timeout = t
            self.inputs.set_resync_after(t)
        elif name == "position_margin":
            self.shaper.position_margin = check_margin(self.cfg.limits, value)
        elif name == "max_velocity_step":
            v = float(value)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"max_velocity_step = {value} must be > 0")
            self.shaper.max_velocity_step = v
        elif name in ("stale_action", "estop_action"):
            check_stop_action(name, value, self.interface)
            setattr(self, name, value)
        elif name == "estop_on_foreign_publisher":
            self.estop_on_foreign_publisher = bool(value)
            self.note_command_publishers(self.command_publishers)
        else:
            return False
        return True

    def note_command_publishers(self, count: int) -> list[Event]:
        """The number of publishers on the command topic (ours included). More than one: someone else
        commands the arm too: reported, and the e-stop engaged when `estop_on_foreign_publisher`."""
        before, self.command_publishers = self.command_publishers, int(count)
        events = []
        if count > 1:
            if before <= 1:
                events.append(Event("error", f"{count} publishers on the command topic: another node commands "
                                             "the arm too"))
            if self.estop_on_foreign_publisher and self.estop.engage(f"{count} publishers on the command topic"):
                events.append(Event("error", "E-STOP engaged: another publisher on the command topic"))
        return events

    def status(self) -> tuple[str, str, dict[str, Any]]:
        """(level "OK" | "WARN" | "ERROR", message, values) of the safety status on /diagnostics."""
        stale = self.watchdog.stale or self.ee_watchdog.stale
        rejects = self.inputs.rejects
        resyncs = sum(g.resyncs for g in self.inputs.gates.values())
        if self.estop.engaged:
            level, msg = "ERROR", f"e-stop engaged ({self.estop.reason}): {self._stop_name()}"
        elif self.command_publishers > 1:
            level, msg = "ERROR", f"{self.command_publishers} publishers on the command topic"
        elif stale:
            level, msg = "ERROR", f"stale state: {self._stop_name()}"
        elif self.clock.jumps:
            level, msg = "WARN", f"{self.clock.jumps} clock jumps, last: {self.clock.last_jump}"
        elif rejects.total():
            level, msg = "WARN", f"{rejects.total()} input messages rejected"
        else:
            level, msg = "OK", "ok"

        def age(wd: Watchdog) -> str:
            return f"{wd.age:.3f}" if math.isfinite(wd.age) else "inf"

        values = {
            "watchdog": "stale" if stale else "ok", "state_age_s": age(self.watchdog),
            "ee_pose_age_s": age(self.ee_watchdog), "state_timeout_s": self.watchdog.timeout,
            "watchdog_trips": self.watchdog.trips + self.ee_watchdog.trips,
            "estop": self.estop.engaged, "estop_count": self.estop.count, "estop_reason": self.estop.reason,
            "clock_jumps": self.clock.jumps, "last_clock_jump": str(self.clock.last_jump or ""),
            "stamp_resyncs": resyncs, "command_publishers": self.command_publishers,
            "dropped_transitions": self.dropped_transitions,
            "rejected_total": rejects.total(), **{f"rejected {k}": v for k, v in rejects.as_dict().items()},
            "last_command": " ".join(f"{x:.4f}" for x in self.last_command),
        }
        return level, msg, values
