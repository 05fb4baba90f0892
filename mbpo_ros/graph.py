"""One description of mbpo_ros's node graphs, rendered for `ros2 launch` and for subprocesses.

A graph is a list of :class:`NodeSpec` (executable, node name, namespace, params files,
parameter overrides, remappings) computed from the same arguments the launch files declare:
:class:`TrainArgs` for ``launch/train.launch.py`` (twin_node + agent_node), :class:`ArmArgs` for
``launch/arm.launch.py`` (agent_node alone on a real arm: train, collect or deploy), :class:`DeployArgs`
for ``launch/deploy.launch.py`` (arm.launch.py in mode deploy, fewer arguments) and :class:`LearnerArgs`
for ``launch/learner.launch.py``.
The launch arguments are *generated* from these dataclasses (:func:`launch_arguments`), so
their names, defaults and descriptions cannot drift from what ``mbpo-ros train`` and the
subprocess tests use.

Two renderers:

- :func:`to_ros_args` -> ``["--ros-args", "-r", "__node:=...", "--params-file", f, "-p", "k:=v",
  "-r", "from:=to", ...]`` for starting a node executable as a subprocess
  (:func:`command_line` prepends the executable);
- :func:`to_launch_node` -> ``launch_ros.actions.Node`` with the same fields; the launch files call
  it from an ``OpaqueFunction`` so that every ``LaunchConfiguration`` is resolved first.

Share locations (:func:`share_dir`): the installed share directory found through
``ament_index_python`` when the package is installed ROS-style (colcon), else the source
tree (a pip editable install), whose ``config/`` holds the same YAML files.

Namespaces: every node uses relative topic and service names (``joint_states``,
``arm_controller/commands``, ``twin_node/reset``; ``/clock`` and ``/diagnostics`` stay global),
the YAML files are keyed ``/**/<node>:`` and the remappings' "from" sides are relative, so the
``namespace`` argument (``namespace:=/arm1``) moves a whole graph into ``/arm1`` and two arms can
share one DDS domain.

`launch` and `launch_ros` are imported only inside :func:`to_launch_node` and
:func:`declare_launch_arguments`: everything else works with rclpy wheels only.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mbpo_ros.core.config import param

PACKAGE = "mbpo_ros"

#: node executable -> Python module with ``main()``, the fall-back when no console script is found.
EXECUTABLE_MODULES = {
    "twin_node": "mbpo_ros.nodes.twin_node",
    "agent_node": "mbpo_ros.nodes.agent_node",
    "agent_lifecycle_node": "mbpo_ros.nodes.agent_lifecycle_node",
    "learner_node": "mbpo_ros.nodes.learner_node",
}

#: The command topics of the two standard ros2_control controllers a real arm usually runs. Relative:
#: they resolve in the graph's namespace, where a namespaced ros2_control arm has its controllers.
FORWARD_VELOCITY_TOPIC = "forward_velocity_controller/commands"
JOINT_TRAJECTORY_TOPIC = "joint_trajectory_controller/joint_trajectory"

#: The agent's default (relative) command and state topics (docs/architecture.md, "Topics"): the
#: "from" sides of the deploy remappings. ROS 2 expands a rule's relative "from" in the node's
#: namespace before matching, so these rules match in any namespace.
AGENT_COMMAND_TOPIC = "arm_controller/commands"
AGENT_TRAJECTORY_TOPIC = "arm_controller/joint_trajectory"
AGENT_JOINT_STATES_TOPIC = "joint_states"
#: The twin's reset service as the agent names it (relative: the twin in the agent's namespace).
TWIN_RESET_SERVICE = "twin_node/reset"

#: Seconds agent_node gets after SIGINT, and again after SIGTERM, before it is killed (launch_ros
#: Node sigterm_timeout / sigkill_timeout; launch's own default is 5 s each). What it needs: the
#: learner finishes its current piece of work (a retrain: the reach preset caps it at 20 s) and then
#: writes the final checkpoint (a full 1,000,000-transition Reach buffer: 2.9 s median, 3.5 s max on
#: the 2-core machine at load 8.6; benchmarks/final_checkpoint.py, docs/benchmarks.md "Final checkpoint").
SHUTDOWN_GRACE_S = 30.0
#: launch's default wait after SIGINT and after SIGTERM (ExecuteLocal's sigterm_timeout/sigkill_timeout)
LAUNCH_DEFAULT_GRACE_S = 5.0
_GRACE_DOC = ("seconds agent_node gets after Ctrl-C (SIGINT), and again after SIGTERM, to write its final "
              "checkpoint before it is killed (launch_ros sigterm_timeout/sigkill_timeout)")

_NAMESPACE_DOC = ("ROS namespace of every node, e.g. /arm1 (topics become /arm1/joint_states, ...); "
                  "empty = the root namespace")


#: Environment of every process mbpo-ros, the tests, benchmarks and demos start: the graphs they run live
#: on one host, so DDS discovery stays on it (other machines' nodes are not heard, nor disturbed).
LOCAL_DISCOVERY = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def local_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with :data:`LOCAL_DISCOVERY` and ``extra`` set."""
    env = dict(os.environ if base is None else base)
    env.update(LOCAL_DISCOVERY)
    env.update(extra)
    return env


