"""mbpo_ros.sim: the MuJoCo digital twin (no ROS).

- `ArmTwin`, `TwinConfig` (arm_twin.py): the arm, commanded like a ros2_control arm.
- `ArmReachEnv` (reach_env.py): Gymnasium envs "mbpo_ros/ArmReach-v0" (any arm, any task:
  `gym.make(ENV_ID, robot=..., task=...)`) and "mbpo_ros/ArmTrack-v0" (task "track"), registered
  by `import mbpo_ros`.
- `arm_model.py`: MJCF/URDF loading and conversion (MjSpec), `check_arm`, `arm_profile`.
"""

from __future__ import annotations

from mbpo_ros import REACH_ENV_ID as ENV_ID  # registered with gymnasium by `import mbpo_ros`
from mbpo_ros import TRACK_ENV_ID
from mbpo_ros.sim.arm_twin import BUNDLED_MODEL, ArmTwin, JointReading, TwinConfig

__all__ = ["ArmTwin", "TwinConfig", "JointReading", "BUNDLED_MODEL", "ENV_ID", "TRACK_ENV_ID"]
