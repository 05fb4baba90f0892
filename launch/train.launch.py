"""Train MBPO on the MuJoCo twin: twin_node + agent_node.

    ros2 launch mbpo_ros train.launch.py
    ros2 launch mbpo_ros train.launch.py lockstep:=true real_time_factor:=0 run_dir:=runs/reach seed:=1
    ros2 launch mbpo_ros train.launch.py namespace:=/arm1    # everything under /arm1 (two arms, one domain)
    ros2 launch mbpo_ros train.launch.py namespace:=/arm1 learner:=remote use_sim_time:=false   # a fleet arm
    ros2 launch mbpo_ros train.launch.py --show-args

The arguments, their defaults and the nodes' parameters and remappings come from
mbpo_ros/graph.py (TrainArgs, train_graph), the same description `mbpo-ros train` and the
subprocess tests use. Parameters are read from config/twin.yaml and config/mbpo.yaml in the
package's share directory (keyed `/**/twin_node:` / `/**/agent_node:`, so they apply in any
namespace), then overridden by the arguments. The nodes use relative names, so `namespace:=/arm1`
(launch_ros Node(namespace=...)) moves the whole graph: /arm1/joint_states, /arm1/twin_node/reset, ...;
/clock and /diagnostics stay global.
"""

from launch import LaunchDescription
from launch.actions import OpaqueFunction

from mbpo_ros.graph import TrainArgs, declare_launch_arguments, launch_nodes, train_graph


def _nodes(context, *args, **kwargs):
    return launch_nodes(TrainArgs, train_graph, context)


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*declare_launch_arguments(TrainArgs), OpaqueFunction(function=_nodes)])