def arg(default: Any, doc: str) -> Any:
    """A TrainArgs/DeployArgs field (core.config.param): its default and the description shown by
    `ros2 launch ... --show-args`."""
    return param(default, doc)


@dataclass
class TrainArgs:
    """Arguments of ``train.launch.py`` (twin_node + agent_node); defaults are the launch defaults."""

    robot: str = arg("", "MJCF or URDF file of the simulated arm; empty = the bundled 6-DOF arm "
                     "(sim/assets/arm6.xml); its joints, limits, home pose and goal box go to both nodes")
    servo: str = arg("", "with robot: 'velocity' or 'position' turns the arm's torque motors (or a URDF's missing "
                     "actuators) into servos; empty = the file's actuators")
    ee_body: str = arg("", "with robot: add the end-effector site at this body; empty = the model has ee_site")
    task: str = arg("reach", "task the agent learns (reach, or a plugin of the entry-point group mbpo_ros.tasks)")
    config: str = arg("", "agent_node parameters YAML; empty = config/mbpo.yaml from the package share")
    twin_config: str = arg("", "twin_node parameters YAML; empty = config/twin.yaml from the package share")
    control_rate: float = arg(20.0, "control rate in Hz: the agent's loop rate and the twin's control period (1/rate)")
    use_sim_time: bool = arg(True, "agent follows the twin's /clock instead of the wall clock")
    real_time_factor: float = arg(1.0, "twin speed: 1.0 = wall-clock time, >1 faster, 0 = as fast as possible")
    lockstep: bool = arg(False, "twin advances one control period per command; agent steps per joint state (deterministic)")
    device: str = arg("auto", "torch device for training: auto (CUDA when present, else CPU), cpu, cuda, cuda:N")
    run_dir: str = arg("", "run directory (checkpoint/, transitions/, episodes.csv); empty = the agent's default")
    seed: int = arg(0, "random seed of the twin (goals, noise) and of the learner")
    namespace: str = arg("", _NAMESPACE_DOC)
    learner: str = arg("local", "local: the learner is the agent's child process; remote: a learner_node on the "
                       "DDS domain trains (learner.launch.py); with use_sim_time:=false the twin stamps with the "
                       "wall clock (no /clock: several arms can share one machine)")
    shutdown_grace: float = arg(SHUTDOWN_GRACE_S, _GRACE_DOC)


@dataclass
class LearnerArgs:
    """Arguments of ``learner.launch.py`` (learner_node alone: the fleet's learner, on any machine)."""

    config: str = arg("", "learner_node parameters YAML (keyed /**/learner_node:); empty = the built-in defaults")
    device: str = arg("auto", "torch device for training: auto (CUDA when present, else CPU), cpu, cuda, cuda:N")
    run_dir: str = arg("", "run directory (checkpoint/); empty = runs/learner_node")
    fleet_topic: str = arg("/mbpo_fleet", "namespace of the fleet topics the agents use (agent_node fleet_topic)")
    checkpoint_period: float = arg(60.0, "seconds between periodic checkpoints; 0 = only at exit and on request")
    seed: int = arg(0, "random seed of the learner")
    namespace: str = arg("", _NAMESPACE_DOC)
    shutdown_grace: float = arg(SHUTDOWN_GRACE_S, "seconds learner_node gets after Ctrl-C (SIGINT), and again after "
                                "SIGTERM, to write its final checkpoint before it is killed")


