"""mbpo_ros.sim: the MuJoCo digital twin (no ROS).

- `ArmTwin`, `TwinConfig` (arm_twin.py): the arm, commanded like a ros2_control arm.
- `ArmReachEnv` (reach_env.py): Gymnasium env, registered here as "mbpo_ros/ArmReach-v0".
"""

from __future__ import annotations

import gymnasium

from mbpo_ros.sim.arm_twin import BUNDLED_MODEL, ArmTwin, JointReading, TwinConfig

ENV_ID = "mbpo_ros/ArmReach-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="mbpo_ros.sim.reach_env:ArmReachEnv")

__all__ = ["ArmTwin", "TwinConfig", "JointReading", "BUNDLED_MODEL", "ENV_ID"]
