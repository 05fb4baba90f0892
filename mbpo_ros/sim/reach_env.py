"""Gymnasium env "mbpo_ros/ArmReach-v0" = ArmTwin + ReachTask, so any RL library can train on the twin.

One env step is one control period (`ReachConfig.control_period`, 0.05 s at 20 Hz): the action is
turned into a joint velocity command (`ReachTask.action_to_command`), held for the whole period
while physics advances at the twin's fixed step (2 ms), exactly as the twin node does in lock-step
mode. Observation and reward are `ReachTask.observe` / `ReachTask.reward`, the functions the agent
node uses on the robot. Episodes never terminate; they are truncated after `steps_per_episode`
steps (100 at the defaults). `info` carries `distance` (m) and `is_success` (within 3 cm now).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from mbpo_ros.core.reach import ReachConfig, ReachTask
from mbpo_ros.sim.arm_twin import ArmTwin, TwinConfig


class ArmReachEnv(gym.Env):
    """Reach with the bundled 6-DOF arm (or any MJCF arm named in `twin_cfg`)."""

    metadata = {"render_modes": []}

    def __init__(self, reach_cfg: ReachConfig | None = None, twin_cfg: TwinConfig | None = None):
        twin_cfg = twin_cfg if twin_cfg is not None else TwinConfig()
        if twin_cfg.command_interface != "velocity":
            raise ValueError(
                f"ArmReach needs twin.command_interface = 'velocity' (actions are joint velocities), "
                f"got {twin_cfg.command_interface!r}"
            )
        self.twin = ArmTwin(twin_cfg)
        self.task = ReachTask(reach_cfg if reach_cfg is not None else ReachConfig(), n_joints=self.twin.n_joints)
        n = self.twin.n_joints
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(self.task.obs_dim,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float32)
        self._obs = np.zeros(self.task.obs_dim, dtype=np.float32)
        self._steps = 0

    def _observe(self) -> np.ndarray:
        r = self.twin.read()
        return self.task.observe(r.position, r.velocity, self.twin.ee_position(), self.twin.goal)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """New episode: home pose with noise, goal uniform in the box (options may fix `goal`/`home`)."""
        super().reset(seed=seed)
        options = options or {}
        goal = options.get("goal")
        goal = self.task.sample_goal(self.np_random) if goal is None else np.asarray(goal, dtype=np.float64)
        home = options.get("home")
        home = self.task.sample_home(self.np_random) if home is None else np.asarray(home, dtype=np.float64)
        twin_seed = int(self.np_random.integers(2**31 - 1))
        self.twin.reset(seed=twin_seed, home=home, goal=goal)
        self._steps = 0
        self._obs = self._observe()
        return self._obs.copy(), self._info(self._obs)

    def step(self, action):
        """action: [n] in [-1, 1] -> (obs [obs_dim], reward, terminated=False, truncated, info)."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        self.twin.apply_command(self.task.action_to_command(a))
        self.twin.advance(self.task.cfg.control_period)
        nxt = self._observe()
        reward = self.task.reward(self._obs, np.clip(a, -1.0, 1.0), nxt)
        self._obs = nxt
        self._steps += 1
        truncated = self._steps >= self.task.cfg.steps_per_episode
        return nxt.copy(), reward, False, truncated, self._info(nxt)

    def _info(self, obs: np.ndarray) -> dict[str, Any]:
        d = self.task.distance(obs)
        return {"distance": d, "is_success": bool(d < self.task.cfg.success_threshold)}
