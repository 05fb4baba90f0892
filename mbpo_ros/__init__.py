"""mbpo_ros: Model-Based Policy Optimization for robot arms on ROS 2."""

__version__ = "0.1.0"
