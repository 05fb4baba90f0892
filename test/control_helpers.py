"""Helpers for the Controller tests (no tests here): a controller with a recording learner, a simulated arm.

The arm is kinematic: it integrates the last velocity command it received (velocity interface) or
moves to the last target (position interface) over each control period, as a ros2_control forward
command controller holds its last command. Nothing here knows ROS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mbpo_ros.control import Command, Controller, ControllerConfig, JointLimits, Transition
from mbpo_ros.control.inputs import RejectedMessage
from mbpo_ros.core.reach import ReachConfig, ReachTask

JOINTS = ("j1", "j2", "j3", "j4", "j5", "j6")
LOWER = np.array([-3.0, -2.0, -2.6, -2.6, -3.0, -3.0])
UPPER = -LOWER
VELOCITY = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
PERIOD = 0.05
EE = (0.3, 0.0, 0.3)
GOAL = (0.4, 0.1, 0.2)


class RecordingLearner:
    """The controller's Learner: keeps every transition; an optional policy (None: exploration)."""

    def __init__(self, policy=None) -> None:
        self.transitions: list[Transition] = []
        self._policy = policy

    def submit(self, transition: Transition) -> bool:
        self.transitions.append(transition)
        return True

    def policy(self, env_steps: int):
        return self._policy


class PushPolicy:
    """A policy that always asks for full speed in one direction (the worst case near a limit)."""

    obs_dim, act_dim = 21, 6

    def __init__(self, sign: float = 1.0) -> None:
        self.sign = sign

    def act(self, obs, deterministic=False, rng=None):
        return np.full(6, self.sign)


def make_controller(policy=None, episode_seconds: float = 2.5, **overrides) -> tuple[Controller, RecordingLearner]:
    """A train-mode controller (random actions unless `policy` is given) on the 6-joint test arm."""
    limits = JointLimits(JOINTS, LOWER, UPPER, VELOCITY)
    kw = {"limits": limits, "period": PERIOD, "mode": "train", "max_velocity_step": 0.2, "state_timeout": 0.3,
          "reset_via_service": False, "reset_timeout": 1.0, "init_random_steps": 0 if policy else 10**9,
          "seed": 1}
    kw.update(overrides)
    learner = RecordingLearner(policy)
    task = ReachTask(ReachConfig(episode_seconds=episode_seconds, control_rate=1.0 / PERIOD), n_joints=6)
    return Controller(ControllerConfig(**kw), task, learner), learner


@dataclass
class Arm:
    """A kinematic arm driven by a Controller (module docstring); records every step."""

    ctrl: Controller
    q: np.ndarray = field(default_factory=lambda: np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))
    t: float = 100.0  # the node's clock [s]
    held: np.ndarray | None = None  # what the arm's controller holds
    commands: list[tuple[float, Command]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def publish(self, stamp: float | None = None, q=None, qd=None, ee=EE, goal=GOAL, ee_stamp: float | None = None,
                goal_stamp: float | None = None) -> None:
        """The arm's drivers publish joint state, ee_pose and goal (stamps in seconds; default: now)."""
        c, t = self.ctrl.inputs, self.t
        stamp = t if stamp is None else stamp
        for call, args, st in ((c.on_joint_state, (JOINTS, self.q if q is None else q,
                                                    np.zeros(6) if qd is None else qd), stamp),
                               (c.on_ee_pose, (ee,), stamp if ee_stamp is None else ee_stamp),
                               (c.on_goal, (goal,), stamp if goal_stamp is None else goal_stamp)):
            try:
                call(*args, int(round(st * 1e9)), t)
            except RejectedMessage as exc:
                self.rejected.append(exc.reason)

    def step(self, dt: float = PERIOD) -> Command:
        """One control step at the current clock, then the arm moves for `dt` and the clock advances."""
        cmd = self.ctrl.step(self.ctrl.inputs.snapshot(wall=self.t), self.t)
        self.commands.append((self.t, cmd))
        if cmd.values is not None:
            self.held = cmd.values
        if self.held is not None:
            if self.ctrl.interface == "velocity":
                self.q = self.q + self.held * dt
            else:
                self.q = self.q + np.clip(self.held - self.q, -VELOCITY * dt, VELOCITY * dt)
        self.t += dt
        return cmd

    def run(self, steps: int, publish: bool = True, **kw) -> list[Command]:
        out = []
        for _ in range(steps):
            if publish:
                self.publish(**kw)
            out.append(self.step())
        return out

    def sent(self) -> np.ndarray:
        """Every command value sent so far: [k, 6]."""
        return np.array([c.values for _, c in self.commands if c.values is not None])
