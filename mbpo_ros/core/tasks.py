"""Per-task termination (and optionally reward) functions used inside model rollouts.

The Gymnasium v5 termination functions follow the official MBPO ``static/*.py`` files, adapted to
the v5 observation layouts (the v5 defaults: ``exclude_current_positions_from_observation=True``,
so ``obs[0]`` is the torso height for Hopper, Walker2d, Ant and Humanoid).

Convention: in the rollout path every function receives **torch** tensors
``obs: [B, obs_dim]``, ``act: [B, act_dim]``, ``next_obs: [B, obs_dim]`` and returns a torch
tensor ``[B]`` (bool for terminations, float for rewards) on the same device. NumPy inputs are
accepted too (they are converted and the result comes back as NumPy), so tests and tools can call
them directly. ``reward_fn=None`` means the reward is predicted by the learned model (the paper).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["TaskSpec", "get_task", "TASKS"]

TermFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class TaskSpec:
    """What MBPO needs to know about a task beyond the data.

    Attributes:
        name: task name ("Hopper-v5", "reach", ...).
        obs_dim, act_dim: observation and action sizes.
        termination_fn: (obs [B,o], act [B,a], next_obs [B,o]) -> bool [B].
        reward_fn: same signature -> float [B], or None to use the model's reward prediction.
        identity: an arm task's {"task": ArmTask.settings(), "robot": the arm (joint names, limits, command
            interface, control rate, model)} as plain JSON; checkpoints record it (MBPO.state).
        sample_goals: for goal-conditioned tasks (ArmTask.goal_relabelling), (n, generator, device) -> goals [n, g] from
            the task's goal distribution (torch); None for tasks without a goal.
        set_goal: (obs [B, o], goals [B, g]) -> a new obs [B, o] with the goal (and anything derived
            from it, e.g. an offset to the goal) replaced; the dynamics do not depend on the goal, so
            a transition relabelled on both ends (with reward_fn recomputed) is as real as the original.
        advance_goal: for a goal that moves on its own (Track), obs [B, o] -> the same obs with the goal (and
            what derives from it) one control step later; None for a goal that stays put (Reach). A
            relabelled transition's next state gets the advanced goal, and so does a goal-free model's.
    """

    name: str
    obs_dim: int
    act_dim: int
    termination_fn: TermFn
    reward_fn: TermFn | None = None
    identity: dict | None = None
    sample_goals: Callable[..., torch.Tensor] | None = None
    set_goal: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    advance_goal: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def has_goals(self) -> bool:
        """Whether transitions can be relabelled with other goals (sample_goals, set_goal and reward_fn given)."""
        return self.sample_goals is not None and self.set_goal is not None and self.reward_fn is not None

    @functools.cached_property
    def goal_dim(self) -> int:
        """Size of a goal (from one draw of sample_goals with its own generator: torch's global random
        state is left alone)."""
        return int(self.sample_goals(1, torch.Generator().manual_seed(0)).shape[-1])

    def strip_goal(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [B, o] with the goal set to zero: what a goal-free model (``mbpo.goal_free_model``) sees.
        ``obs - strip_goal(obs)`` is then the goal's part of the observation (see check_goal_free)."""
        return self.set_goal(obs, obs.new_zeros(obs.shape[0], self.goal_dim))

    def check_goal_free(self) -> None:
        """Raise ValueError unless the goal enters the observation additively, the same for every state
        (``set_goal(obs, g) - set_goal(obs, 0)`` does not depend on obs), as in Reach (the goal and the
        goal minus the end effector). Then a goal-free model's next state plus the start's goal part is
        the next state for that goal, which is what ``mbpo.goal_free_model`` relies on."""
        if not self.has_goals:
            raise ValueError(f"task {self.name!r} has no goals: mbpo.goal_free_model needs a task with goals "
                             "(ArmTask.goal_relabelling)")
        gen = torch.Generator().manual_seed(0)
        obs = torch.randn(2, self.obs_dim, generator=gen)
        goals = self.sample_goals(1, gen, obs.device).expand(2, -1)
        part = self.set_goal(obs, goals) - self.strip_goal(obs)
        if not torch.allclose(part[0], part[1], atol=1e-5):
            raise ValueError(
                f"task {self.name!r}: mbpo.goal_free_model needs a goal that enters the observation additively "
                "(set_goal(obs, g) - set_goal(obs, 0) the same for every obs); set it to false for this task"
            )

    def next_goal(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [B, o] with its goal moved on by one control step (``advance_goal``); obs itself when the goal
        stays put."""
        return obs if self.advance_goal is None else self.advance_goal(obs)

    def relabel(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor, generator=None):
        """The transitions with goals drawn afresh from the task's distribution (one per row), the next
        state's goal one step on (`next_goal`): (obs [B, o], next_obs [B, o], reward [B]). Raises ValueError
        for a task without goals."""
        if not self.has_goals:
            raise ValueError(f"task {self.name!r} has no goals to relabel (it needs sample_goals, set_goal and reward_fn)")
        goals = self.sample_goals(obs.shape[0], generator, obs.device)
        obs, next_obs = self.set_goal(obs, goals), self.next_goal(self.set_goal(next_obs, goals))
        return obs, next_obs, self.reward_fn(obs, act, next_obs).to(obs.dtype)


def _numpy_friendly(fn):
    """Let a torch-tensor function also take and return NumPy arrays."""

    def wrapped(obs, act, next_obs):
        if isinstance(next_obs, np.ndarray):
            out = fn(torch.as_tensor(obs), torch.as_tensor(act), torch.as_tensor(next_obs))
            return out.cpu().numpy()
        return fn(obs, act, next_obs)

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


@_numpy_friendly
def hopper_termination(obs, act, next_obs):
    """Hopper: done unless finite, |obs[1:]| < 100, height > 0.7 and |angle| < 0.2."""
    height, angle = next_obs[:, 0], next_obs[:, 1]
    healthy = (
        torch.isfinite(next_obs).all(dim=-1)
        & (next_obs[:, 1:].abs() < 100).all(dim=-1)
        & (height > 0.7)
        & (angle.abs() < 0.2)
    )
    return ~healthy


@_numpy_friendly
def walker2d_termination(obs, act, next_obs):
    """Walker2d: done unless 0.8 < height < 2.0 and -1 < angle < 1."""
    height, angle = next_obs[:, 0], next_obs[:, 1]
    healthy = (height > 0.8) & (height < 2.0) & (angle > -1.0) & (angle < 1.0)
    return ~healthy


@_numpy_friendly
def never_terminates(obs, act, next_obs):
    """HalfCheetah: episodes only end by the time limit."""
    return torch.zeros(next_obs.shape[0], dtype=torch.bool, device=next_obs.device)


@_numpy_friendly
def ant_termination(obs, act, next_obs):
    """Ant: done unless finite and 0.2 <= torso z <= 1.0."""
    z = next_obs[:, 0]
    healthy = torch.isfinite(next_obs).all(dim=-1) & (z >= 0.2) & (z <= 1.0)
    return ~healthy


@_numpy_friendly
def humanoid_termination(obs, act, next_obs):
    """Humanoid: done unless 1.0 < torso z < 2.0."""
    z = next_obs[:, 0]
    return ~((z > 1.0) & (z < 2.0))


@_numpy_friendly
def inverted_pendulum_termination(obs, act, next_obs):
    """InvertedPendulum: done unless finite and |pole angle| <= 0.2."""
    healthy = torch.isfinite(next_obs).all(dim=-1) & (next_obs[:, 1].abs() <= 0.2)
    return ~healthy


# name -> (obs_dim, act_dim, termination_fn) with the v5 default observation layouts.
TASKS: dict[str, tuple[int, int, TermFn]] = {
    "Hopper-v5": (11, 3, hopper_termination),
    "Walker2d-v5": (17, 6, walker2d_termination),
    "HalfCheetah-v5": (17, 6, never_terminates),
    "Ant-v5": (105, 8, ant_termination),
    "Humanoid-v5": (348, 17, humanoid_termination),
    "InvertedPendulum-v5": (4, 1, inverted_pendulum_termination),
}


def arm_task_spec(task, robot: dict | None = None) -> TaskSpec:
    """An arm task (core.arm_task.ArmTask: reach, track or a plugin) as a TaskSpec: its batch functions
    take NumPy or torch alike, so model rollouts call them on the tensors directly (no copy to the host)."""

    def termination(obs, act, next_obs):
        out = task.termination_batch(obs, act, next_obs)
        return np.asarray(out, dtype=bool) if isinstance(next_obs, np.ndarray) else out.bool()

    def reward(obs, act, next_obs):
        out = task.reward_batch(obs, act, next_obs)
        return np.asarray(out, dtype=np.float32) if isinstance(next_obs, np.ndarray) else out.float()

    identity = {"task": task.settings(), "robot": dict(robot) if robot else None}
    goals = tuple(task.goal_relabelling() or (None, None))
    if len(goals) not in (2, 3):
        raise ValueError(f"task {task.name!r}: goal_relabelling() returned {len(goals)} functions, expected "
                         "(sample_goals, set_goal) or (sample_goals, set_goal, advance_goal)")
    sample_goals, set_goal, advance_goal = (*goals, None)[:3]
    return TaskSpec(task.name, int(task.obs_dim), int(task.act_dim), termination, reward, identity, sample_goals,
                    set_goal, advance_goal)


def get_task(name: str, **kwargs) -> TaskSpec:
    """TaskSpec for a Gymnasium v5 task name ("Hopper-v5" or "Hopper") or an arm task ("reach", "track",
    or a plugin of the entry-point group ``mbpo_ros.tasks``, see core/arm_task.py).

    For gym tasks, ``obs_dim=`` / ``act_dim=`` keyword arguments override the v5 defaults (e.g. an
    Ant made with ``include_cfrc_ext_in_observation=False`` has 27 observations). For an arm task the
    keyword arguments are ``cfg`` (its config dataclass), ``n_joints`` and ``robot`` (the arm's identity,
    plain data, see io/robot_identity.py).
    """
    key = name if name in TASKS else f"{name}-v5"
    if key not in TASKS:
        from mbpo_ros.core.arm_task import get_task_class, task_names

        try:
            cls = get_task_class(name)
        except ValueError as exc:
            if "no task named" not in str(exc):
                raise
            raise ValueError(f"no task named {name!r}; known tasks: {', '.join([*TASKS, *task_names()])}") from None
        unknown = set(kwargs) - {"cfg", "n_joints", "robot"}
        if unknown:
            raise ValueError(f"get_task({name!r}) got unknown arguments {sorted(unknown)}; only cfg, n_joints, robot")
        task = cls(kwargs.get("cfg"), n_joints=int(kwargs.get("n_joints", 6)))
        return arm_task_spec(task, kwargs.get("robot"))
    obs_dim, act_dim, term = TASKS[key]
    unknown = set(kwargs) - {"obs_dim", "act_dim"}
    if unknown:
        raise ValueError(f"get_task({name!r}) got unknown arguments {sorted(unknown)}; only obs_dim, act_dim")
    return TaskSpec(key, int(kwargs.get("obs_dim", obs_dim)), int(kwargs.get("act_dim", act_dim)), term)