@dataclass
class DeployArgs:
    """Arguments of ``deploy.launch.py`` (agent_node alone, driving a real ros2_control arm)."""

    checkpoint: str = arg("", "checkpoint directory of a trained run (<run_dir>/checkpoint); required")
    config: str = arg("", "agent_node parameters YAML; empty = config/mbpo.yaml from the package share")
    command_topic: str = arg(
        FORWARD_VELOCITY_TOPIC,
        "topic the velocity commands (std_msgs/Float64MultiArray) are remapped to, "
        "relative to the namespace (or absolute, e.g. /forward_velocity_controller/commands)",
    )
    trajectory_topic: str = arg(
        JOINT_TRAJECTORY_TOPIC,
        "topic the JointTrajectory commands are remapped to, relative to the namespace (or absolute)",
    )
    command_type: str = arg(
        "multi_array",
        "multi_array: Float64MultiArray velocities (forward_velocity_controller); "
        "trajectory: JointTrajectory (joint_trajectory_controller)",
    )
    joint_states_topic: str = arg(AGENT_JOINT_STATES_TOPIC,
                                  "topic of the arm's sensor_msgs/JointState, relative to the namespace (or absolute)")
    joint_names: str = arg("", "comma-separated joint names of the real arm; empty = the names in the YAML")
    control_rate: float = arg(20.0, "control rate in Hz")
    use_sim_time: bool = arg(False, "follow /clock (only when the arm is simulated)")
    device: str = arg("cpu", "torch device (deploy mode only evaluates a NumPy policy snapshot)")
    run_dir: str = arg("", "run directory for the deploy log; empty = the agent's default")
    seed: int = arg(0, "random seed")
    namespace: str = arg("", _NAMESPACE_DOC)
    shutdown_grace: float = arg(SHUTDOWN_GRACE_S, _GRACE_DOC)


def same_as(cls: type, name: str, default: Any = dataclasses.MISSING, doc: str = "") -> Any:
    """The argument ``name`` of another args dataclass (or an AgentParams parameter), said once: its
    default and description, unless ``default``/``doc`` say otherwise."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if default is dataclasses.MISSING:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return arg(default, doc or f.metadata["doc"])


#: agent_node's modes on a real arm (AgentParams.mode)
ARM_MODES = ("train", "collect", "deploy")
#: the parameters a limits file may set (arm.launch.py limits:=): the arm's limits and their shaping
LIMIT_PARAMETERS = ("position_lower", "position_upper", "velocity_limits", "max_velocity_step", "position_margin")


@dataclass
class ArmArgs:
    """Arguments of ``arm.launch.py`` (agent_node alone on a real ros2_control arm: train, collect or deploy).

    Arguments shared with train.launch.py and deploy.launch.py are their fields (:func:`same_as`)."""

    mode: str = arg("train", "train: learn on the arm from its real transitions; collect: log transitions only "
                    "(random actions, no learner); deploy: run a checkpoint's policy, no learning (one of: train, "
                    "collect, deploy)")
    checkpoint: str = arg("", "deploy: checkpoint directory of a trained run (<run_dir>/checkpoint), required; "
                          "train: resume the run of this checkpoint (run_dir becomes its parent); collect: unused")
    run_dir: str = same_as(TrainArgs, "run_dir")
    robot: str = arg("", "MJCF or URDF file of the arm (the file the twin trained with): the agent computes the "
                     "end-effector position from the joint states with its forward kinematics (no ee_pose "
                     "publisher), and takes the arm's joint names, limits, home pose and goal box from it; "
                     "empty = read ee_pose, joints and limits from config (and limits)")
    servo: str = same_as(TrainArgs, "servo")
    ee_body: str = same_as(TrainArgs, "ee_body")
    task: str = same_as(TrainArgs, "task")
    joint_names: str = arg("", "comma-separated joint names in command order (the order of the controller's "
                           "joints); with robot: the model's joints to use, by name; empty = all of the model's "
                           "(with robot) or the names in config")
    joint_states_topic: str = same_as(DeployArgs, "joint_states_topic")
    command_type: str = same_as(DeployArgs, "command_type")
    command_topic: str = same_as(DeployArgs, "command_topic")
    trajectory_topic: str = same_as(DeployArgs, "trajectory_topic")
    allow_extra_joints: bool = arg(False, "accept joint states that also name joints the agent does not command "
                                   "(a gripper); false rejects them")
    reset_service: str = arg("", "std_srvs/Trigger service that resets the arm between episodes (a simulator's); "
                             "empty = drive back to the home pose under the same limits")
    goal_source: str = arg("", "where each episode's goal comes from: task (the agent draws it inside the arm's goal "
                           "box and publishes it latched on goal) or topic (an external source publishes on goal); "
                           "empty = task in train and collect, topic in deploy (which has no episodes)")
    config: str = same_as(DeployArgs, "config")
    limits: str = arg("", "params file (keyed /**/agent_node:) with the arm's limits, applied over robot's and "
                      "config's: " + ", ".join(LIMIT_PARAMETERS) + " (per joint, command order); empty = none")
    control_rate: float = same_as(DeployArgs, "control_rate")
    use_sim_time: bool = same_as(DeployArgs, "use_sim_time")
    device: str = same_as(TrainArgs, "device")
    seed: int = arg(0, "random seed of the learner and of collect's random actions")
    namespace: str = arg("", _NAMESPACE_DOC)
    learner: str = arg("local", "train: local (the learner is the agent's child process) or remote (a learner_node "
                       "on the DDS domain trains, learner.launch.py)")
    shutdown_grace: float = arg(SHUTDOWN_GRACE_S, _GRACE_DOC)


@dataclass(frozen=True)
class NodeSpec:
    """One node of a graph, as data.

    parameters: overrides applied after the params files (``-p name:=value``), typed Python values.
    remappings: ``(from, to)`` topic/service name pairs.
    """

    package: str
    executable: str
    name: str
    namespace: str = ""  # empty = root; else absolute, e.g. /arm1 (config/*.yaml use /**/<node> keys: any namespace)
    params_files: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    shutdown_grace: float = 0.0  # s after SIGINT and again after SIGTERM before SIGKILL; 0 = launch's 5 s

    def stop_sequence(self) -> list[tuple[str, float]]:
        """How the node is stopped, as ros2 launch does it: (signal name, seconds to wait after it)."""
        grace = self.shutdown_grace or LAUNCH_DEFAULT_GRACE_S
        return [("SIGINT", grace), ("SIGTERM", grace), ("SIGKILL", 10.0)]


def _check_grace(value: float) -> float:
    if not value >= 0:
        raise ValueError(f"shutdown_grace = {value} s must be >= 0 (0 = launch's default of 5 s)")
    return float(value)


# --------------------------------------------------------------------------- locations


def source_root() -> Path:
    """The source tree this module was imported from (holds config/, launch/)."""
    return Path(__file__).resolve().parents[1]


def share_dir() -> Path:
    """``share/mbpo_ros`` of a ROS-style install when there is one, else the source tree."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return source_root()
    try:
        path = Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, ValueError, LookupError, OSError):  # OSError: AMENT_PREFIX_PATH unset
        return source_root()
    return path if (path / "config").is_dir() else source_root()


