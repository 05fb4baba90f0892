"""Run a trained policy on a real arm: agent_node alone, mode:=deploy.

    ros2 launch mbpo_ros deploy.launch.py checkpoint:=runs/reach-20261125-120000/checkpoint
    ros2 launch mbpo_ros deploy.launch.py checkpoint:=... \
        command_topic:=/forward_velocity_controller/commands joint_names:=shoulder_pan_joint,...
    ros2 launch mbpo_ros deploy.launch.py checkpoint:=... namespace:=/arm1   # a namespaced ros2_control arm
    ros2 launch mbpo_ros deploy.launch.py --show-args

The agent's command topics are remapped to a ros2_control setup: Float64MultiArray velocity
commands to `command_topic` (default forward_velocity_controller/commands) and
JointTrajectory commands to `trajectory_topic` (default
joint_trajectory_controller/joint_trajectory; pick the interface in the YAML). These and
`joint_states_topic` are relative, so they resolve in `namespace` (/arm1/joint_states,
/arm1/forward_velocity_controller/commands, ...); give an absolute name to leave it. The safety
layer of the agent (limits, rate limit, watchdog, e-stop service ~/estop) is always on.
Arguments and node description come from mbpo_ros/graph.py (DeployArgs, deploy_graph): this is
arm.launch.py mode:=deploy (graph.arm_graph) with fewer arguments, kept for existing commands;
arm.launch.py adds robot (forward kinematics, joints and limits from the arm model), limits,
allow_extra_joints and the other modes (train, collect).
"""

from launch import LaunchDescription
from launch.actions import OpaqueFunction

from mbpo_ros.graph import DeployArgs, declare_launch_arguments, deploy_graph, launch_nodes


def _nodes(context, *args, **kwargs):
    return launch_nodes(DeployArgs, deploy_graph, context)


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*declare_launch_arguments(DeployArgs), OpaqueFunction(function=_nodes)])
