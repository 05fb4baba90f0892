"""The Task interface of an arm, and the registry that finds tasks through Python entry points.

A task says what the arm should do, as pure functions of what the agent observes (no mujoco,
no rclpy): the observation built from the joint state, the end-effector pose and the goal; the
reward, success and termination of transitions (batched, NumPy or torch alike, so MBPO's model
rollouts score whole batches on the device); how a goal is drawn for an episode, where it is at
time t of the episode (a moving target), and the home pose an episode starts from.

Writing a task (a sketch; `mbpo_ros.core.reach.ReachTask` and `mbpo_ros.core.track.TrackTask`
are the built-in ones)::

    class HoverTask(ReachTask):            # or subclass ArmTask and implement every method
        name = "hover"
        def reward_batch(self, obs, act, next_obs):
            return super().reward_batch(obs, act, next_obs) - 0.1 * (next_obs[..., self.qd_slice] ** 2).mean(-1)

and declare it in your package's ``setup.py`` (or ``pyproject.toml``)::

    entry_points={"mbpo_ros.tasks": ["hover = my_pkg.tasks:HoverTask"]}

After ``pip install``, ``get_task_class("hover")`` finds it, and so do ``mbpo-ros gym --task
hover`` and the ``task`` parameters. A task class is built as ``cls(cfg, n_joints=n)`` where
``cfg`` is an instance of its ``config_class`` (a frozen dataclass; ``cls.config_class()`` must
give usable defaults) and must expose the attributes listed on `ArmTask`.
"""

from __future__ import annotations

import abc
import dataclasses
from importlib import metadata
from typing import Any, ClassVar

import numpy as np

#: Entry-point group of task plugins.
ENTRY_POINT_GROUP = "mbpo_ros.tasks"

#: Tasks of this package (also declared as entry points in setup.py; this table is the fall-back
#: when the package runs from a source tree that was never installed).
BUILTIN_TASKS = {
    "reach": "mbpo_ros.core.reach:ReachTask",
    "track": "mbpo_ros.core.track:TrackTask",
}


