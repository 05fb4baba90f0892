"""Forward kinematics of an arm model: the end-effector position from joint positions (MuJoCo, no ROS).

`ForwardKinematics(path, ...)` loads the model exactly as the twin does (sim/arm_model.py: MJCF or
URDF, `ee_body` adds the end-effector site) and maps joint positions, in the agent's joint order, to
the site's position in the model's world frame, which is the arm's base frame. The agent uses it
(parameter `robot_model`) so a real arm needs no end-effector pose publisher. Not thread-safe: one
caller at a time (it keeps one MjData).
"""

from __future__ import annotations

from collections.abc import Sequence

import mujoco
import numpy as np

from mbpo_ros.sim.arm_model import ArmModelError, load_arm_model


class ForwardKinematics:
    """q [n] (rad, in `joint_names` order) -> end-effector site position [3] (m, base frame)."""

    def __init__(self, path: str, joint_names: Sequence[str], ee_body: str = "", ee_site: str = "ee_site",
                 servo: str = "") -> None:
        self.model = load_arm_model(path, servo=servo, ee_body=ee_body, ee_site=ee_site)
        self.data = mujoco.MjData(self.model)
        m = self.model
        missing = [j for j in joint_names if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) < 0]
        if missing:
            joints = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(m.njnt)]
            raise ArmModelError(f"joints {missing} of joint_names are not in {path} (its joints: {joints})")
        self.site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, ee_site)
        if self.site < 0:
            raise ArmModelError(f"{path} has no end-effector site {ee_site!r}: name its body with ee_body")
        self.qpos_adr = np.array([m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)]
                                  for j in joint_names], dtype=int)
        self.n = len(self.qpos_adr)

    def __call__(self, q: Sequence[float]) -> np.ndarray:
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape[0] != self.n:
            raise ValueError(f"forward kinematics: {q.shape[0]} joint positions, the arm has {self.n}")
        self.data.qpos[self.qpos_adr] = q
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site].copy()
