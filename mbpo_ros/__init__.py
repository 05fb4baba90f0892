"""mbpo_ros: Model-Based Policy Optimization for robot arms on ROS 2.

``import mbpo_ros`` registers the Gymnasium env ``mbpo_ros/ArmReach-v0`` (the twin + the Reach task)
when gymnasium is installed, so ``gymnasium.make("mbpo_ros/ArmReach-v0")`` works after it; MuJoCo is
imported only when the env is made.
"""

__version__ = "0.1.0"

#: Gymnasium id of the Reach env on the bundled arm (mbpo_ros.sim.reach_env.ArmReachEnv).
REACH_ENV_ID = "mbpo_ros/ArmReach-v0"
#: The same env with the Track task (a moving target): gymnasium.make(REACH_ENV_ID, task="track").
TRACK_ENV_ID = "mbpo_ros/ArmTrack-v0"

try:
    import gymnasium as _gymnasium
except ImportError:  # the control side (agent_node on a real arm) needs no gymnasium
    pass
else:
    if REACH_ENV_ID not in _gymnasium.registry:
        _gymnasium.register(id=REACH_ENV_ID, entry_point="mbpo_ros.sim.reach_env:ArmReachEnv")
    if TRACK_ENV_ID not in _gymnasium.registry:
        _gymnasium.register(id=TRACK_ENV_ID, entry_point="mbpo_ros.sim.reach_env:ArmReachEnv",
                            kwargs={"task": "track"})
