"""Gymnasium envs "mbpo_ros/ArmReach-v0" (and "mbpo_ros/ArmTrack-v0") = ArmTwin + an arm task, so any RL
library can train on the twin, with any arm model and any task of the registry (core/arm_task.py).

    gym.make("mbpo_ros/ArmReach-v0")                                   # bundled arm, Reach
    gym.make("mbpo_ros/ArmReach-v0", robot="ur5e.urdf", servo="velocity", ee_body="tool0", task="track")

One env step is one control period (`cfg.control_period`, 0.05 s at 20 Hz): the action is turned
into a joint velocity command (`task.action_to_command`), held for the whole period while physics
advances at the twin's fixed step (2 ms), exactly as the twin node does in lock-step mode.
Observation and reward are `task.observe` / `task.reward`, the functions the agent node uses on
the robot; the goal is `task.target(goal, t)` at the episode's time t (a moving target for Track).
Episodes end when `task.termination_batch` says so (never for Reach and Track) or are truncated
after `steps_per_episode` steps (100 at the defaults). `info` carries `distance` and `is_success`.

For an arm other than the bundled one, the task's home pose and goal box default to the arm's
(`default_task_config`: the model's rest pose, and the box its end effector reaches around it).
`env.unwrapped.identity` is the arm and task as a checkpoint records them (core/identity.py).

``render_mode="rgb_array"``: ``render()`` returns the scene as an ``[height, width, 3]`` uint8 image
from MuJoCo's offscreen renderer (a free camera framing the whole arm; ``width``/``height`` set its
size). Headless machines need an OpenGL platform: ``MUJOCO_GL=egl`` (a GPU, or Mesa's EGL) or
``MUJOCO_GL=osmesa``, set before mujoco is imported; without one ``render()`` raises RuntimeError
saying so.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import gymnasium as gym
import numpy as np

from mbpo_ros.core.arm_task import ArmTask, get_task_class
from mbpo_ros.core.identity import robot_identity
from mbpo_ros.sim.arm_twin import BUNDLED_MODEL, ArmTwin, TwinConfig


def is_bundled(twin_cfg: TwinConfig) -> bool:
    """True when `twin_cfg` names the bundled arm (empty model_path or sim/assets/arm6.xml)."""
    return not twin_cfg.model_path or os.path.abspath(twin_cfg.model_path) == os.path.abspath(BUNDLED_MODEL)


def default_task_config(task_cls: type[ArmTask], twin_cfg: TwinConfig, home_pose=(), **overrides: Any):
    """The task's default settings for this arm: the bundled arm keeps the task's defaults; another arm
    gets its own home pose (`home_pose`, or the model's rest pose) and goal box (sim/arm_model.py
    `arm_profile`). `overrides` replace any field last."""
    cfg = task_cls.config_class()
    names = {f.name for f in dataclasses.fields(cfg)}
    if not is_bundled(twin_cfg) or home_pose:
        from mbpo_ros.sim.arm_model import arm_profile

        prof = arm_profile(twin_cfg.model_path or BUNDLED_MODEL, servo=twin_cfg.servo, ee_body=twin_cfg.ee_body,
                           ee_site=twin_cfg.ee_site, joint_names=twin_cfg.joint_names, home_pose=tuple(home_pose),
                           default_max_velocity=twin_cfg.default_max_velocity)
        arm = {"home_pose": prof.home_pose}
        if not is_bundled(twin_cfg):
            arm.update(goal_low=prof.goal_low, goal_high=prof.goal_high)
        cfg = dataclasses.replace(cfg, **{k: v for k, v in arm.items() if k in names})
    if overrides:
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"task {task_cls.name!r} has no settings {unknown}; its settings: {', '.join(sorted(names))}")
        cfg = dataclasses.replace(cfg, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
    return cfg


def twin_identity(twin: ArmTwin, control_rate: float) -> dict[str, Any]:
    """The twin's arm as a checkpoint records it (core/identity.py); unlimited joints as +-UNLIMITED."""
    from mbpo_ros.sim.arm_model import UNLIMITED

    lim = twin.joint_limits.clip(-UNLIMITED, UNLIMITED)
    return robot_identity(twin.joint_names, lim[:, 0], lim[:, 1], twin.velocity_limits, twin.cfg.command_interface,
                          control_rate, model=twin.model_path, servo=twin.cfg.servo, ee_body=twin.cfg.ee_body,
                          ee_site=twin.cfg.ee_site)


