"""ArmTwin: a MuJoCo arm with a ros2_control-like command interface, and no ROS.

The twin holds the last command (like forward_command_controller), advances physics at a fixed step
(default 2 ms) for a requested duration and reads back joint positions, velocities, efforts and the
end-effector pose. Any MJCF or URDF arm can be used: name the file, its joints, the actuators that
drive them and the end-effector site (`TwinConfig`); the bundled `assets/arm6.xml` is the default.
`TwinConfig.servo` and `ee_body` make an arm with torque motors (or none, as any URDF) and no
end-effector site usable, through `sim/arm_model.py` (MuJoCo's model-editing API, never the file).

Command interfaces (`TwinConfig.command_interface`):

- ``velocity``: one joint velocity (rad/s) per joint, held until the next command.
- ``position``: one joint position (rad) per joint, held until the next command.

Supported actuators per joint: MuJoCo ``velocity`` servos, ``position`` servos and ``intvelocity``
actuators. The twin turns the command into the actuator's control: a position command on a
velocity servo runs a proportional position loop (`position_gain`, velocity-limited); a velocity
command on a position servo integrates the target. Velocities that would drive a joint past its
range are scaled down near the limit (soft limits, as an arm's drive does), so saturating commands
keep every joint inside its range.

Realism knobs, all off by default: Gaussian sensor noise on the read-out, command latency (in
simulated time), and per-episode domain randomisation of link masses, joint damping and friction.
"""

from __future__ import annotations

import collections
import math
import os
from dataclasses import dataclass

import mujoco
import numpy as np

from mbpo_ros.core.config import check_fields, param
from mbpo_ros.sim.arm_model import SERVOS, actuator_kind, actuator_label, joints_listed, load_arm_model

BUNDLED_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "arm6.xml")
COMMAND_INTERFACES = ("velocity", "position")

# Time constant of the soft joint limits: near a limit the commanded velocity is capped at
# (distance to the limit) / SOFT_LIMIT_TIME, so a joint approaches its limit exponentially.
SOFT_LIMIT_TIME = 0.05
# The controls are recomputed every this many physics steps (10 ms at 2 ms steps).
SERVO_SUBSTEPS = 5


@dataclass(frozen=True)
class TwinConfig:
    """Which arm to simulate, how it is commanded, and the realism knobs (all off by default)."""

    model_path: str = param(
        "", "MJCF or URDF file of the arm; empty = the bundled 6-DOF arm (sim/assets/arm6.xml)", read_only=True
    )
    servo: str = param(
        "", "'velocity' or 'position': turn the arm's torque motors (or missing actuators, as in any URDF) into "
        "servos of that kind with implicitfast integration; empty = use the file's actuators", read_only=True
    )
    ee_body: str = param(
        "", "body at whose origin the end-effector site ee_site is added; empty = the model has the site",
        read_only=True
    )
    joint_names: tuple[str, ...] = param(
        (), "controlled joints in command order; empty = the joints of the actuators, in actuator order", read_only=True
    )
    actuator_names: tuple[str, ...] = param(
        (), "actuator driving each joint (same order); empty = found from the joints", read_only=True
    )
    ee_site: str = param("ee_site", "MJCF site whose pose is the end-effector pose", read_only=True)
    goal_body: str = param(
        "goal_marker", "mocap body that shows the goal (no collision); empty = no marker", read_only=True
    )
    physics_dt: float = param(0.002, "physics time step [s]", lo=1e-4, hi=0.02, read_only=True)
    command_interface: str = param(
        "velocity", "'velocity' (rad/s per joint) or 'position' (rad per joint)", read_only=True
    )
    position_gain: float = param(
        10.0, "proportional gain [1/s] of the position loop run over velocity servos", lo=0.1, hi=200.0
    )
    default_max_velocity: float = param(
        3.14, "velocity limit [rad/s] of a joint whose actuator does not give one", lo=0.01, hi=100.0
    )
    sensor_noise_position: float = param(0.0, "std-dev of Gaussian noise on read joint positions [rad]", lo=0.0, hi=1.0)
    sensor_noise_velocity: float = param(
        0.0, "std-dev of Gaussian noise on read joint velocities [rad/s]", lo=0.0, hi=10.0
    )
    command_latency: float = param(0.0, "delay before a command takes effect, in simulated time [s]", lo=0.0, hi=1.0)
    randomize_mass: float = param(
        0.0, "per episode, each link mass (and inertia) is scaled by U(1-x, 1+x)", lo=0.0, hi=0.9
    )
    randomize_damping: float = param(0.0, "per episode, each joint damping is scaled by U(1-x, 1+x)", lo=0.0, hi=0.9)
    randomize_friction: float = param(
        0.0, "per episode, joint friction loss and contact friction are scaled by U(1-x, 1+x)", lo=0.0, hi=0.9
    )


