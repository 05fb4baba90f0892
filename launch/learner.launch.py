"""The fleet's learner: learner_node alone, on any machine of the DDS domain (a GPU workstation).

    ros2 launch mbpo_ros learner.launch.py                          # device auto: CUDA when present
    ros2 launch mbpo_ros learner.launch.py device:=cuda run_dir:=runs/fleet
    ros2 launch mbpo_ros learner.launch.py --show-args

Arms join with `ros2 launch mbpo_ros train.launch.py learner:=remote namespace:=/arm1` (or
agent_node learner:=remote on a real arm), on the same ROS_DOMAIN_ID. Arguments and node
description come from mbpo_ros/graph.py (LearnerArgs, learner_graph).
"""

from launch import LaunchDescription
from launch.actions import OpaqueFunction

from mbpo_ros.graph import LearnerArgs, declare_launch_arguments, launch_nodes, learner_graph


def _nodes(context, *args, **kwargs):
    return launch_nodes(LearnerArgs, learner_graph, context)


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*declare_launch_arguments(LearnerArgs), OpaqueFunction(function=_nodes)])