def config_file(name: str) -> str:
    """Absolute path of ``config/<name>`` in :func:`share_dir`; FileNotFoundError naming where it looked."""
    path = share_dir() / "config" / name
    if not path.is_file():
        raise FileNotFoundError(f"parameters file {name!r} not found at {path}")
    return str(path)


#: agent_node parameters a launch sets itself: the command topics are remappings of the agent's default
#: names (ArmArgs command_topic / trajectory_topic; the twin listens on those defaults), which a params file
#: value would silently defeat (the remapping no longer matches the name the agent uses).
LAUNCH_OWNED_AGENT_PARAMETERS = {"command_topic": AGENT_COMMAND_TOPIC, "trajectory_topic": AGENT_TRAJECTORY_TOPIC}


def checked_agent_config(path: str) -> str:
    """The agent's params file (``path``, empty = config/mbpo.yaml), refused with a ParameterError (a
    ValueError) if it is not valid YAML, its agent_node section names an unknown parameter, or it
    moves a command topic (LAUNCH_OWNED_AGENT_PARAMETERS: the launch arguments say where commands go)."""
    from mbpo_ros.nodes.params import ParameterError, agent_parameter_names, check_params_file, node_sections

    path = path or config_file("mbpo.yaml")
    check_params_file(path, "agent_node", agent_parameter_names())
    for key, params in node_sections(path, "agent_node"):
        for name, default in LAUNCH_OWNED_AGENT_PARAMETERS.items():
            if name in params and params[name] != default:
                raise ParameterError(
                    f"params file {path} ('{key}') sets {name} = {params[name]!r}: under mbpo_ros's launch files the "
                    f"command topics are launch arguments (arm.launch.py / deploy.launch.py {name}:=...), which remap "
                    f"the agent's default {default!r}; remove {name} from the file")
    return path


def bundled_robot() -> str:
    """Absolute path of the bundled arm's MJCF file (mbpo_ros/sim/assets/arm6.xml)."""
    return str(Path(__file__).resolve().parent / "sim" / "assets" / "arm6.xml")


# --------------------------------------------------------------------------- graphs

_NAME_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: rmw's limit on a namespace's length (RMW_NAMESPACE_MAX_LENGTH; test_graph checks it against rclpy).
NAMESPACE_MAX_LENGTH = 245