def validate_twin_config(cfg: TwinConfig) -> None:
    """Raise ValueError naming the field when a value is outside its allowed range."""
    check_fields(cfg, "twin.")
    if cfg.servo not in SERVOS:
        raise ValueError(f"twin.servo = {cfg.servo!r} is not one of 'velocity', 'position' or '' (the file's)")
    if cfg.command_interface not in COMMAND_INTERFACES:
        raise ValueError(f"twin.command_interface = {cfg.command_interface!r} is not one of {COMMAND_INTERFACES}")
    if cfg.actuator_names and cfg.joint_names and len(cfg.actuator_names) != len(cfg.joint_names):
        raise ValueError(
            f"twin.actuator_names has {len(cfg.actuator_names)} names, twin.joint_names has {len(cfg.joint_names)}"
        )


@dataclass
class JointReading:
    """One read-out of the arm: position [n] (rad), velocity [n] (rad/s), effort [n] (N m), time (s)."""

    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    time: float


def _name2id(model: mujoco.MjModel, obj: mujoco.mjtObj, name: str, what: str, path: str) -> int:
    i = mujoco.mj_name2id(model, obj, name)
    if i < 0:
        listed = f"; {joints_listed(model)}" if obj == mujoco.mjtObj.mjOBJ_JOINT else ""
        raise ValueError(f"{what} {name!r} is not in the model {path}{listed}")
    return i


