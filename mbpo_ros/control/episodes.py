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
  the episode index (a resumed run goes on with new goals, a rerun sees the same ones). The node
  publishes it (latched) on `goal` and does not subscribe there. Refused in deploy mode, which has no
  episodes: it runs toward the goal an operator publishes.

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
    the goal of its first observation; stamp: the node's clock [s]."""

    index: int
    env_steps: int
    goal: np.ndarray
    stamp: float


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
    """goal_source task: each episode's goal drawn by the task (module docstring).

    `goal(index)` -> [3] float64 (m): `task.sample_goal(np.random.default_rng([seed, index]))`.
    Raises ValueError when the task's goal is not a 3-D point (agent_node's goal is a PointStamped).
    """

    def __init__(self, task: Any, seed: int) -> None:
        goal_dim = int(getattr(task, "goal_dim", 3))
        if goal_dim != 3:
            raise ValueError(f"goal_source 'task' needs a task whose goal is a 3-D point; task "
                             f"{getattr(task, 'name', type(task).__name__)!r} draws {goal_dim} values")
        if int(seed) < 0:
            raise ValueError(f"seed = {seed} must be >= 0")
        self.task = task
        self.seed = int(seed)

    def goal(self, index: int) -> np.ndarray:
        g = np.asarray(self.task.sample_goal(np.random.default_rng([self.seed, int(index)])),
                       dtype=np.float64).reshape(-1)
        if g.shape != (3,) or not np.all(np.isfinite(g)):
            raise ValueError(f"task {self.task.name!r} drew the goal {g.tolist()} for episode {index}: "
                             "not 3 finite values")
        return g


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
    "goal_source"}."""
    return {"event": "start", "episode": int(start.index), "env_steps": int(start.env_steps),
            "stamp": _stamp(start.stamp), "goal": [_number(v) for v in start.goal], "frame_id": frame_id,
            "goal_source": goal_source}


def end_record(end: EpisodeSummary) -> dict[str, Any]:
    """The announcement of an end: {"event": "end", "episode", "env_steps", "stamp", "steps", "return",
    "success", "final_distance", "reason"}."""
    return {"event": "end", "episode": int(end.index), "env_steps": int(end.env_steps), "stamp": _stamp(end.stamp),
            "steps": int(end.steps), "return": _number(end.episode_return), "success": bool(end.success),
            "final_distance": _number(end.final_distance), "reason": end.reason.value}


def to_json(record: dict[str, Any]) -> str:
    """One line of strict JSON (no NaN), keys in the order above."""
    return json.dumps(record, allow_nan=False, separators=(", ", ": "))
