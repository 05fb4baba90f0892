"""The Reach task, written once: observation, reward, success and goal sampling (pure NumPy).

The gym env (`mbpo_ros.sim.reach_env`) and the agent node both use `ReachTask`, so the reward on the
robot and in simulation is the same function of the observed state. Nothing here imports mujoco or
rclpy. The batch functions (`reward_batch`, `termination_batch`, `success_batch`) accept NumPy
arrays or torch tensors and return the same kind, so the MBPO model rollouts can call them on
tensors without a host round-trip.

Observation for n joints (`obs_dim = 2 n + 9`)::

    [q (n), qd (n), ee_pos (3), goal (3), goal - ee_pos (3)]

Action `a in [-1, 1]^n` is a joint velocity command `a * max_joint_velocity` (rad/s), held for one
control period (`1 / control_rate` s).

Reward for a transition (obs, act, next_obs), a function of the observed state only::

    r = -distance_weight * |goal - ee_pos|(next_obs)
        - action_penalty * mean(act ** 2)
        + success_bonus * [|goal - ee_pos|(next_obs) < success_threshold]

Episodes end by time limit only (`episode_seconds`, 100 control steps at the defaults): there is
no terminal state, so `termination_batch` is all False.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mbpo_ros.core.arm_task import ArmTask, goal_is_fixed_point
from mbpo_ros.core.config import check_fields, param


@dataclass(frozen=True)
class ReachConfig:
    """Hyper-parameters of the Reach task (units: metres, radians, seconds)."""

    goal_low: tuple[float, float, float] = param(
        (0.25, -0.20, 0.10), "lower corner (x, y, z) of the goal box in the arm's base frame [m]"
    )
    goal_high: tuple[float, float, float] = param(
        (0.55, 0.20, 0.40), "upper corner (x, y, z) of the goal box in the arm's base frame [m]"
    )
    home_pose: tuple[float, ...] = param(
        (0.0, 0.35, 1.35, 1.44, 0.0, 0.0),
        "joint positions at the start of an episode, one per joint [rad]",
    )
    home_noise: float = param(
        0.05, "half-width of the uniform noise added to each home joint position [rad]", lo=0.0, hi=0.5
    )
    success_threshold: float = param(
        0.03, "the end effector succeeds when it is closer than this to the goal [m]", lo=1e-4, hi=0.5
    )
    episode_seconds: float = param(5.0, "duration of an episode [s]", lo=0.1, hi=600.0)
    control_rate: float = param(20.0, "control steps per second [Hz]", lo=1.0, hi=1000.0, read_only=True)
    max_joint_velocity: float = param(
        1.5, "joint velocity commanded by an action of magnitude 1 [rad/s]", lo=0.01, hi=10.0
    )
    distance_weight: float = param(
        5.0,
        "weight of the end-effector-to-goal distance (metres) in the reward (5: SAC learns Reach about "
        "twice as fast as with 1, see test_sim_sac_baseline.py)",
        lo=0.0,
        hi=1000.0,
    )
    action_penalty: float = param(
        0.02, "weight of the mean squared action (a in [-1, 1]) subtracted from the reward", lo=0.0, hi=100.0
    )
    success_bonus: float = param(
        0.0, "reward added on every step that ends within success_threshold of the goal", lo=0.0, hi=100.0
    )

    @property
    def control_period(self) -> float:
        """Seconds per control step (1 / control_rate)."""
        return 1.0 / self.control_rate

    @property
    def steps_per_episode(self) -> int:
        """Control steps per episode (episode_seconds * control_rate, rounded)."""
        return int(round(self.episode_seconds * self.control_rate))


def validate_reach_config(cfg: ReachConfig, n_joints: int) -> None:
    """Raise ValueError naming the field when `cfg` is out of range or inconsistent with `n_joints`."""
    check_fields(cfg, "reach.")
    if len(cfg.goal_low) != 3 or len(cfg.goal_high) != 3:
        raise ValueError(
            f"reach.goal_low/goal_high need 3 values (x, y, z), got {len(cfg.goal_low)} and {len(cfg.goal_high)}"
        )
    for axis, lo, hi in zip("xyz", cfg.goal_low, cfg.goal_high):
        if not lo <= hi:
            raise ValueError(f"reach.goal_low.{axis} = {lo} is above reach.goal_high.{axis} = {hi}")
    if len(cfg.home_pose) != n_joints:
        raise ValueError(f"reach.home_pose has {len(cfg.home_pose)} values, arm has {n_joints} joints")
    if cfg.steps_per_episode < 1:
        raise ValueError(
            f"reach.episode_seconds = {cfg.episode_seconds} at control_rate = {cfg.control_rate} Hz "
            "gives no control step"
        )


def _is_numpy(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic, float, int))


def _norm_last(x: Any) -> Any:
    """Euclidean norm over the last axis, NumPy or torch."""
    if _is_numpy(x):
        return np.linalg.norm(np.asarray(x, dtype=np.float64), axis=-1)
    return (x * x).sum(dim=-1).sqrt()


def _as_float(mask: Any, like: Any) -> Any:
    """Boolean mask -> float array/tensor of `like`'s kind and dtype."""
    if _is_numpy(mask):
        return np.asarray(mask, dtype=np.float64)
    return mask.to(like.dtype)


