"""agent_node on a real ros2_control arm: learn on it, collect from it, or deploy a trained policy.

    ros2 launch mbpo_ros arm.launch.py mode:=train robot:=ur5e.urdf servo:=velocity ee_body:=tool0 \
        allow_extra_joints:=true run_dir:=runs/ur5e-real
    ros2 launch mbpo_ros arm.launch.py mode:=collect robot:=ur5e.urdf servo:=velocity ee_body:=tool0
    ros2 launch mbpo_ros arm.launch.py mode:=deploy checkpoint:=runs/ur5e/checkpoint \
        robot:=ur5e.urdf servo:=velocity ee_body:=tool0 allow_extra_joints:=true
    ros2 launch mbpo_ros arm.launch.py mode:=deploy checkpoint:=... namespace:=/arm1   # a namespaced arm
    ros2 launch mbpo_ros arm.launch.py --show-args

`robot` is the arm's MJCF or URDF file (the one the twin trained with): the agent computes the
end-effector position from the joint states with its forward kinematics, and takes the joint names,
limits, home pose and goal box from it. Commands go to `command_topic` (Float64MultiArray
velocities, default forward_velocity_controller/commands) or, with command_type:=trajectory, to
`trajectory_topic` (JointTrajectory); joint states are matched by name. Between episodes the arm
drives back to its home pose (`reset_service` empty); in train and collect the task draws each
episode's goal and the agent publishes it on `goal` (`goal_source` task; deploy reads `goal`).
`limits` is a params file with stricter limits. The agent's safety layer (limits, rate limit, watchdog, e-stop service ~/estop) is always
on. Arguments and node description come from mbpo_ros/graph.py (ArmArgs, arm_graph);
deploy.launch.py is this file in mode deploy with fewer arguments.
"""

from launch import LaunchDescription
from launch.actions import OpaqueFunction

from mbpo_ros.graph import ArmArgs, arm_graph, declare_launch_arguments, launch_nodes


def _nodes(context, *args, **kwargs):
    return launch_nodes(ArmArgs, arm_graph, context)


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*declare_launch_arguments(ArmArgs), OpaqueFunction(function=_nodes)])
