"""URDF arms generated from published kinematic data, for the tests (no meshes, no downloads).

Each joint's fixed transform comes from a Denavit-Hartenberg row; each link is a point-like mass
half-way to the next joint (inertia of a 5 cm sphere-ish body), enough for a twin to be driven
by its velocity servos; links carry no collision geometry (URDF visuals are discarded by MuJoCo).

- UR5e: Universal Robots, "DH parameters for calculations of kinematics and dynamics"
  (universal-robots.com/articles/ur/application-installation/dh-parameters-for-calculations-of-
  kinematics-and-dynamics), standard DH: T = Rz(theta) Tz(d) Tx(a) Rx(alpha). Joint ranges +-360 deg,
  speeds 180 deg/s, torques 150 / 150 / 150 / 28 / 28 / 28 N m (UR5e technical specifications).
- Franka Emika Panda: Franka Control Interface docs, "Robot and interface specifications"
  (frankaemika.github.io/docs/control_parameters.html), modified (Craig) DH:
  T = Rx(alpha_{i-1}) Tx(a_{i-1}) Rz(theta_i) Tz(d_i); joint limits, maximum joint velocities
  and torques from the same page; link masses from franka_description's inertial estimates.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# UR5e standard DH: (a [m], d [m], alpha [rad]) per joint; Universal Robots' table.
UR5E_DH = (
    (0.0, 0.1625, math.pi / 2),
    (-0.425, 0.0, 0.0),
    (-0.3922, 0.0, 0.0),
    (0.0, 0.1333, math.pi / 2),
    (0.0, 0.0997, -math.pi / 2),
    (0.0, 0.0996, 0.0),
)
UR5E_MASSES = (3.761, 8.058, 2.846, 1.37, 1.3, 0.365)  # kg, same table
UR5E_JOINTS = ("shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint",
               "wrist_1_joint", "wrist_2_joint", "wrist_3_joint")
UR5E_LIMITS = tuple((-2 * math.pi, 2 * math.pi) for _ in range(6))  # +-360 deg
UR5E_VELOCITY = tuple(math.pi for _ in range(6))  # 180 deg/s
UR5E_EFFORT = (150.0, 150.0, 150.0, 28.0, 28.0, 28.0)
#: the "home" of UR's examples: upper arm up, forearm forward, tool down
UR5E_HOME = (0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0)

# Panda modified DH: (a_{i-1} [m], d_i [m], alpha_{i-1} [rad]) per joint, then the flange (d = 0.107).
PANDA_DH = (
    (0.0, 0.333, 0.0),
    (0.0, 0.0, -math.pi / 2),
    (0.0, 0.316, math.pi / 2),
    (0.0825, 0.0, math.pi / 2),
    (-0.0825, 0.384, -math.pi / 2),
    (0.0, 0.0, math.pi / 2),
    (0.088, 0.0, math.pi / 2),
)
PANDA_FLANGE = (0.0, 0.107, 0.0)
PANDA_MASSES = (4.970684, 0.646926, 3.228604, 3.587895, 1.225946, 1.666555, 0.735522)
PANDA_JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
PANDA_LIMITS = ((-2.8973, 2.8973), (-1.7628, 1.7628), (-2.8973, 2.8973), (-3.0718, -0.0698),
                (-2.8973, 2.8973), (-0.0175, 3.7525), (-2.8973, 2.8973))
PANDA_VELOCITY = (2.1750, 2.1750, 2.1750, 2.1750, 2.6100, 2.6100, 2.6100)
PANDA_EFFORT = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
#: franka_ros' "ready" pose
PANDA_HOME = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)


def _link(name: str, mass: float, com) -> str:
    i = max(mass * 0.05**2, 1e-4)
    x, y, z = (f"{v:.6f}" for v in com)
    return (f'  <link name="{name}"><inertial><origin xyz="{x} {y} {z}"/><mass value="{mass}"/>'
            f'<inertia ixx="{i:.6g}" iyy="{i:.6g}" izz="{i:.6g}" ixy="0" ixz="0" iyz="0"/></inertial></link>\n')


def _joint(name: str, parent: str, child: str, xyz, rpy, limits=None, velocity=None, effort=None) -> str:
    x, y, z = (f"{v:.6f}" for v in xyz)
    r, p, w = (f"{v:.6f}" for v in rpy)
    kind = "fixed" if limits is None else "revolute"
    out = f'  <joint name="{name}" type="{kind}"><parent link="{parent}"/><child link="{child}"/>'
    out += f'<origin xyz="{x} {y} {z}" rpy="{r} {p} {w}"/>'
    if limits is not None:
        out += (f'<axis xyz="0 0 1"/><limit lower="{limits[0]:.6f}" upper="{limits[1]:.6f}" '
                f'velocity="{velocity:.6f}" effort="{effort:.6f}"/>')
    return out + "</joint>\n"


def ur5e_urdf(path: Path) -> Path:
    """Write a UR5e URDF (UR joint names, base_link ... tool0) to `path`."""
    text = '<?xml version="1.0"?>\n<robot name="ur5e">\n' + _link("base_link", 4.0, (0, 0, 0.05))
    # standard DH: joint i rotates about z of frame i-1; the fixed part Tz(d) Tx(a) Rx(alpha) of row i
    # is the origin of joint i+1 (and of tool0 after the last row)
    parent, offset = "base_link", ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    for i, ((a, d, alpha), mass, name) in enumerate(zip(UR5E_DH, UR5E_MASSES, UR5E_JOINTS)):
        child = f"link{i + 1}"
        text += _link(child, mass, (a / 2, 0.0, d / 2))
        text += _joint(name, parent, child, offset[0], offset[1], UR5E_LIMITS[i], UR5E_VELOCITY[i], UR5E_EFFORT[i])
        parent, offset = child, ((a, 0.0, d), (alpha, 0.0, 0.0))
    text += '  <link name="tool0"/>\n' + _joint("flange_fixed", parent, "tool0", offset[0], offset[1])
    path.write_text(text + "</robot>\n")
    return path


def _modified_dh_origin(a: float, d: float, alpha: float):
    """Rx(alpha) Tx(a) Tz(d) as a URDF origin (translation first, then roll)."""
    return (a, -d * math.sin(alpha), d * math.cos(alpha)), (alpha, 0.0, 0.0)


def panda_urdf(path: Path) -> Path:
    """Write a Franka Panda URDF (panda_link0 ... panda_link8, panda_joint1..7) to `path`."""
    text = '<?xml version="1.0"?>\n<robot name="panda">\n' + _link("panda_link0", 2.9, (0, 0, 0.05))
    parent = "panda_link0"
    rows = list(PANDA_DH)
    for i, (a, d, alpha) in enumerate(rows):
        child = f"panda_link{i + 1}"
        nxt = rows[i + 1] if i + 1 < len(rows) else PANDA_FLANGE
        text += _link(child, PANDA_MASSES[i], (nxt[0] / 2, 0.0, nxt[1] / 2))
        xyz, rpy = _modified_dh_origin(a, d, alpha)
        text += _joint(PANDA_JOINTS[i], parent, child, xyz, rpy, PANDA_LIMITS[i], PANDA_VELOCITY[i], PANDA_EFFORT[i])
        parent = child
    xyz, rpy = _modified_dh_origin(*PANDA_FLANGE)
    text += '  <link name="panda_link8"/>\n' + _joint("panda_joint8", parent, "panda_link8", xyz, rpy)
    path.write_text(text + "</robot>\n")
    return path


def dh_forward(rows, q, modified: bool, tool=None) -> np.ndarray:
    """End-effector position [3] of a DH chain at joint positions q (independent of MuJoCo)."""

    def rz(t):
        c, s = math.cos(t), math.sin(t)
        return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])

    def rx(t):
        c, s = math.cos(t), math.sin(t)
        return np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1.0]])

    def tr(x, z):
        m = np.eye(4)
        m[0, 3], m[2, 3] = x, z
        return m

    t = np.eye(4)
    for (a, d, alpha), qi in zip(rows, q):
        if modified:
            t = t @ rx(alpha) @ tr(a, 0) @ rz(qi) @ tr(0, d)
        else:
            t = t @ rz(qi) @ tr(0, d) @ tr(a, 0) @ rx(alpha)
    if tool is not None:
        a, d, alpha = tool
        t = t @ rx(alpha) @ tr(a, 0) @ tr(0, d)
    return t[:3, 3]


def gym_asset(name: str) -> str:
    """Path of a model file shipped inside the installed gymnasium package."""
    import os

    import gymnasium

    return os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets", name)


#: name -> (how to get the file (tmp_dir -> path), servo, ee_body, home pose or (), joints)
ARMS = {
    "arm6": (lambda d: _bundled(), "", "", (), 6),
    "pusher": (lambda d: gym_asset("pusher_v5.xml"), "velocity", "tips_arm", (), 7),
    "reacher": (lambda d: gym_asset("reacher.xml"), "velocity", "fingertip", (), 2),
    "ur5e": (lambda d: str(ur5e_urdf(Path(d) / "ur5e.urdf")), "velocity", "tool0", UR5E_HOME, 6),
    "panda": (lambda d: str(panda_urdf(Path(d) / "panda.urdf")), "velocity", "panda_link8", PANDA_HOME, 7),
}


def _bundled() -> str:
    from mbpo_ros.sim.arm_twin import BUNDLED_MODEL

    return BUNDLED_MODEL