class ReachTask(ArmTask):
    """Reach: bring the end effector within `success_threshold` of a goal drawn from a box.

    `ReachTask(cfg, n_joints=6)`. All functions are pure: the same (obs, act, next_obs) always
    give the same reward, on the robot and in simulation. The task "reach" of the registry
    (core/arm_task.py).
    """

    name = "reach"
    config_class = ReachConfig
    #: size of a goal (sample_goal) and of its current value (target): a point [3] (m)
    goal_dim = 3
    target_dim = 3

    def __init__(self, cfg: ReachConfig | None = None, n_joints: int = 6):
        if n_joints < 1:
            raise ValueError(f"n_joints = {n_joints}: the arm needs at least one joint")
        self.cfg = cfg if cfg is not None else ReachConfig()
        validate_reach_config(self.cfg, n_joints)
        self.n_joints = n_joints
        n = n_joints
        self.obs_dim = 2 * n + 9
        self.act_dim = n
        # Slices into the observation vector.
        self.q_slice = slice(0, n)
        self.qd_slice = slice(n, 2 * n)
        self.ee_slice = slice(2 * n, 2 * n + 3)
        self.goal_slice = slice(2 * n + 3, 2 * n + 6)
        self.delta_slice = slice(2 * n + 6, 2 * n + 9)
        self.goal_low = np.asarray(self.cfg.goal_low, dtype=np.float64)
        self.goal_high = np.asarray(self.cfg.goal_high, dtype=np.float64)
        self.home_pose = np.asarray(self.cfg.home_pose, dtype=np.float64)

    # ----------------------------------------------------------------------------- observation
    def observe(self, q, qd, ee_pos, goal, ee_quat=None) -> np.ndarray:
        """Build one observation.

        q: [n] joint positions (rad), qd: [n] joint velocities (rad/s), ee_pos: [3], goal: [3] (m);
        ee_quat (the end-effector orientation) is not part of Reach's observation.
        Returns obs: [obs_dim] float32. Raises ValueError on a wrong size.
        """
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        qd = np.asarray(qd, dtype=np.float64).reshape(-1)
        ee = np.asarray(ee_pos, dtype=np.float64).reshape(-1)
        g = np.asarray(goal, dtype=np.float64).reshape(-1)
        n = self.n_joints
        for name, v, size in (("q", q, n), ("qd", qd, n), ("ee_pos", ee, 3), ("goal", g, 3)):
            if v.shape[0] != size:
                raise ValueError(f"observe: {name} has {v.shape[0]} values, expected {size}")
        return np.concatenate([q, qd, ee, g, g - ee]).astype(np.float32)

    # ----------------------------------------------------------------------------- reward
    def distance(self, obs) -> Any:
        """End-effector-to-goal distance (m). obs: [obs_dim] -> float, or [B, obs_dim] -> [B]."""
        d = _norm_last(obs[..., self.delta_slice])
        if _is_numpy(d) and np.ndim(d) == 0:
            return float(d)
        return d

    def success(self, obs) -> bool:
        """True when the end effector is within success_threshold of the goal. obs: [obs_dim]."""
        return bool(self.distance(obs) < self.cfg.success_threshold)

    def success_batch(self, obs) -> Any:
        """obs: [B, obs_dim] -> [B] bool (NumPy or torch, like the input)."""
        return self.distance(obs) < self.cfg.success_threshold

    def reward_batch(self, obs, act, next_obs) -> Any:
        """Reward of a batch of transitions.

        obs: [B, obs_dim], act: [B, act_dim] in [-1, 1], next_obs: [B, obs_dim]
        (NumPy arrays or torch tensors). Returns [B] of the input's kind
        (float64 for NumPy, the tensor's dtype for torch).
        """
        cfg = self.cfg
        d = _norm_last(next_obs[..., self.delta_slice])
        a2 = (act * act).mean(-1)
        r = -cfg.distance_weight * d - cfg.action_penalty * a2
        if cfg.success_bonus != 0.0:
            r = r + cfg.success_bonus * _as_float(d < cfg.success_threshold, r)
        return r

    def reward(self, obs, act, next_obs) -> float:
        """Reward of one transition. obs, next_obs: [obs_dim], act: [act_dim]."""
        r = self.reward_batch(
            np.asarray(obs, dtype=np.float64)[None],
            np.asarray(act, dtype=np.float64)[None],
            np.asarray(next_obs, dtype=np.float64)[None],
        )
        return float(r[0])

    def termination_batch(self, obs, act, next_obs) -> Any:
        """Reach never terminates (episodes end by time limit): [B] all False, NumPy or torch."""
        if _is_numpy(next_obs):
            return np.zeros(np.shape(next_obs)[:-1], dtype=bool)
        return next_obs.new_zeros(next_obs.shape[:-1], dtype=bool)

    # ----------------------------------------------------------------------------- episode set-up
    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """A goal drawn uniformly from [goal_low, goal_high]: [3] (m)."""
        return rng.uniform(self.goal_low, self.goal_high)

    def goal_relabelling(self):
        """Goals uniform in the goal box and the observation's goal and goal offset rewritten, as torch
        functions (see ArmTask.goal_relabelling); None for a subclass whose target moves (``target``
        overridden) unless it overrides this too (Track does): a goal kept at both ends of a transition
        would not be the task's."""
        if not goal_is_fixed_point(self):
            return None
        import torch

        low = torch.as_tensor(self.goal_low, dtype=torch.float32)
        span = torch.as_tensor(self.goal_high - self.goal_low, dtype=torch.float32)

        def sample_goals(n, generator=None, device=None):
            u = torch.rand(n, 3, generator=generator, device=device)
            return low.to(u.device) + span.to(u.device) * u

        def set_goal(obs, goals):
            out = obs.clone()
            out[:, self.goal_slice] = goals
            out[:, self.delta_slice] = goals - obs[:, self.ee_slice]
            return out

        return sample_goals, set_goal

    def sample_home(self, rng: np.random.Generator) -> np.ndarray:
        """Start joint positions: home_pose + uniform noise of half-width home_noise: [n] (rad)."""
        return self.home_pose + rng.uniform(-self.cfg.home_noise, self.cfg.home_noise, size=self.n_joints)

    # ----------------------------------------------------------------------------- action
    def action_to_command(self, a) -> np.ndarray:
        """Action [n] (or [B, n]) in [-1, 1] -> joint velocity command (rad/s), clipped to the range.

        Raises ValueError on a wrong size or a NaN/Inf value.
        """
        a = np.asarray(a, dtype=np.float64)
        if a.shape[-1:] != (self.act_dim,):
            raise ValueError(f"action has {a.shape[-1] if a.ndim else 1} values, arm has {self.act_dim} joints")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or Inf: {a}")
        return np.clip(a, -1.0, 1.0) * self.cfg.max_joint_velocity
