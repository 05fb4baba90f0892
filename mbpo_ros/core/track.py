"""Track: keep the end effector on a target that moves along a horizontal circle (pure NumPy/torch).

The tracking task a robot user asks for next after Reach (follow a conveyor part, a moving
marker). Each episode draws a circle inside the Reach goal box (centre, start phase, direction);
the target runs along it at `speed` m/s::

    target(t) = centre + radius * (cos(phase + dir * w t), sin(phase + dir * w t), 0),  w = speed / radius

Observation for n joints (`obs_dim = 2 n + 12`): Reach's observation with the target as its goal,
plus the target's velocity::

    [q (n), qd (n), ee_pos (3), target (3), target - ee_pos (3), target velocity (3)]

Reward, success and termination are Reach's (distance to the target now, action penalty): a
function of the observed state only, so the same on the robot, in the twin and in model rollouts.
An episode succeeds when the end effector ends it within `success_threshold` of the moving target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mbpo_ros.core.config import param
from mbpo_ros.core.reach import ReachConfig, ReachTask, validate_reach_config


@dataclass(frozen=True)
class TrackConfig(ReachConfig):
    """Reach's settings (goal_low/goal_high bound the circles) plus the target's motion."""

    radius: float = param(0.05, "radius of the target's circle [m]", lo=0.0, hi=1.0)
    speed: float = param(0.05, "speed of the target along its circle [m/s]", lo=0.0, hi=2.0)
    success_threshold: float = param(
        0.04, "the end effector succeeds when it is closer than this to the target [m]", lo=1e-4, hi=0.5
    )


class TrackTask(ReachTask):
    """Follow a target moving on a horizontal circle (registry name "track")."""

    name = "track"
    config_class = TrackConfig
    #: goal = (centre x, y, z, start phase [rad], direction +-1); its current value = target (3) + velocity (3)
    goal_dim = 5
    target_dim = 6

    def __init__(self, cfg: TrackConfig | None = None, n_joints: int = 6):
        cfg = cfg if cfg is not None else TrackConfig()
        if not isinstance(cfg, TrackConfig):
            raise ValueError(f"track needs a TrackConfig, got {type(cfg).__name__}")
        validate_reach_config(cfg, n_joints)
        super().__init__(cfg, n_joints)
        n = n_joints
        self.obs_dim = 2 * n + 12
        self.target_vel_slice = slice(2 * n + 9, 2 * n + 12)

    def observe(self, q, qd, ee_pos, goal, ee_quat=None) -> np.ndarray:
        """goal: the target's current value [6] = position (3) + velocity (3), as `target` gives it."""
        g = np.asarray(goal, dtype=np.float64).reshape(-1)
        if g.shape[0] != 6:
            raise ValueError(f"observe: goal has {g.shape[0]} values, expected 6 (target position, velocity)")
        base = super().observe(q, qd, ee_pos, g[:3])
        return np.concatenate([base, g[3:].astype(np.float32)])

    def _centre_box(self) -> tuple[np.ndarray, np.ndarray]:
        """Where circle centres lie: the goal box moved in by the radius where the box allows."""
        r = self.cfg.radius
        lo, hi = self.goal_low.copy(), self.goal_high.copy()
        for axis in (0, 1):
            if hi[axis] - lo[axis] > 2 * r:
                lo[axis], hi[axis] = lo[axis] + r, hi[axis] - r
            else:
                lo[axis] = hi[axis] = 0.5 * (lo[axis] + hi[axis])
        return lo, hi

    def sample_goal(self, rng: np.random.Generator) -> np.ndarray:
        """A circle inside the goal box (centre moved in by the radius where the box allows)."""
        centre = rng.uniform(*self._centre_box())
        return np.concatenate([centre, [rng.uniform(0.0, 2 * math.pi), rng.choice([-1.0, 1.0])]])

    def goal_relabelling(self):
        """Relabelling with other targets (see ArmTask.goal_relabelling), as torch functions.

        ``sample_goals`` draws what an episode's target is at a random time: a position on a random circle
        of the goal box and the velocity there (either direction), [n, 6]; ``set_goal`` writes it, with the
        offset to the end effector; ``advance_goal`` moves it on by one control period at its velocity. The
        observation does not say which way the circle turns, so the velocity is kept: the position is
        then off by at most 0.5 speed^2 / radius dt^2 (0.06 mm at the defaults, 50 ms) and the velocity's
        direction by speed / radius dt (0.05 rad) per step.
        """
        import torch

        lo, hi = (torch.as_tensor(b, dtype=torch.float32) for b in self._centre_box())
        r, dt = self.cfg.radius, self.cfg.control_period
        speed = self.cfg.speed if r > 0 else 0.0

        def sample_goals(n, generator=None, device=None):
            u = torch.rand(n, 5, generator=generator, device=device)
            centre = lo.to(u.device) + (hi - lo).to(u.device) * u[:, :3]
            a = 2 * math.pi * u[:, 3]
            turn = torch.where(u[:, 4] < 0.5, -1.0, 1.0)
            zero = torch.zeros_like(a)
            pos = centre + r * torch.stack([torch.cos(a), torch.sin(a), zero], dim=-1)
            vel = (turn * speed).unsqueeze(-1) * torch.stack([-torch.sin(a), torch.cos(a), zero], dim=-1)
            return torch.cat([pos, vel], dim=-1)

        def set_goal(obs, goals):
            out = obs.clone()
            out[:, self.goal_slice] = goals[:, :3]
            out[:, self.delta_slice] = goals[:, :3] - obs[:, self.ee_slice]
            out[:, self.target_vel_slice] = goals[:, 3:]
            return out

        def advance_goal(obs):
            pos = obs[:, self.goal_slice] + dt * obs[:, self.target_vel_slice]
            return set_goal(obs, torch.cat([pos, obs[:, self.target_vel_slice]], dim=-1))

        return sample_goals, set_goal, advance_goal

    def target(self, goal, t: float) -> np.ndarray:
        """[6]: the target's position (m) and velocity (m/s) at time t of the episode."""
        g = np.asarray(goal, dtype=np.float64).reshape(-1)
        if g.shape[0] != 5:
            raise ValueError(f"track goal has {g.shape[0]} values, expected 5 (centre x y z, phase, direction)")
        r, v = self.cfg.radius, self.cfg.speed
        w = v / r if r > 0 else 0.0
        a = g[3] + g[4] * w * t
        pos = g[:3] + r * np.array([math.cos(a), math.sin(a), 0.0])
        vel = g[4] * r * w * np.array([-math.sin(a), math.cos(a), 0.0])
        return np.concatenate([pos, vel])
