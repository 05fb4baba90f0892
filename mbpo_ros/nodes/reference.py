"""The ROS interface of mbpo_ros's nodes, as data, rendered into the README.

`INTERFACE` lists every topic and service each node offers or uses with its default name.
`render()` turns it and the nodes' parameter specs into the Markdown tables that stand in
README.md between the markers below; `test/test_reference.py` checks that the README holds
exactly what `render()` gives and that running nodes offer exactly the listed interface, so
the tables cannot drift from the code.

    python -m mbpo_ros.nodes.reference --write README.md    # refresh the README tables
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

BEGIN = "<!-- BEGIN GENERATED: python -m mbpo_ros.nodes.reference --write README.md -->"
END = "<!-- END GENERATED -->"


@dataclass(frozen=True)
class Endpoint:
    """One topic or service of a node, under its default (remappable) name resolved in the root namespace."""

    node: str
    kind: str  # "publishes", "subscribes", "service", "client"
    name: str
    type: str
    note: str


INTERFACE: tuple[Endpoint, ...] = (
    Endpoint("twin_node", "publishes", "/joint_states", "sensor_msgs/msg/JointState",
             "names, position, velocity, effort; publish_rate Hz (lock-step: once per command)"),
    Endpoint("twin_node", "publishes", "/ee_pose", "geometry_msgs/msg/PoseStamped", "end-effector pose"),
    Endpoint("twin_node", "publishes", "/goal", "geometry_msgs/msg/PointStamped",
             "current Reach goal (transient local)"),
    Endpoint("twin_node", "publishes", "/clock", "rosgraph_msgs/msg/Clock",
             "simulated time, when publish_clock is true"),
    Endpoint("twin_node", "publishes", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray",
             "achieved real-time factor, rejected commands; 1 Hz"),
    Endpoint("twin_node", "subscribes", "/arm_controller/commands", "std_msgs/msg/Float64MultiArray",
             "one value per joint, velocity or position (command_interface); held until the next"),
    Endpoint("twin_node", "subscribes", "/arm_controller/joint_trajectory",
             "trajectory_msgs/msg/JointTrajectory", "first point's velocities or positions"),
    Endpoint("twin_node", "service", "/twin_node/reset", "std_srvs/srv/Trigger",
             "new episode: start near the home pose, new goal"),
    Endpoint("agent_node", "subscribes", "/joint_states", "sensor_msgs/msg/JointState",
             "sensor-data QoS, matched by joint name"),
    Endpoint("agent_node", "subscribes", "/ee_pose", "geometry_msgs/msg/PoseStamped",
             "part of the observation; covered by the watchdog; frame_id must be base_frame; not subscribed "
             "with robot_model (forward kinematics instead)"),
    Endpoint("agent_node", "subscribes", "/goal", "geometry_msgs/msg/PointStamped",
             "task goal; reliable, transient local (a goal latched before the agent starts counts); "
             "goal_source topic (the default)"),
    Endpoint("agent_node", "publishes", "/episode", "std_msgs/msg/String",
             "one JSON object per episode start and end (index, env steps, stamp, goal; steps, return, success, "
             "final distance, reason); reliable, depth 50; none in deploy mode"),
    Endpoint("agent_node", "publishes", "/arm_controller/commands", "std_msgs/msg/Float64MultiArray",
             "command_topic, reliable; clipped and rate-limited (command_type multi_array)"),
    Endpoint("agent_node", "publishes", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray",
             "control rate and jitter, watchdog, e-stop, rejected messages, buffers, losses, UTD; 1 Hz"),
    Endpoint("agent_node", "service", "/agent_node/estop", "std_srvs/srv/SetBool",
             "true latches the e-stop (velocity: zero; position: hold the measured position), false releases it"),
    Endpoint("agent_node", "service", "/agent_node/save_checkpoint", "std_srvs/srv/Trigger",
             "write <run_dir>/checkpoint now"),
    Endpoint("agent_node", "service", "/agent_node/pause_training", "std_srvs/srv/SetBool",
             "true pauses learning (control goes on)"),
    Endpoint("agent_node", "client", "/twin_node/reset", "std_srvs/srv/Trigger",
             "reset_service; empty on a real arm (drive home instead)"),
    Endpoint("agent_node (goal_source:=task)", "publishes", "/goal", "geometry_msgs/msg/PointStamped",
             "each episode's goal drawn by the task, in base_frame, at the episode's start; reliable, transient "
             "local, depth 1 (instead of subscribing /goal)"),
    Endpoint("agent_node (learner:=remote)", "publishes", "/mbpo_fleet/transitions", "std_msgs/msg/UInt8MultiArray",
             "fleet_topic: transitions (arm id, stream, sequence numbers) and a HEAD frame per second "
             "(learner/wire.py); reliable"),
    Endpoint("agent_node (learner:=remote)", "subscribes", "/mbpo_fleet/gaps", "std_msgs/msg/UInt8MultiArray",
             "gap requests of the learner, answered from memory or the MCAP log"),
    Endpoint("agent_node (learner:=remote)", "subscribes", "/mbpo_fleet/policy", "std_msgs/msg/UInt8MultiArray",
             "policy snapshots (reliable, transient local); another arm's/task's are refused"),
    Endpoint("learner_node", "subscribes", "/mbpo_fleet/transitions", "std_msgs/msg/UInt8MultiArray",
             "every agent's transitions and heads (fleet_topic; absolute: any namespace)"),
    Endpoint("learner_node", "publishes", "/mbpo_fleet/gaps", "std_msgs/msg/UInt8MultiArray",
             "what it is missing, per arm stream, again every gap_retry s while open"),
    Endpoint("learner_node", "publishes", "/mbpo_fleet/policy", "std_msgs/msg/UInt8MultiArray",
             "policy snapshots with version, arm/task identity and SHA-256 (reliable, transient local)"),
    Endpoint("learner_node", "publishes", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray",
             "arms, transitions held, open gaps, bytes/s per arm, SAC updates/s"),
    Endpoint("learner_node", "service", "/learner_node/save_checkpoint", "std_srvs/srv/Trigger",
             "write <run_dir>/checkpoint now"),
)


def _cell(value) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")
    return text if text else "''"


def interface_table() -> str:
    lines = ["| node | kind | name | type | notes |", "|---|---|---|---|---|"]
    for e in INTERFACE:
        lines.append(f"| {e.node} | {e.kind} | `{e.name}` | `{e.type}` | {e.note} |")
    return "\n".join(lines)


def _range(spec) -> str:
    if getattr(spec, "choices", None):
        return " \\| ".join(spec.choices)
    lo, hi = spec.lo, spec.hi
    if lo is None and hi is None:
        return ""
    return f"[{'' if lo is None else lo}, {'' if hi is None else hi}]"


def parameter_table(specs) -> str:
    lines = ["| parameter | default | range | live | description |", "|---|---|---|---|---|"]
    for s in specs:
        default = s.default
        if isinstance(default, (list, tuple)):
            default = "[" + ", ".join(str(v) for v in default) + "]"
        live = "no" if s.read_only else "yes"
        lines.append(f"| `{s.name}` | `{_cell(default)}` | {_range(s)} | {live} | {_cell(s.doc)} |")
    return "\n".join(lines)


#: launch file -> the args dataclass in mbpo_ros/graph.py its arguments come from
LAUNCH_FILES = (("arm.launch.py", "ArmArgs"), ("train.launch.py", "TrainArgs"), ("deploy.launch.py", "DeployArgs"),
                ("learner.launch.py", "LearnerArgs"))


def launch_table(cls) -> str:
    """A launch file's arguments (graph.launch_arguments: what --show-args prints) as a Markdown table."""
    from mbpo_ros import graph

    lines = ["| argument | default | description |", "|---|---|---|"]
    for name, default, doc in graph.launch_arguments(cls):
        lines.append(f"| `{name}` | `{_cell(default)}` | {_cell(doc)} |")
    return "\n".join(lines)


