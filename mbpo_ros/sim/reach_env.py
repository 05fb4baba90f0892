"""Gymnasium env "mbpo_ros/ArmReach-v0" = ArmTwin + ReachTask, so any RL library can train on the twin.

One env step is one control period (`ReachConfig.control_period`, 0.05 s at 20 Hz): the action is
turned into a joint velocity command (`ReachTask.action_to_command`), held for the whole period
while physics advances at the twin's fixed step (2 ms), exactly as the twin node does in lock-step
mode. Observation and reward are `ReachTask.observe` / `ReachTask.reward`, the functions the agent
node uses on the robot. Episodes never terminate; they are truncated after `steps_per_episode`
steps (100 at the defaults). `info` carries `distance` (m) and `is_success` (within 3 cm now).

``render_mode="rgb_array"``: ``render()`` returns the scene as an ``[height, width, 3]`` uint8 image
from MuJoCo's offscreen renderer (a free camera framing the whole arm; ``width``/``height`` set its
size). Headless machines need an OpenGL platform: ``MUJOCO_GL=egl`` (a GPU, or Mesa's EGL) or
``MUJOCO_GL=osmesa``, set before mujoco is imported; without one ``render()`` raises RuntimeError
saying so.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np

from mbpo_ros.core.reach import ReachConfig, ReachTask
from mbpo_ros.sim.arm_twin import ArmTwin, TwinConfig


class ArmReachEnv(gym.Env):
    """Reach with the bundled 6-DOF arm (or any MJCF arm named in `twin_cfg`)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, reach_cfg: ReachConfig | None = None, twin_cfg: TwinConfig | None = None,
                 render_mode: str | None = None, width: int = 640, height: int = 480):
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode = {render_mode!r}; ArmReach renders 'rgb_array' (or None)")
        self.render_mode = render_mode
        self._size = (int(height), int(width))
        self._renderer = None
        self._camera = None
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
        self.metadata = {**self.metadata, "render_fps": self.task.cfg.control_rate}

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

    def render(self) -> np.ndarray | None:
        """The scene now as an [height, width, 3] uint8 image (render_mode "rgb_array"), else None."""
        if self.render_mode != "rgb_array":
            return None
        import mujoco

        if self._renderer is None:
            height, width = self._size
            try:
                self._renderer = mujoco.Renderer(self.twin.model, height=height, width=width)
            except Exception as exc:  # mujoco raises several types when no GL platform loads
                raise RuntimeError(
                    f"MuJoCo's offscreen renderer needs OpenGL and found none (MUJOCO_GL="
                    f"{os.environ.get('MUJOCO_GL', 'unset')}): on a headless machine set MUJOCO_GL=egl or "
                    f"MUJOCO_GL=osmesa before mujoco is imported ({type(exc).__name__}: {exc})") from exc
            self._camera = self._frame_camera()
        self._renderer.update_scene(self.twin.data, camera=self._camera)
        return self._renderer.render()

    def _frame_camera(self):
        """A free camera on the arm's bodies and the goal box (not the floor), seen from the front-side."""
        import mujoco

        cam = mujoco.MjvCamera()
        mujoco.mjv_defaultFreeCamera(self.twin.model, cam)
        pts = np.vstack([self.twin.data.xpos[1:], self.task.cfg.goal_low, self.task.cfg.goal_high])
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        cam.lookat[:] = (lo + hi) / 2
        cam.distance = 1.6 * float(np.linalg.norm(hi - lo)) + 0.2
        cam.azimuth, cam.elevation = 150.0, -20.0
        return cam

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        super().close()