class ArmTwin:
    """A MuJoCo arm commanded like a ros2_control arm. No ROS.

    `ArmTwin(cfg=TwinConfig())`; `reset(seed, home, goal)`; `apply_command(values)`;
    `advance(duration)`; `read()` -> JointReading; `ee_pose()` -> (pos [3], quat [4] w,x,y,z).
    """

    def __init__(self, cfg: TwinConfig | None = None):
        self.cfg = cfg if cfg is not None else TwinConfig()
        validate_twin_config(self.cfg)
        path = self.cfg.model_path or BUNDLED_MODEL
        if not os.path.isfile(path):
            raise ValueError(f"twin.model_path = {path!r}: no such MJCF or URDF file")
        self.model_path = path
        self.model = load_arm_model(path, servo=self.cfg.servo, ee_body=self.cfg.ee_body, ee_site=self.cfg.ee_site,
                                    joint_names=self.cfg.joint_names,
                                    default_max_velocity=self.cfg.default_max_velocity)
        self.model.opt.timestep = self.cfg.physics_dt
        self.data = mujoco.MjData(self.model)
        m = self.model

        self._resolve_joints_and_actuators(path)
        self.n_joints = len(self.joint_names)
        if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, self.cfg.ee_site) < 0:
            raise ValueError(f"end-effector site {self.cfg.ee_site!r} is not in the model {path}: name the body "
                             "that carries the tool with twin.ee_body (mbpo-ros check-model --ee-body BODY)")
        self.site_id = _name2id(m, mujoco.mjtObj.mjOBJ_SITE, self.cfg.ee_site, "end-effector site", path)
        self.goal_mocap = -1
        if self.cfg.goal_body:
            bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, self.cfg.goal_body)
            if bid >= 0:
                self.goal_mocap = int(m.body_mocapid[bid])
                if self.goal_mocap < 0:
                    raise ValueError(f"goal body {self.cfg.goal_body!r} in {path} is not a mocap body")

        # Nominal physical parameters, for domain randomisation.
        self._nominal = {
            "body_mass": m.body_mass.copy(),
            "body_inertia": m.body_inertia.copy(),
            "dof_damping": m.dof_damping.copy(),
            "dof_frictionloss": m.dof_frictionloss.copy(),
            "geom_friction": m.geom_friction.copy(),
        }
        self._rng = np.random.default_rng()
        self._noise_rng = np.random.default_rng()
        self._command = np.zeros(self.n_joints)
        self._pending: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        self._pos_target = np.zeros(self.n_joints)
        self.goal = np.zeros(3)
        self.reset(seed=None)

    # ----------------------------------------------------------------------------- set-up
    def _resolve_joints_and_actuators(self, path: str) -> None:
        m = self.model
        cfg = self.cfg
        # joint id -> actuator id, for actuators that drive a single joint.
        joint_to_act: dict[int, int] = {}
        for a in range(m.nu):
            if int(m.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT):
                joint_to_act.setdefault(int(m.actuator_trnid[a, 0]), a)
        if cfg.joint_names:
            jids = [_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n, "joint", path) for n in cfg.joint_names]
        else:
            jids = list(dict.fromkeys(int(m.actuator_trnid[a, 0]) for a in range(m.nu)
                                      if int(m.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT)))
            if not jids:
                raise ValueError(f"{path} has no actuator on a joint: add velocity servos with twin.servo = "
                                 "'velocity' (mbpo-ros check-model FILE --servo velocity)")
        if cfg.actuator_names:
            aids = [_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, n, "actuator", path) for n in cfg.actuator_names]
            for a, j in zip(aids, jids):
                if int(m.actuator_trntype[a]) != int(mujoco.mjtTrn.mjTRN_JOINT) or int(m.actuator_trnid[a, 0]) != j:
                    raise ValueError(
                        f"{actuator_label(m, a)} does not drive "
                        f"joint {mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j)!r} in {path}"
                    )
        else:
            missing = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in jids if j not in joint_to_act]
            if missing:
                raise ValueError(f"joints {missing} in {path} have no actuator: add servos with twin.servo = "
                                 "'velocity' (mbpo-ros check-model FILE --servo velocity)")
            aids = [joint_to_act[j] for j in jids]
        for j in jids:
            if int(m.jnt_type[j]) not in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
                name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j)
                raise ValueError(f"joint {name!r} in {path} is not a hinge or slide joint")
        self.joint_ids = np.array(jids, dtype=int)
        self.actuator_ids = np.array(aids, dtype=int)
        self.joint_names = tuple(mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in jids)
        self.actuator_names = tuple(mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_ACTUATOR, a) or actuator_label(m, a)
                                    for a in aids)
        self.qpos_adr = m.jnt_qposadr[self.joint_ids].copy()
        self.dof_adr = m.jnt_dofadr[self.joint_ids].copy()

        # Joint ranges (unlimited joints get +-inf).
        lim = np.full((len(jids), 2), [-np.inf, np.inf])
        for i, j in enumerate(jids):
            if m.jnt_limited[j]:
                lim[i] = m.jnt_range[j]
        self.joint_limits = lim

        # Actuator kinds and velocity limits.
        kinds = []
        vmax = np.full(len(aids), cfg.default_max_velocity)
        for i, a in enumerate(aids):
            kind = actuator_kind(m, a)
            if kind not in ("position", "velocity", "intvelocity"):
                raise ValueError(
                    f"{actuator_label(m, a)} in {path} is a {'torque motor' if kind == 'motor' else kind} actuator, "
                    "neither a position, velocity nor intvelocity servo (the twin speaks a velocity or position "
                    "interface): convert it with twin.servo = 'velocity' (mbpo-ros check-model FILE --servo velocity)"
                )
            kinds.append(kind)
            if kind in ("velocity", "intvelocity") and m.actuator_ctrllimited[a]:
                lo, hi = m.actuator_ctrlrange[a]
                vmax[i] = min(abs(lo), abs(hi))
        self.actuator_kinds = tuple(kinds)
        self.velocity_limits = vmax
        self._is_pos_act = np.array([k == "position" for k in kinds])

    # ----------------------------------------------------------------------------- episode
    @property
    def physics_dt(self) -> float:
        return float(self.model.opt.timestep)

    @property
    def time(self) -> float:
        """Simulated time since the last reset (s)."""
        return float(self.data.time)

    def reset(self, seed: int | None = None, home=None, goal=None) -> None:
        """Start a new episode: physics state to rest at `home` [n] (rad; None = the model's qpos0).

        seed: re-seeds the twin's random streams (domain randomisation, sensor noise).
        goal: [3] goal position shown by the goal marker (None = keep the current goal).
        Applies per-episode domain randomisation when enabled, clears pending commands and holds
        the arm still (zero velocity, or the home pose as position command).
        """
        if seed is not None:
            ss = np.random.SeedSequence(seed)
            a, b = ss.spawn(2)
            self._rng = np.random.default_rng(a)
            self._noise_rng = np.random.default_rng(b)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        self._randomize()
        if home is not None:
            home = np.asarray(home, dtype=np.float64).reshape(-1)
            if home.shape[0] != self.n_joints:
                raise ValueError(f"home pose has {home.shape[0]} values, arm has {self.n_joints} joints")
            if not np.all(np.isfinite(home)):
                raise ValueError(f"home pose contains NaN or Inf: {home}")
            d.qpos[self.qpos_adr] = np.clip(home, self.joint_limits[:, 0], self.joint_limits[:, 1])
        if goal is not None:
            self.set_goal(goal)
        q = d.qpos[self.qpos_adr].copy()
        self._pos_target = q.copy()
        self._command = q.copy() if self.cfg.command_interface == "position" else np.zeros(self.n_joints)
        self._pending.clear()
        if np.any(self._is_pos_act):
            d.ctrl[self.actuator_ids[self._is_pos_act]] = q[self._is_pos_act]
        mujoco.mj_forward(m, d)

    def _randomize(self) -> None:
        m, nom, cfg, rng = self.model, self._nominal, self.cfg, self._rng
        if cfg.randomize_mass > 0:
            s = rng.uniform(1 - cfg.randomize_mass, 1 + cfg.randomize_mass, size=m.nbody)
            m.body_mass[:] = nom["body_mass"] * s
            m.body_inertia[:] = nom["body_inertia"] * s[:, None]
        if cfg.randomize_damping > 0:
            m.dof_damping[:] = nom["dof_damping"] * rng.uniform(
                1 - cfg.randomize_damping, 1 + cfg.randomize_damping, size=m.nv
            )
        if cfg.randomize_friction > 0:
            x = cfg.randomize_friction
            m.dof_frictionloss[:] = nom["dof_frictionloss"] * rng.uniform(1 - x, 1 + x, size=m.nv)
            m.geom_friction[:, 0] = nom["geom_friction"][:, 0] * rng.uniform(1 - x, 1 + x, size=m.ngeom)

    def set_goal(self, goal) -> None:
        """Move the goal (and its marker) to goal: [3] (m, world frame)."""
        g = np.asarray(goal, dtype=np.float64).reshape(-1)
        if g.shape[0] != 3 or not np.all(np.isfinite(g)):
            raise ValueError(f"goal must be 3 finite numbers (x, y, z), got {g}")
        self.goal = g.copy()
        if self.goal_mocap >= 0:
            self.data.mocap_pos[self.goal_mocap] = g

    # ----------------------------------------------------------------------------- command
    def check_command(self, values) -> np.ndarray:
        """Validate a command like forward_command_controller: [n] finite values, else ValueError."""
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.shape[0] != self.n_joints:
            raise ValueError(f"command has {v.shape[0]} values, arm has {self.n_joints} joints")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"command contains NaN or Inf: {v.tolist()}")
        return v

    def apply_command(self, values) -> None:
        """Set the held command: [n] joint velocities (rad/s) or positions (rad), per command_interface.

        Velocities are clipped to each joint's velocity limit, positions to its range. With
        command_latency > 0 the command takes effect that much simulated time later.
        Raises ValueError (and keeps the previous command) on a wrong length or NaN/Inf.
        """
        v = self.check_command(values)
        if self.cfg.command_interface == "velocity":
            v = np.clip(v, -self.velocity_limits, self.velocity_limits)
        else:
            v = np.clip(v, self.joint_limits[:, 0], self.joint_limits[:, 1])
        if self.cfg.command_latency > 0:
            self._pending.append((self.time + self.cfg.command_latency, v))
        else:
            self._command = v

    @property
    def command(self) -> np.ndarray:
        """The command in effect now: [n]."""
        return self._command.copy()

    def _write_controls(self, horizon: float) -> None:
        """Turn the held command into actuator controls for the next `horizon` seconds."""
        d = self.data
        q = d.qpos[self.qpos_adr]
        if self.cfg.command_interface == "velocity":
            vel = self._command.copy()
        else:
            vel = np.clip(self.cfg.position_gain * (self._command - q), -self.velocity_limits, self.velocity_limits)
        # Soft joint limits: never command a velocity that crosses a limit within SOFT_LIMIT_TIME.
        tau = max(SOFT_LIMIT_TIME, horizon)
        lo, hi = self.joint_limits[:, 0], self.joint_limits[:, 1]
        vel = np.clip(vel, np.minimum((lo - q) / tau, 0.0), np.maximum((hi - q) / tau, 0.0))
        ctrl = vel.copy()
        if np.any(self._is_pos_act):
            if self.cfg.command_interface == "position":
                self._pos_target = self._command.copy()
            else:
                self._pos_target = np.clip(self._pos_target + vel * horizon, lo, hi)
            ctrl[self._is_pos_act] = self._pos_target[self._is_pos_act]
        d.ctrl[self.actuator_ids] = ctrl

    # ----------------------------------------------------------------------------- physics
    def advance(self, duration: float) -> int:
        """Advance physics by `duration` seconds (rounded to whole physics steps); returns the step count."""
        if not (math.isfinite(duration) and duration >= 0):
            raise ValueError(f"advance: duration = {duration} must be a finite number >= 0")
        dt = self.physics_dt
        n = int(round(duration / dt))
        done = 0
        while done < n:
            while self._pending and self._pending[0][0] <= self.time + 0.5 * dt:
                self._command = self._pending.popleft()[1]
            chunk = min(SERVO_SUBSTEPS, n - done)
            if self._pending:
                chunk = max(1, min(chunk, int(math.ceil((self._pending[0][0] - self.time) / dt - 0.5))))
            self._write_controls(chunk * dt)
            mujoco.mj_step(self.model, self.data, nstep=chunk)
            done += chunk
        return n

    # ----------------------------------------------------------------------------- read-out
    def joint_positions(self) -> np.ndarray:
        """True joint positions: [n] (rad)."""
        return self.data.qpos[self.qpos_adr].copy()

    def joint_velocities(self) -> np.ndarray:
        """True joint velocities: [n] (rad/s)."""
        return self.data.qvel[self.dof_adr].copy()

    def joint_efforts(self) -> np.ndarray:
        """Actuator effort at each joint (incl. gravity compensation through the actuators): [n] (N m)."""
        return self.data.qfrc_actuator[self.dof_adr].copy()

    def read(self) -> JointReading:
        """Joint state as a sensor would report it (with sensor noise when enabled)."""
        q, qd = self.joint_positions(), self.joint_velocities()
        if self.cfg.sensor_noise_position > 0:
            q = q + self._noise_rng.normal(0.0, self.cfg.sensor_noise_position, size=q.shape)
        if self.cfg.sensor_noise_velocity > 0:
            qd = qd + self._noise_rng.normal(0.0, self.cfg.sensor_noise_velocity, size=qd.shape)
        return JointReading(position=q, velocity=qd, effort=self.joint_efforts(), time=self.time)

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """End-effector site pose: position [3] (m) and orientation quaternion [4] (w, x, y, z)."""
        pos = self.data.site_xpos[self.site_id].copy()
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, self.data.site_xmat[self.site_id])
        return pos, quat

    def ee_position(self) -> np.ndarray:
        """End-effector site position: [3] (m)."""
        return self.data.site_xpos[self.site_id].copy()