class ArmReachEnv(gym.Env):
    """An arm task on the twin: the bundled 6-DOF arm and Reach by default (see the module docstring).

    reach_cfg / task_cfg: the task's settings (default: `default_task_config`); twin_cfg: the twin;
    robot, servo, ee_body: shorthands for twin_cfg.model_path / servo / ee_body; task: a registry name or
    an ArmTask class; home_pose: the arm's home (default: the task's, or the model's rest pose).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, reach_cfg=None, twin_cfg: TwinConfig | None = None, *, task: str | type[ArmTask] = "reach",
                 task_cfg=None, robot: str = "", servo: str = "", ee_body: str = "", home_pose=(),
                 render_mode: str | None = None, width: int = 640, height: int = 480):
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode = {render_mode!r}; ArmReach renders 'rgb_array' (or None)")
        self.render_mode = render_mode
        self._size = (int(height), int(width))
        self._renderer = None
        self._camera = None
        twin_cfg = twin_cfg if twin_cfg is not None else TwinConfig()
        if robot:
            twin_cfg = dataclasses.replace(twin_cfg, model_path=str(robot), servo=servo or twin_cfg.servo,
                                           ee_body=ee_body or twin_cfg.ee_body)
        if twin_cfg.command_interface != "velocity":
            raise ValueError(
                f"ArmReach needs twin.command_interface = 'velocity' (actions are joint velocities), "
                f"got {twin_cfg.command_interface!r}"
            )
        self.twin = ArmTwin(twin_cfg)
        cls = get_task_class(task) if isinstance(task, str) else task
        cfg = task_cfg if task_cfg is not None else reach_cfg
        if cfg is None:
            cfg = default_task_config(cls, twin_cfg, home_pose)
        self.task = cls(cfg, n_joints=self.twin.n_joints)
        self.metadata = {**self.metadata, "render_fps": self.task.cfg.control_rate}
        n = self.twin.n_joints
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(self.task.obs_dim,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float32)
        self._obs = np.zeros(self.task.obs_dim, dtype=np.float32)
        self._steps = 0
        self.goal = np.zeros(getattr(self.task, "goal_dim", 3))
        self.identity = {"task": self.task.settings(), "robot": twin_identity(self.twin, self.task.cfg.control_rate)}

    # the MuJoCo state, for exact checkpoints of a training run (gym_train.GymEnv)
    @property
    def model(self):
        return self.twin.model

    @property
    def data(self):
        return self.twin.data

    def _target(self) -> np.ndarray:
        return self.task.target(self.goal, self._steps * self.task.cfg.control_period)

    def _observe(self) -> np.ndarray:
        r = self.twin.read()
        pos, quat = self.twin.ee_pose()
        return self.task.observe(r.position, r.velocity, pos, self._target(), ee_quat=quat)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """New episode: home pose with noise, a goal from the task (options may fix `goal`/`home`)."""
        super().reset(seed=seed)
        options = options or {}
        goal = options.get("goal")
        goal = self.task.sample_goal(self.np_random) if goal is None else np.asarray(goal, dtype=np.float64)
        home = options.get("home")
        home = self.task.sample_home(self.np_random) if home is None else np.asarray(home, dtype=np.float64)
        twin_seed = int(self.np_random.integers(2**31 - 1))
        self.goal = np.asarray(goal, dtype=np.float64)
        self._steps = 0
        self.twin.reset(seed=twin_seed, home=home, goal=self._target()[:3])
        self._obs = self._observe()
        return self._obs.copy(), self._info(self._obs)

    def step(self, action):
        """action: [n] in [-1, 1] -> (obs [obs_dim], reward, terminated, truncated, info)."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        self.twin.apply_command(self.task.action_to_command(a))
        self.twin.advance(self.task.cfg.control_period)
        self._steps += 1
        if getattr(self.task, "target_dim", 3) != 3 or self.goal.shape[0] != 3:
            self.twin.set_goal(self._target()[:3])
        nxt = self._observe()
        a = np.clip(a, -1.0, 1.0)
        reward = self.task.reward(self._obs, a, nxt)
        terminated = bool(self.task.termination_batch(self._obs[None], a[None], nxt[None])[0])
        self._obs = nxt
        truncated = self._steps >= self.task.cfg.steps_per_episode
        return nxt.copy(), reward, terminated, truncated, self._info(nxt)

    def _info(self, obs: np.ndarray) -> dict[str, Any]:
        d = float(self.task.distance(obs))
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