class ArmTask(abc.ABC):
    """What the agent, the twin's gym env and the learner need from a task.

    Attributes set by every task: ``name`` (class attribute, the registry name),
    ``config_class`` (class attribute), ``cfg``, ``n_joints``, ``obs_dim``, ``act_dim`` (= n_joints),
    ``goal_dim`` (size of a goal as `sample_goal` returns it), ``home_pose`` [n] (rad),
    ``cfg.control_rate`` (Hz), ``cfg.steps_per_episode``, ``cfg.success_threshold``.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = type(None)

    # ----------------------------------------------------------------------- observation
    @abc.abstractmethod
    def observe(self, q, qd, ee_pos, goal, ee_quat=None) -> np.ndarray:
        """obs [obs_dim] float32 from q [n], qd [n], ee_pos [3] (m), the goal's current value
        (`target(goal, t)`) and the end-effector orientation ee_quat [4] (w, x, y, z) when known."""

    # ----------------------------------------------------------------------- reward, success, termination
    @abc.abstractmethod
    def reward_batch(self, obs, act, next_obs) -> Any:
        """[B] rewards of transitions obs [B, obs_dim], act [B, act_dim] in [-1, 1], next_obs [B, obs_dim];
        NumPy in, NumPy out; torch in, torch out (same device)."""

    def termination_batch(self, obs, act, next_obs) -> Any:
        """[B] bool: the transition ends the episode (default: never; episodes end by time limit)."""
        if isinstance(next_obs, np.ndarray):
            return np.zeros(next_obs.shape[:-1], dtype=bool)
        return next_obs.new_zeros(next_obs.shape[:-1], dtype=bool)

    @abc.abstractmethod
    def distance(self, obs) -> Any:
        """Task error of an observation: [obs_dim] -> float, [B, obs_dim] -> [B] (m for reaching tasks)."""

    def success_batch(self, obs) -> Any:
        """[B, obs_dim] -> [B] bool: the error is below cfg.success_threshold."""
        return self.distance(obs) < self.cfg.success_threshold

    def success(self, obs) -> bool:
        """obs [obs_dim] -> whether the task is achieved in this observation."""
        return bool(self.distance(obs) < self.cfg.success_threshold)

    def reward(self, obs, act, next_obs) -> float:
        """Reward of one transition (obs, next_obs [obs_dim], act [act_dim])."""
        r = self.reward_batch(np.asarray(obs, dtype=np.float64)[None], np.asarray(act, dtype=np.float64)[None],
                              np.asarray(next_obs, dtype=np.float64)[None])
        return float(r[0])

    # ----------------------------------------------------------------------- episodes
    @abc.abstractmethod
    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """The goal of a new episode: [goal_dim]."""

    def target(self, goal, t: float) -> np.ndarray:
        """Where the goal is `t` seconds into the episode: [3] (m). Default: a fixed goal, its first 3 values."""
        return np.asarray(goal, dtype=np.float64)[:3]

    def goal_relabelling(self):
        """``(sample_goals, set_goal)``, or ``(sample_goals, set_goal, advance_goal)`` for a goal that moves
        on its own, when a transition may be relabelled with another goal (the goal does not act on the
        arm, so the same motion is a transition for any goal), else None (the default).
        ``sample_goals(n, generator, device)`` -> goals [n, g] (torch): values the observation's goal takes
        in the task's episodes (Reach: points of the goal box; Track: a target's position and velocity);
        ``set_goal(obs [B, o], goals [B, g])`` -> a new obs with the goal and everything derived from it
        replaced; ``advance_goal(obs [B, o])`` -> the obs with its goal one control step later (the next
        state of a relabelled transition, and of a goal-free model's rollout, gets it). MBPO's
        ``mbpo.relabel_ratio`` uses them, and
        ``mbpo.goal_free_model`` (on in ``preset("reach")``) needs the goal to enter the observation
        additively (``set_goal(obs, g) - set_goal(obs, 0)`` the same for every obs, as Reach's goal and
        goal offset); MBPO checks that at construction and refuses otherwise."""
        return None

    def sample_home(self, rng: np.random.Generator) -> np.ndarray:
        """Start joint positions of an episode: [n] (rad), home_pose + uniform noise of cfg.home_noise."""
        noise = float(getattr(self.cfg, "home_noise", 0.0))
        return self.home_pose + rng.uniform(-noise, noise, size=self.n_joints)

    @abc.abstractmethod
    def action_to_command(self, a) -> np.ndarray:
        """Action [n] in [-1, 1] -> joint command (rad/s for velocity tasks)."""

    # ----------------------------------------------------------------------- identity
    def settings(self) -> dict[str, Any]:
        """The task's name and settings as plain JSON data (what a checkpoint records)."""
        cfg = dataclasses.asdict(self.cfg) if dataclasses.is_dataclass(self.cfg) else dict(vars(self.cfg))
        return {"name": self.name, "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                "n_joints": self.n_joints, "obs_dim": self.obs_dim, "act_dim": self.act_dim}


def goal_is_fixed_point(task: ArmTask | type[ArmTask]) -> bool:
    """True when the task's goal is one fixed 3-D point: a 3-value goal and target (`goal_dim`, `target_dim`,
    3 when not set) and the default `target` (the goal itself at every t). False for a task whose target
    moves (Track: a 5-value goal, a 6-value target) or any task that overrides `target`: its goal cannot
    come from a goal point on a topic, only from the task (`sample_goal`, then `target(goal, t)`)."""
    cls = task if isinstance(task, type) else type(task)
    return (int(getattr(cls, "goal_dim", 3)) == 3 and int(getattr(cls, "target_dim", 3)) == 3
            and cls.target is ArmTask.target)


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def task_names() -> list[str]:
    """Every task name the registry knows: built-in and installed plugins."""
    return sorted(set(BUILTIN_TASKS) | set(_entry_points()))


def get_task_class(name: str) -> type[ArmTask]:
    """The task class registered under `name` (entry point group ``mbpo_ros.tasks``, or built-in).

    Raises ValueError listing the known names when there is none, or when the entry point does not
    load or does not name an ArmTask subclass.
    """
    eps = _entry_points()
    if name in eps:
        try:
            cls = eps[name].load()
        except Exception as exc:  # a broken plugin: say which and why, do not hide it
            raise ValueError(f"task {name!r}: entry point {eps[name].value!r} does not load: "
                             f"{type(exc).__name__}: {exc}") from exc
    elif name in BUILTIN_TASKS:
        import importlib

        module, attr = BUILTIN_TASKS[name].split(":")
        cls = getattr(importlib.import_module(module), attr)
    else:
        raise ValueError(f"no task named {name!r}; known tasks: {', '.join(task_names())} (a plugin declares "
                         f"an entry point in the group {ENTRY_POINT_GROUP!r})")
    if not (isinstance(cls, type) and issubclass(cls, ArmTask)):
        raise ValueError(f"task {name!r} is {cls!r}, not a subclass of mbpo_ros.core.arm_task.ArmTask")
    return cls


def make_task(name: str, n_joints: int, cfg: Any = None, **overrides: Any) -> ArmTask:
    """`get_task_class(name)(cfg, n_joints)`; `overrides` replace fields of cfg (or of the defaults)."""
    cls = get_task_class(name)
    cfg = cfg if cfg is not None else cls.config_class()
    if overrides:
        known = {f.name for f in dataclasses.fields(cfg)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"task {name!r} has no settings {unknown}; its settings: {', '.join(sorted(known))}")
        cfg = dataclasses.replace(cfg, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
    return cls(cfg, n_joints=n_joints)


def task_from_settings(settings: dict[str, Any]) -> ArmTask:
    """Rebuild a task from `ArmTask.settings()` (a checkpoint's identity["task"]): same class, same settings."""
    cls = get_task_class(str(settings.get("name", "")))
    known = {f.name for f in dataclasses.fields(cls.config_class)}
    values = dict(settings.get("config") or {})
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"task {cls.name!r} has no settings {unknown} (recorded by another version of the task?)")
    cfg = cls.config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    return cls(cfg, n_joints=int(settings.get("n_joints", len(cfg.home_pose))))