def check_namespace(namespace: str, name: str = "namespace") -> str:
    """The ROS namespace ``namespace`` normalised ("/" -> "" = root); ValueError naming ``name`` otherwise.

    Valid: empty (root) or absolute: "/" followed by "/"-separated tokens of letters, digits and
    underscores, none starting with a digit, no empty token (no "//", no trailing "/"), as
    rmw_validate_namespace accepts.
    """
    ns = str(namespace).strip()
    if ns in ("", "/"):
        return ""
    why = None
    if not ns.startswith("/"):
        why = "must be empty (root) or absolute, starting with '/', e.g. /arm1"
    elif ns.endswith("/"):
        why = "must not end with '/'"
    elif len(ns) > NAMESPACE_MAX_LENGTH:
        why = f"is longer than {NAMESPACE_MAX_LENGTH} characters"
    else:
        for token in ns[1:].split("/"):
            if not token:
                why = "must not contain '//'"
            elif token[0].isdigit():
                why = f"has a name token starting with a digit ({token!r})"
            elif not _NAME_TOKEN.fullmatch(token):
                why = f"has a name token with characters other than letters, digits and '_' ({token!r})"
            if why:
                break
    if why:
        raise ValueError(f"{name} = {namespace!r} is not a ROS namespace: it {why}")
    return ns


#: parameters `robot_parameters` gives each node
TWIN_ARM_PARAMETERS = ("model_path", "servo", "ee_body", "reach.home_pose", "reach.goal_low", "reach.goal_high")
AGENT_ARM_PARAMETERS = ("joint_names", "position_lower", "position_upper", "velocity_limits", "reach.home_pose",
                        "reach.goal_low", "reach.goal_high", "robot_model", "robot_servo", "ee_body")