def render() -> str:
    """The generated README block (markers included)."""
    from mbpo_ros import graph
    from mbpo_ros.nodes import params, twin_node

    parts = [
        BEGIN,
        "### Topics and services",
        "",
        "The nodes use relative names (`joint_states`, `arm_controller/commands`, `twin_node/reset`, ...), "
        "so they resolve in the nodes' namespace; the table shows them resolved in the root namespace. "
        "Under `namespace:=/arm1` they become `/arm1/joint_states`, `/arm1/twin_node/reset`, ...; "
        "`/clock` and `/diagnostics` are global and stay at the root; `~/` services are private "
        "(`<namespace>/<node>/estop`).",
        "",
        interface_table(),
        "",
        "### agent_node parameters",
        "",
        "Every field of the core config dataclasses (`ensemble.*`, `sac.*`, `mbpo.*`) and the Reach task "
        "(`reach.*`) is a parameter too; `config/mbpo.yaml` lists them all with their defaults. "
        "\"live\" = may be changed while the node runs; the rest are read at start-up.",
        "",
        "<details><summary>all agent_node parameters</summary>",
        "",
        parameter_table(params.all_specs()),
        "",
        "</details>",
        "",
        "### twin_node parameters",
        "",
        "<details><summary>all twin_node parameters</summary>",
        "",
        parameter_table(twin_node._specs()),
        "",
        "</details>",
        "",
        "### learner_node parameters",
        "",
        "Its own settings and, as on agent_node, every core config field (`device`, `ensemble.*`, `sac.*`, "
        "`mbpo.*`); the task and the arm come from the agents (the first that announces itself) or the checkpoint.",
        "",
        "<details><summary>all learner_node parameters</summary>",
        "",
        parameter_table(params.learner_specs()),
        "",
        "</details>",
        "",
        "### Launch arguments",
        "",
        "What `ros2 launch mbpo_ros <file> --show-args` prints: each argument as `name:=value`, its default and "
        "meaning (mbpo_ros/graph.py: ArmArgs, TrainArgs, DeployArgs, LearnerArgs).",
        "",
        *(item for name, cls in LAUNCH_FILES for item in (
            f"<details><summary>{name}</summary>", "", launch_table(getattr(graph, cls)), "", "</details>", "")),
        END,
    ]
    return "\n".join(parts)


def replace_block(text: str, block: str) -> str:
    """Put `block` between the markers in `text` (ValueError if the markers are missing)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the file has no generated block: add the lines\n{BEGIN}\n{END}")
    return text[:start] + block + text[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the nodes' ROS interface tables (Markdown).")
    parser.add_argument("--write", metavar="FILE", help="replace the generated block in FILE (README.md)")
    args = parser.parse_args(argv)
    block = render()
    if args.write:
        path = Path(args.write)
        path.write_text(replace_block(path.read_text(), block))
    else:
        sys.stdout.write(block + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
