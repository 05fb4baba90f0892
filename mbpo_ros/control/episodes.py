"""Episodes without ROS: where each episode's goal comes from, and what is announced when one starts or ends.

Goal sources (`goal_source`, one of `GOAL_SOURCES`):

- ``topic``: goals arrive on the agent's `goal` topic (twin_node, or any external source). The goal of
  an episode is the latest accepted one; one that arrives mid-episode applies from the next step.
  On a real arm (drive home, no reset service) the next episode starts once the arm is home AND a
  goal message was accepted after the previous episode ended (a newer stamp, or the same stamp with
  another point), or when `reset_timeout` has passed since that end (then it starts with the last
  goal, and says so). With a reset service the reset starts the next episode (a simulator publishes
  its new goal with the reset, as twin_node does).
- ``task``: the task draws each episode's goal itself (`TaskGoals`), when the episode starts: the
  goal of episode k is `task.sample_goal(default_rng([seed, k]))`, so it depends only on the seed and
  the episode index (a resumed run goes on with new goals, a rerun sees the same ones). Each control
  step observes the goal's current value, `task.target(goal, t)` at the episode time t = (stamp of
  the joint state - stamp of the episode's first joint state): the timeline transitions use, so a
  lock-step twin run is deterministic. For Reach that is the drawn point at every t; for a task
  whose target moves (Track: a circle) it moves. The node publishes the current target point
  (latched) on `goal` whenever it changes (Reach: once per episode; Track: every control step) and
  does not subscribe there. Refused in deploy mode, which has no episodes: it runs toward the goal an
  operator publishes (so a task whose target moves cannot deploy, nodes/params.py).

Episodes are numbered from the count of finished episodes in the run directory (`episodes.csv`), the
index the transition log records with each transition. An episode starts at the first control step
that observes a new state in the RUN phase (its first policy command); it ends (`EndReason`) at its
time limit, when the task terminates it, at a clock jump, when the joint-state stamps start a new
timeline, when the e-stop engages, or when control stops (shutdown, lifecycle deactivation). A stale
state does not end an episode: stop commands are sent, no transition spans the gap, and the episode
goes on when fresh states return. After an end (other than a clock jump or a new timeline, where
control goes on from where the arm is) the arm goes home: reset service or drive home.

`start_record` / `end_record` give the announcement as plain JSON data (the node publishes it on
`episode` as std_msgs/String); docs/architecture.md ("Episodes") documents the fields.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the values of agent_node's parameter goal_source
GOAL_SOURCES = ("topic", "task")


def check_goal_source(task: Any, goal_source: str, mode: str, fix: str = "") -> None:
    """Refuse (ValueError, one line starting with the parameter at fault) where the agent cannot give the task
    its goal: goal_source task in deploy mode (no episodes: deploy runs toward the point published on
    `goal`); and a task whose goal is not one fixed 3-D point (`core.arm_task.goal_is_fixed_point`: Track's
    target moves on a circle) in deploy mode or with goal_source topic (a PointStamped holds one point, not a
    moving target). The one statement of these rules for the Controller and the node's parameters. `task`: a
    task or its class; `fix`: the advice that ends the goal_source topic message (default: use goal_source:=task)."""
    from mbpo_ros.core.arm_task import goal_is_fixed_point

    if goal_source == "task" and mode == "deploy":
        raise ValueError("'goal_source' = task needs mode train or collect: deploy has no episodes and runs toward "
                         "the goal published on the goal topic (goal_source:=topic)")
    if goal_is_fixed_point(task):
        return
    cls = task if isinstance(task, type) else type(task)
    what = (f"task {cls.name!r}, whose target moves during an episode (a goal of {getattr(cls, 'goal_dim', 3)} "
            f"values, a target of {getattr(cls, 'target_dim', 3)} at each time)")
    if mode == "deploy":
        raise ValueError(f"'mode' = deploy cannot run {what}: deploy has no episodes and runs toward the fixed "
                         "point published on goal; evaluate the checkpoint on the twin with mbpo-ros eval "
                         "--checkpoint DIR, or run the task on the arm in mode train or collect with goal_source:=task")
    if goal_source == "topic":
        raise ValueError(f"'goal_source' = topic cannot run {what}: the goal topic holds one fixed 3-D point; "
                         + (fix or "use goal_source:=task (the agent draws each episode's goal and publishes the "
                                   "moving target on goal)"))


class EndReason(enum.Enum):
    """Why an episode ended."""

    TIME_LIMIT = "time_limit"  # the task's steps_per_episode were done
    TERMINATED = "terminated"  # the task's termination
    CLOCK_JUMP = "clock_jump"  # the node's clock went back, or forward by more than max_clock_step
    NEW_TIMELINE = "new_timeline"  # the joint-state stamps started over (inputs.StampGate)
    ESTOP = "estop"  # the e-stop engaged
    STOPPED = "stopped"  # control stopped: shutdown, or the managed node was deactivated


@dataclass(frozen=True)
class EpisodeStart:
    """An episode began. index: episode number; env_steps: env steps so far; goal [3] (m, base frame):
    the goal point of its first observation; stamp: the node's clock [s]. goal_source task: task_goal
    [goal_dim] is the goal the task drew (Track: centre, start phase, direction) and origin_ns the
    joint-state stamp at which the episode's time is 0 (its first state): the observation at a state
    stamped s holds `task.target(task_goal, (s - origin_ns) * 1e-9)`."""

    index: int
    env_steps: int
    goal: np.ndarray
    stamp: float
    task_goal: np.ndarray | None = None
    origin_ns: int | None = None


@dataclass(frozen=True)
class EpisodeSummary:
    """A finished episode: return, success and distance of its last state, steps, env steps so far,
    its number and why it ended. stamp: the node's clock at the end [s] (nan: unknown)."""

    episode_return: float
    success: bool
    final_distance: float
    steps: int
    env_steps: int
    index: int = 0
    reason: EndReason = EndReason.TIME_LIMIT
    stamp: float = math.nan