def robot_parameters(robot: str, servo: str = "", ee_body: str = "",
                     joint_names: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The parameters that point twin_node and agent_node at an arm model (sim/arm_model.py arm_profile):
    model_path, servo, ee_body (twin); joint_names, limits, robot_model (the agent's forward kinematics),
    robot_servo, ee_body (agent); home pose and goal box (both). ``joint_names`` picks the model's joints
    by name, in command order (empty = its actuated joints in actuator order).
    Raises ValueError (ArmModelError) naming the option that fixes the model."""
    from mbpo_ros.sim.arm_model import arm_profile

    path = str(Path(robot).expanduser().resolve())
    prof = arm_profile(path, servo=servo, ee_body=ee_body, joint_names=tuple(joint_names))
    return {"model_path": path, "robot_model": path, "servo": servo, "robot_servo": servo, "ee_body": ee_body,
            "joint_names": list(prof.joint_names),
            "position_lower": list(prof.position_lower), "position_upper": list(prof.position_upper),
            "velocity_limits": list(prof.velocity_limits), "reach.home_pose": list(prof.home_pose),
            "reach.goal_low": list(prof.goal_low), "reach.goal_high": list(prof.goal_high)}


def train_graph(args: TrainArgs) -> list[NodeSpec]:
    """twin_node + agent_node for training against the MuJoCo twin."""
    if args.control_rate <= 0:
        raise ValueError(f"control_rate = {args.control_rate} Hz must be positive")
    if args.real_time_factor < 0:
        raise ValueError(f"real_time_factor = {args.real_time_factor} must be >= 0 (0 = as fast as possible)")
    namespace = check_namespace(args.namespace)
    twin_params: dict[str, Any] = {
        "control_period": 1.0 / float(args.control_rate),
        "real_time_factor": float(args.real_time_factor),
        "lockstep": bool(args.lockstep),
        "seed": int(args.seed),
    }
    arm: dict[str, Any] = robot_parameters(args.robot, args.servo, args.ee_body) if args.robot else {}
    twin_params.update({k: v for k, v in arm.items() if k in TWIN_ARM_PARAMETERS})
    agent_params: dict[str, Any] = {
        "control_rate": float(args.control_rate),
        "use_sim_time": bool(args.use_sim_time),
        "lockstep": bool(args.lockstep),
        "device": args.device,
        "seed": int(args.seed),
        "mode": "train",
        "reset_service": TWIN_RESET_SERVICE,  # relative: the twin in the same namespace
        "task": args.task,
        **{k: v for k, v in arm.items() if k in AGENT_ARM_PARAMETERS},
    }
    if args.learner not in ("local", "remote"):
        raise ValueError(f"learner = {args.learner!r} must be local or remote")
    if args.learner == "remote":
        agent_params["learner"] = "remote"
        if not args.use_sim_time:  # a fleet on one machine: no twin may own a /clock the other arms share
            if args.lockstep or args.real_time_factor != 1.0:
                raise ValueError("learner:=remote with use_sim_time:=false needs real_time_factor:=1 and no lockstep "
                                 "(the twin then stamps with the wall clock)")
            twin_params["publish_clock"] = False
    if args.run_dir:
        agent_params["run_dir"] = str(Path(args.run_dir).expanduser().resolve())
    twin = NodeSpec(
        package=PACKAGE,
        executable="twin_node",
        name="twin_node",
        namespace=namespace,
        params_files=(args.twin_config or config_file("twin.yaml"),),
        parameters=twin_params,
    )
    agent = NodeSpec(
        package=PACKAGE,
        executable="agent_node",
        name="agent_node",
        namespace=namespace,
        params_files=(checked_agent_config(args.config),),
        parameters=agent_params,
        shutdown_grace=_check_grace(args.shutdown_grace),
    )
    return [twin, agent]


def learner_graph(args: LearnerArgs) -> list[NodeSpec]:
    """learner_node alone: the fleet's learner (agents with learner:=remote on the same DDS domain)."""
    params: dict[str, Any] = {"device": args.device, "seed": int(args.seed), "fleet_topic": args.fleet_topic,
                              "checkpoint_period": float(args.checkpoint_period)}
    if args.run_dir:
        params["run_dir"] = str(Path(args.run_dir).expanduser().resolve())
    return [NodeSpec(package=PACKAGE, executable="learner_node", name="learner_node",
                     namespace=check_namespace(args.namespace),
                     params_files=(str(Path(args.config).expanduser().resolve()),) if args.config else (),
                     parameters=params, shutdown_grace=_check_grace(args.shutdown_grace))]


def split_names(text: str) -> list[str]:
    """Comma-separated names (launch argument text) -> list, blanks dropped."""
    return [n.strip() for n in str(text).split(",") if n.strip()]


def limits_file_parameters(path: str) -> dict[str, Any]:
    """The agent_node parameters of a limits file (a params file keyed /**/agent_node: or agent_node:):
    only :data:`LIMIT_PARAMETERS`; ValueError (a ParameterError) naming the file and the key otherwise."""
    from mbpo_ros.nodes.params import NODE_NAME, ParameterError, read_params_file

    path = str(Path(path).expanduser().resolve())
    out: dict[str, Any] = {}
    for key, section in read_params_file(path).items():
        if str(key).rstrip("/").split("/")[-1] != NODE_NAME:
            continue
        params = section.get("ros__parameters") if isinstance(section, dict) else None
        if not isinstance(params, dict):
            raise ParameterError(f"limits file {path}: '{key}' has no ros__parameters mapping")
        for name, value in params.items():
            if name not in LIMIT_PARAMETERS:
                raise ParameterError(f"limits file {path} sets '{name}': a limits file sets only "
                                     f"{', '.join(LIMIT_PARAMETERS)} (put other parameters in config:=)")
            out[name] = [float(v) for v in value] if isinstance(value, list) else value
    if not out:
        raise ParameterError(f"limits file {path} has no /**/{NODE_NAME}: ros__parameters section with "
                             f"{', '.join(LIMIT_PARAMETERS)}")
    return out


def arm_graph(args: ArmArgs) -> list[NodeSpec]:
    """agent_node alone on a real ros2_control arm, in mode train, collect or deploy.

    Parameters, lowest precedence first: ``config`` (the agent's params file), the arm model's joints,
    limits, home pose and goal box (``robot``), the ``limits`` file, the other arguments. The command
    and joint-state topics are remappings of the agent's relative default names, so they match in
    any namespace (a relative "to" side resolves in the namespace too:
    ``/arm1/forward_velocity_controller/commands``).
    """
    if args.mode not in ARM_MODES:
        raise ValueError(f"mode = {args.mode!r} must be train, collect or deploy")
    if args.control_rate <= 0:
        raise ValueError(f"control_rate = {args.control_rate} Hz must be positive")
    if args.command_type not in ("multi_array", "trajectory"):
        raise ValueError(f"command_type = {args.command_type!r} must be multi_array or trajectory")
    if args.learner not in ("local", "remote"):
        raise ValueError(f"learner = {args.learner!r} must be local or remote")
    if args.learner == "remote" and args.mode != "train":
        raise ValueError(f"learner:=remote needs mode:=train (mode {args.mode} does not learn)")
    from mbpo_ros.control.episodes import GOAL_SOURCES

    goal_source = args.goal_source or ("topic" if args.mode == "deploy" else "task")
    if goal_source not in GOAL_SOURCES:
        raise ValueError(f"goal_source = {args.goal_source!r} must be one of {', '.join(GOAL_SOURCES)} (or empty)")
    if goal_source == "task" and args.mode == "deploy":
        raise ValueError("goal_source:=task needs mode:=train or collect: deploy has no episodes and runs toward the "
                         "goal published on goal (goal_source:=topic)")
    namespace = check_namespace(args.namespace)
    run_dir = str(Path(args.run_dir).expanduser().resolve()) if args.run_dir else ""
    params: dict[str, Any] = {}
    if args.robot:
        arm = robot_parameters(args.robot, args.servo, args.ee_body, split_names(args.joint_names))
        params.update({k: v for k, v in arm.items() if k in AGENT_ARM_PARAMETERS})
    elif split_names(args.joint_names):
        params["joint_names"] = split_names(args.joint_names)
    if args.limits:
        limits = limits_file_parameters(args.limits)
        joints = params.get("joint_names")
        for name, value in limits.items():
            if joints and isinstance(value, list) and len(value) != len(joints):
                raise ValueError(f"limits file {args.limits}: {name} has {len(value)} values, the arm has "
                                 f"{len(joints)} joints {joints}")
        params.update(limits)
    params.update({
        "mode": args.mode,
        "task": args.task,
        "command_type": args.command_type,
        "control_rate": float(args.control_rate),
        "use_sim_time": bool(args.use_sim_time),
        "lockstep": False,
        "device": args.device,
        "seed": int(args.seed),
        "reset_service": args.reset_service,
        "allow_extra_joints": bool(args.allow_extra_joints),
        "goal_source": goal_source,
    })
    if args.mode == "deploy":
        if not args.checkpoint:
            raise ValueError("mode:=deploy needs checkpoint:=<run_dir>/checkpoint (a trained run's checkpoint "
                             "directory)")
        params["checkpoint"] = str(Path(args.checkpoint).expanduser().resolve())
    elif args.checkpoint and args.mode == "collect":
        raise ValueError("checkpoint:= is for mode:=deploy (and train, to resume a run); collect takes random actions")
    elif args.checkpoint:  # train: resume the run whose checkpoint this is
        ckpt = Path(args.checkpoint).expanduser().resolve()
        if not ckpt.is_dir():
            raise ValueError(f"checkpoint = {args.checkpoint!r}: no such directory (train resumes the run of an "
                             "existing <run_dir>/checkpoint)")
        if run_dir and Path(run_dir) != ckpt.parent:
            raise ValueError(f"checkpoint = {args.checkpoint!r} is not in run_dir = {args.run_dir!r}: train resumes "
                             "a run from <run_dir>/checkpoint (give one of the two)")
        run_dir = str(ckpt.parent)
    if args.learner == "remote":
        params["learner"] = "remote"
    if run_dir:
        params["run_dir"] = run_dir
    remaps = [(AGENT_COMMAND_TOPIC, args.command_topic), (AGENT_TRAJECTORY_TOPIC, args.trajectory_topic),
              (AGENT_JOINT_STATES_TOPIC, args.joint_states_topic)]
    agent = NodeSpec(
        package=PACKAGE,
        executable="agent_node",
        name="agent_node",
        namespace=namespace,
        params_files=(checked_agent_config(args.config),),
        parameters=params,
        remappings=tuple((a, b) for a, b in remaps if a != b),
        shutdown_grace=_check_grace(args.shutdown_grace),
    )
    return [agent]


def deploy_graph(args: DeployArgs) -> list[NodeSpec]:
    """deploy.launch.py: :func:`arm_graph` in mode deploy (DeployArgs are a subset of ArmArgs). The
    parameters of ArmArgs that deploy.launch.py does not declare (task, allow_extra_joints, goal_source)
    stay the config file's."""
    (agent,) = arm_graph(ArmArgs(mode="deploy", **dataclasses.asdict(args)))
    own = ("task", "allow_extra_joints", "goal_source")
    params = {k: v for k, v in agent.parameters.items() if k not in own}
    return [dataclasses.replace(agent, parameters=params)]


# --------------------------------------------------------------------------- renderers


def param_value(value: Any) -> str:
    """A parameter value as the YAML text `-p name:=value` expects (strings quoted where YAML would retype them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(param_value(v) for v in value) + "]"
    if isinstance(value, str):
        text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
        return text[: -len("...")].strip() if text.endswith("...") else text
    raise TypeError(f"parameter value {value!r} of type {type(value).__name__} has no ROS parameter form")


def to_ros_args(spec: NodeSpec) -> list[str]:
    """``--ros-args`` for starting ``spec`` as a process, in the order launch_ros uses."""
    out = ["--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace:
        out += ["-r", f"__ns:={spec.namespace}"]
    for f in spec.params_files:
        out += ["--params-file", str(f)]
    for key, value in spec.parameters.items():
        out += ["-p", f"{key}:={param_value(value)}"]
    for src, dst in spec.remappings:
        out += ["-r", f"{src}:={dst}"]
    return out


def resolve_executable(spec: NodeSpec) -> list[str]:
    """The argv prefix that starts ``spec.executable``.

    Looks, in order, in ``<prefix>/lib/<package>/`` of each AMENT_PREFIX_PATH entry (a colcon
    install, where ``ros2 run`` looks), beside the running interpreter (pip console scripts),
    on PATH; falls back to ``python -c "from <module> import main; main()"``.
    """
    candidates = [Path(p) / "lib" / spec.package / spec.executable
                  for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    candidates.append(Path(sys.executable).parent / spec.executable)
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return [str(c)]
    found = shutil.which(spec.executable)
    if found:
        return [found]
    module = EXECUTABLE_MODULES.get(spec.executable)
    if module is None:
        raise FileNotFoundError(f"executable {spec.executable!r} of package {spec.package!r} not found")
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


def command_line(spec: NodeSpec) -> list[str]:
    """Full argv to run ``spec`` as a subprocess: executable + :func:`to_ros_args`."""
    return resolve_executable(spec) + to_ros_args(spec)


def launch_node_kwargs(spec: NodeSpec, output: str = "screen") -> dict[str, Any]:
    """The keyword arguments of ``launch_ros.actions.Node`` for ``spec`` (plain data, no launch import).

    ``namespace`` is passed only when the spec has one, so an empty namespace leaves the node where
    the including launch file puts it (e.g. under a ``PushRosNamespace``). ``shutdown_grace`` becomes
    ``sigterm_timeout`` and ``sigkill_timeout`` (launch's ExecuteLocal arguments: seconds after SIGINT
    before SIGTERM, and after SIGTERM before SIGKILL), as text, which launch takes as a substitution.
    """
    kwargs: dict[str, Any] = {
        "package": spec.package,
        "executable": spec.executable,
        "name": spec.name,
        "parameters": [*spec.params_files, dict(spec.parameters)],
        "remappings": [tuple(r) for r in spec.remappings],
        "output": output,
    }
    if spec.namespace:
        kwargs["namespace"] = spec.namespace
    if spec.shutdown_grace > 0:
        kwargs["sigterm_timeout"] = kwargs["sigkill_timeout"] = repr(float(spec.shutdown_grace))
    return kwargs


def to_launch_node(spec: NodeSpec, output: str = "screen"):
    """``launch_ros.actions.Node`` for ``spec`` (needs a full ROS 2 install)."""
    from launch_ros.actions import Node

    return Node(**launch_node_kwargs(spec, output=output))


# --------------------------------------------------------------------------- launch arguments


def launch_arguments(cls: type) -> list[tuple[str, str, str]]:
    """(name, default as launch text, description) for each field of an args dataclass."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default
        text = ("true" if default else "false") if isinstance(default, bool) else str(default)
        out.append((f.name, text, f.metadata.get("doc", "")))
    return out


def parse_bool(text: str, name: str = "value") -> bool:
    """Launch-style boolean text ('true', 'False', '1', 'no', ...) -> bool; ValueError otherwise."""
    t = str(text).strip().lower()
    if t in ("true", "1", "yes", "on"):
        return True
    if t in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"{name} = {text!r} is not a boolean (true/false)")


def args_from_strings(cls: type, values: Mapping[str, str]):
    """Build TrainArgs/DeployArgs from launch-argument strings, typed by the dataclass fields."""
    kwargs: dict[str, Any] = {}
    known = {f.name: f for f in dataclasses.fields(cls)}
    for name, text in values.items():
        f = known.get(name)
        if f is None:
            raise ValueError(f"unknown argument {name!r}; known: {', '.join(known)}")
        kind = type(f.default)
        try:
            if kind is bool:
                kwargs[name] = parse_bool(text, name)
            elif kind is int:
                kwargs[name] = int(text)
            elif kind is float:
                kwargs[name] = float(text)
            else:
                kwargs[name] = str(text)
        except ValueError as exc:
            raise ValueError(f"launch argument {name} = {text!r}: {exc}") from exc
    return cls(**kwargs)


def declare_launch_arguments(cls: type) -> list:
    """``DeclareLaunchArgument`` actions for each field of ``cls`` (needs a full ROS 2 install)."""
    from launch.actions import DeclareLaunchArgument

    return [DeclareLaunchArgument(name, default_value=default, description=doc)
            for name, default, doc in launch_arguments(cls)]


def launch_nodes(cls: type, graph_fn, context, output: str = "screen") -> list:
    """OpaqueFunction body: resolve each LaunchConfiguration of ``cls`` and build the graph's Nodes."""
    from launch.substitutions import LaunchConfiguration

    values = {f.name: LaunchConfiguration(f.name).perform(context) for f in dataclasses.fields(cls)}
    return [to_launch_node(spec, output=output) for spec in graph_fn(args_from_strings(cls, values))]