class TaskGoals:
    """goal_source task: each episode's goal drawn by the task, and where it is at each moment (module docstring).

    `goal(index)` -> [goal_dim] float64: `task.sample_goal(np.random.default_rng([seed, index]))` (Reach: a
    point; Track: centre, start phase, direction). `target(goal, t)` -> [target_dim] float64: the task's own
    `task.target(goal, t)`, the value the observation holds `t` seconds into the episode (Reach: the point;
    Track: the target's position and velocity); its first 3 values are the point the agent publishes.
    Raises ValueError (at construction already, for the first episode) when the task draws or places a goal
    of another size than it declares, or a value that is not finite.
    """

    def __init__(self, task: Any, seed: int, first_index: int = 0) -> None:
        if int(seed) < 0:
            raise ValueError(f"seed = {seed} must be >= 0")
        self.task = task
        self.seed = int(seed)
        self.goal_dim = int(getattr(task, "goal_dim", 3))
        self.target_dim = int(getattr(task, "target_dim", 3))
        if self.target_dim < 3:
            raise ValueError(f"task {task.name!r}: target_dim = {self.target_dim}; the agent publishes the first 3 "
                             "values of the target as a point, so a target has at least 3")
        self.target(self.goal(first_index), 0.0)  # a plugin that does not keep its own sizes fails here, at start

    def goal(self, index: int) -> np.ndarray:
        g = np.asarray(self.task.sample_goal(np.random.default_rng([self.seed, int(index)])),
                       dtype=np.float64).reshape(-1)
        if g.shape != (self.goal_dim,) or not np.all(np.isfinite(g)):
            raise ValueError(f"task {self.task.name!r} drew the goal {g.tolist()} for episode {index}: "
                             f"not {self.goal_dim} finite values (its goal_dim)")
        return g

    def target(self, goal: np.ndarray, t: float) -> np.ndarray:
        v = np.asarray(self.task.target(goal, float(t)), dtype=np.float64).reshape(-1)
        if v.shape != (self.target_dim,) or not np.all(np.isfinite(v)):
            raise ValueError(f"task {self.task.name!r} placed the goal {np.asarray(goal).tolist()} at "
                             f"{v.tolist()} at t = {t:g} s: not {self.target_dim} finite values (its target_dim)")
        return v


def _number(x: float) -> float | None:
    """JSON has no NaN/Inf: null instead."""
    x = float(x)
    return x if math.isfinite(x) else None


def _stamp(t: float) -> dict[str, int] | None:
    """Seconds -> {"sec", "nanosec"} as builtin_interfaces/Time (null when unknown)."""
    if not math.isfinite(t):
        return None
    ns = int(round(t * 1e9))
    return {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}


def start_record(start: EpisodeStart, frame_id: str, goal_source: str) -> dict[str, Any]:
    """The announcement of a start: {"event": "start", "episode", "env_steps", "stamp", "goal", "frame_id",
    "goal_source"}, and with a goal the task drew, "task_goal" (its values: Track's centre, phase, direction)
    and "time_origin" (the joint-state stamp at which the episode's time is 0)."""
    out = {"event": "start", "episode": int(start.index), "env_steps": int(start.env_steps),
           "stamp": _stamp(start.stamp), "goal": [_number(v) for v in start.goal], "frame_id": frame_id,
           "goal_source": goal_source}
    if start.task_goal is not None:
        out["task_goal"] = [_number(v) for v in start.task_goal]
        ns = start.origin_ns
        out["time_origin"] = {"sec": int(ns) // 1_000_000_000, "nanosec": int(ns) % 1_000_000_000} if ns is not None else None
    return out


def end_record(end: EpisodeSummary) -> dict[str, Any]:
    """The announcement of an end: {"event": "end", "episode", "env_steps", "stamp", "steps", "return",
    "success", "final_distance", "reason"}."""
    return {"event": "end", "episode": int(end.index), "env_steps": int(end.env_steps), "stamp": _stamp(end.stamp),
            "steps": int(end.steps), "return": _number(end.episode_return), "success": bool(end.success),
            "final_distance": _number(end.final_distance), "reason": end.reason.value}


def to_json(record: dict[str, Any]) -> str:
    """One line of strict JSON (no NaN), keys in the order above."""
    return json.dumps(record, allow_nan=False, separators=(", ", ": "))
