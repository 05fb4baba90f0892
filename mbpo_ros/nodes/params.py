"""Config dataclasses <-> ROS parameters: specs, descriptors, declaration and validation.

Three groups of parameters make up `agent_node`'s parameters (config/mbpo.yaml mirrors them):

- every field of `core.config.Config` under its dotted name (`sac.lr`, `mbpo.utd`, `seed`, ...),
  defaults from `core.config.preset("reach")`;
- every field of the task's settings (`config_class` of the task named by `task`: `core.reach.ReachConfig`
  for reach, `core.track.TrackConfig` for track, a plugin's own) as `reach.<field>` (except `control_rate`,
  which is the node's own `control_rate`), with that class's defaults;
- the node's own settings, the fields of `AgentParams` below (joint names, limits, topics, ...).

Each becomes a `ParamSpec` (name, default, doc, range, read-only, choices) and then a ROS
parameter with a `ParameterDescriptor` (description, FloatingPointRange/IntegerRange, read_only).
The algorithm's settings are read-only on the node: the trainer runs in its own process with the
values it was started with, so a live change could not reach it.

`declare_parameters(node)` declares everything, validates each value and raises `ParameterError`
naming the parameter, its value and the allowed range; `AgentSettings` holds the typed result.

`python -m mbpo_ros.nodes.params > config/mbpo.yaml` prints the YAML of the defaults.
"""

from __future__ import annotations

import array
import copy
import dataclasses
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from mbpo_ros.control.controller import ControllerConfig
from mbpo_ros.control.episodes import GOAL_SOURCES
from mbpo_ros.control.inputs import Bounds
from mbpo_ros.control.safety import JointLimits, check_stop_action
from mbpo_ros.core.config import (
    EXIT_BAD_PARAMETER,  # noqa: F401  (re-exported: the one exit code for bad parameters)
    Config,
    ParameterError,
    check_range,
    config_to_dict,
    field_specs,
    param,
    preset,
    type_error,
    unflatten,
    validate,
)
from mbpo_ros.core.reach import ReachConfig, validate_reach_config

NODE_NAME = "agent_node"
#: The params-file key of agent_node's section: the wildcard form applies in any namespace
#: (/agent_node, /arm1/agent_node, /a/b/agent_node), where a bare `agent_node:` applies only at the root.
YAML_KEY = f"/**/{NODE_NAME}"

#: joints of the bundled arm (mbpo_ros/sim/assets/arm6.xml), in command order
DEFAULT_JOINTS = ["shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3"]
#: position limits of the bundled arm's joints (MJCF `range`) [rad]
DEFAULT_LOWER = [-3.0, -2.0, -2.6, -2.6, -3.0, -3.0]
DEFAULT_UPPER = [3.0, 2.0, 2.6, 2.6, 3.0, 3.0]
#: velocity limits of the bundled arm's joints (MJCF velocity actuators' ctrlrange) [rad/s]
DEFAULT_VELOCITY = [3.14] * 6



#: Parameters rclpy itself declares on every node (or reads from a params file): never "unknown".
ROS_PARAMETERS = ("use_sim_time", "start_type_description_service")
ROS_PARAMETER_PREFIXES = ("qos_overrides.",)


def unknown_parameter(name: str, known: Sequence[str], where: str) -> ParameterError:
    """The error for a parameter name nobody declares, suggesting the closest known name (difflib)."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ParameterError(f"parameter '{name}' in {where} is not a parameter of this node{hint}")


class ParamsFileLoader(yaml.SafeLoader):
    """yaml.SafeLoader that also reads ``!!python/tuple`` as a list. launch_ros holds a launch file's list
    parameters as tuples and writes them with yaml.dump into the temporary params file it passes to the
    node (``--params-file /tmp/launch_params_...``), so under ``ros2 launch`` every list parameter
    (joint_names, limits) carries that tag; rcl reads it as a sequence."""


ParamsFileLoader.add_constructor("tag:yaml.org,2002:python/tuple",
                                 lambda loader, node: loader.construct_sequence(node))


def read_params_file(path: str) -> dict[str, Any]:
    """A ROS 2 params file parsed (yaml.safe_load, and the tuples of launch_ros's files as lists);
    ParameterError with the file, line and problem for a syntax error, a missing file or a document
    that is not a mapping."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.load(f, Loader=ParamsFileLoader)  # noqa: S506 - a SafeLoader subclass
    except OSError as exc:
        raise ParameterError(f"params file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParameterError(f"params file {path} is not valid YAML:{where}: {problem}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ParameterError(f"params file {path} is not a mapping of node names to ros__parameters")
    return doc


def check_params_file(path: str, node_name: str, known: Sequence[str]) -> None:
    """Refuse a params file whose section for ``node_name`` names a parameter not in ``known``.

    rclpy silently ignores values for undeclared parameters, so a misspelt ``control_rat`` or
    ``sac.gama`` would run with the default; this raises ParameterError naming the key, the file
    and the closest known name. The sections checked are those keyed to this node by name
    (``/**/agent_node``, ``agent_node``, ``/arm1/agent_node``); wildcard-only sections (``/**``)
    may hold other nodes' parameters and are not checked. Also a syntax error is refused here.
    """
    allowed = set(known) | set(ROS_PARAMETERS)
    for key, params in node_sections(path, node_name):
        for name in _flat_names(params):
            if name not in allowed and not name.startswith(ROS_PARAMETER_PREFIXES):
                raise unknown_parameter(name, sorted(allowed), f"{path} ('{key}')")


def node_sections(path: str, node_name: str) -> list[tuple[str, dict[str, Any]]]:
    """``(key, ros__parameters)`` of every section of a params file keyed to ``node_name`` by name
    (``/**/agent_node``, ``agent_node``, ``/arm1/agent_node``; not wildcard-only ones); ParameterError
    for a syntax error or a section whose ros__parameters is not a mapping."""
    out = []
    for key, section in read_params_file(path).items():
        if str(key).rstrip("/").split("/")[-1] != node_name:
            continue
        params = section.get("ros__parameters") if isinstance(section, dict) else None
        if params is None:
            continue
        if not isinstance(params, dict):
            raise ParameterError(f"params file {path}: '{key}: ros__parameters' is not a mapping")
        out.append((str(key), params))
    return out


def check_command_line_params_files(argv: Sequence[str], node_name: str, known: Sequence[str]) -> None:
    """:func:`check_params_file` for every ``--params-file`` of a node's ``--ros-args`` (what ros2 run
    and ros2 launch pass), under the node's name (``-r __node:=<name>`` when remapped)."""
    for i, a in enumerate(argv):
        if a in ("-r", "--remap") and i + 1 < len(argv) and argv[i + 1].startswith("__node:="):
            node_name = argv[i + 1].split(":=", 1)[1]
    for i, a in enumerate(argv):
        if a == "--params-file" and i + 1 < len(argv):
            check_params_file(argv[i + 1], node_name, known)


def _flat_names(params: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        out.extend(_flat_names(value, f"{name}.") if isinstance(value, dict) else [name])
    return out


def _p(default: Any, doc: str, lo: float | None = None, hi: float | None = None, read_only: bool = True,
       choices: Sequence[str] | None = None):
    """An AgentParams field: core.config.param, read-only unless said otherwise."""
    return param(default, doc, lo, hi, read_only=read_only, choices=choices)


@dataclass
class AgentParams:
    """The agent node's own settings (everything that is not an algorithm hyper-parameter)."""

    mode: str = _p("train", "train: collect and learn; deploy: a checkpoint's policy, no learning; "
                   "collect: log transitions only (random actions)", choices=("train", "deploy", "collect"))
    collect_actions: str = _p("random", "collect mode: random (uniform in [-1, 1]) or sine (a smooth sweep, "
                              "joint j at 0.2 + 0.1 j Hz)", choices=("random", "sine"))
    task: str = _p("reach", "task whose observation, reward and time limit the node uses: reach, track (needs "
                   "goal_source task; no deploy), or a task plugin (entry-point group mbpo_ros.tasks); its settings "
                   "are reach.*: the fields of the task's settings class (track adds reach.radius and reach.speed, "
                   "and its success_threshold defaults to 0.04)")
    goal_source: str = _p("topic", "where each episode's goal comes from: topic (the goal topic: twin_node or "
                          "any external source) or task (the task draws each episode's goal, seeded by seed and the "
                          "episode number, and the node publishes its current target point latched on goal; train and collect "
                          "only)",
                          choices=GOAL_SOURCES)
    joint_names: list = _p(list(DEFAULT_JOINTS), "arm joints in command order; JointState is matched by name")
    position_lower: list = _p(list(DEFAULT_LOWER), "lower position limit per joint [rad]", -100.0, 100.0)
    position_upper: list = _p(list(DEFAULT_UPPER), "upper position limit per joint [rad]", -100.0, 100.0)
    velocity_limits: list = _p(list(DEFAULT_VELOCITY), "velocity limit per joint [rad/s]", 1e-6, 100.0)
    position_margin: float = _p(0.05, "velocity toward a position limit is cut to zero this close to it; "
                                "position targets stay this far inside [rad]", 0.0, 1.0, read_only=False)
    max_velocity_step: float = _p(3.0, "largest change of a joint's velocity command per control step "
                                  "[rad/s per step]", 1e-4, 100.0, read_only=False)
    command_interface: str = _p("velocity", "what the command values mean: joint velocities or positions",
                                choices=("velocity", "position"))
    command_type: str = _p("multi_array", "multi_array: std_msgs/Float64MultiArray on command_topic "
                           "(forward_command_controller); trajectory: trajectory_msgs/JointTrajectory on "
                           "trajectory_topic", choices=("multi_array", "trajectory"))
    command_topic: str = _p("arm_controller/commands", "Float64MultiArray command topic (relative: "
                            "resolved in the node's namespace)")
    trajectory_topic: str = _p("arm_controller/joint_trajectory", "JointTrajectory command topic (relative: "
                               "resolved in the node's namespace)")
    allow_extra_joints: bool = _p(False, "accept JointState messages that also name joints the arm "
                                  "does not control (e.g. a gripper); false rejects them as unknown_joint")
    robot_model: str = _p("", "MJCF or URDF file of the arm: the end-effector position is computed from the "
                          "joint states by its forward kinematics (no ee_pose publisher needed); empty = read ee_pose")
    robot_servo: str = _p("", "with robot_model: servo conversion the model was trained with (velocity, position, "
                          "or empty), as the twin's servo parameter", choices=("", "velocity", "position"))
    ee_body: str = _p("", "with robot_model: body at whose origin the end-effector site is added (as the twin's "
                      "ee_body); empty = the model has the site ee_site")
    ee_site: str = _p("ee_site", "with robot_model: the end-effector site of the model")
    base_frame: str = _p("base_link", "frame of the arm's base: an ee_pose whose frame_id names another frame "
                         "is rejected (empty = not checked)")
    control_rate: float = _p(20.0, "control steps per second [Hz]", 1.0, 1000.0)
    lockstep: bool = _p(False, "one control step per new joint-state stamp instead of a timer; while "
                        "training, wait for the trainer before commanding (deterministic runs)")
    lockstep_train_timeout: float = _p(600.0, "lock-step: longest wait for the trainer's work on one "
                                       "step before going on [s]", 0.1, 1e6)
    state_timeout: float = _p(0.25, "no joint state or ee_pose with a newer stamp for this long = stale (frozen "
                              "stamps too): the watchdog stops the arm [s]", 1e-3, 60.0, read_only=False)
    stale_action: str = _p("zero", "command while the state is stale: zero (velocity interface: the arm stops) "
                           "or hold (position interface only: hold the position)", read_only=False,
                           choices=("zero", "hold"))
    estop_action: str = _p("zero", "command while the e-stop is latched: zero (velocity interface) or hold "
                           "(position interface only: hold the measured position)", read_only=False,
                           choices=("zero", "hold"))
    estop_on_foreign_publisher: bool = _p(False, "engage the e-stop when another node publishes on the command "
                                          "topic (always reported as an ERROR on /diagnostics)", read_only=False)
    max_stamp_ahead: float = _p(5.0, "an input stamped more than this ahead of the node's clock is rejected "
                                "(future_stamp) [s]", 1e-3, 3600.0)
    max_clock_step: float = _p(1.0, "the node's clock moving forward by more than this between two control "
                               "steps is a clock jump (backwards always is): the episode ends [s]", 1e-3, 3600.0)
    max_abs_position: float = _p(100.0, "plausibility bound: a joint position beyond +-this is rejected "
                                 "(implausible) [rad]", 1e-3, 1e6)
    max_abs_velocity: float = _p(100.0, "plausibility bound: a joint velocity beyond +-this is rejected "
                                 "[rad/s]", 1e-3, 1e6)
    max_abs_cartesian: float = _p(100.0, "plausibility bound: an ee_pose or goal coordinate beyond +-this is "
                                  "rejected [m]", 1e-3, 1e6)
    run_dir: str = _p("", "run directory (checkpoint/, transitions/, episodes.csv); empty = "
                      "runs/agent_node under the working directory")
    checkpoint: str = _p("", "deploy mode: checkpoint directory whose policy is run (<run_dir>/checkpoint)")
    checkpoint_period: float = _p(300.0, "seconds between periodic checkpoints while training; 0 = only on "
                                  "shutdown and on request", 0.0, 1e7)
    reset_service: str = _p("twin_node/reset", "std_srvs/Trigger service that resets the simulated arm at "
                            "the end of an episode (relative: resolved in the node's namespace); empty = "
                            "real arm: drive back to reach.home_pose")
    reset_timeout: float = _p(10.0, "longest wait for the reset service or the drive home [s]", 0.1, 600.0)
    home_tolerance: float = _p(0.05, "real arm: the drive home ends when every joint is this close [rad]",
                               1e-4, 1.0)
    log_transitions: bool = _p(True, "append transitions to the rosbag2 directory <run_dir>/transitions/")
    queue_size: int = _p(10000, "bound of the transition queue to the trainer (full: a transition is dropped "
                         "and counted on /diagnostics); the MCAP log has its own queue", 1, 10**7)
    learner: str = _p("local", "train mode: local (the learner is a child process of this node) or remote (a "
                      "learner_node anywhere on the DDS domain: transitions go to it, its policy snapshots come "
                      "back)", choices=("local", "remote"))
    fleet_topic: str = _p("/mbpo_fleet", "learner:=remote: namespace of the fleet topics (learner_node's "
                          "fleet_topic)")
    arm_id: str = _p("", "learner:=remote: this arm's id in the fleet; empty = the node's namespace and name "
                     "(e.g. /arm1/agent_node)")
    policy_age_warn: float = _p(30.0, "learner:=remote: /diagnostics says WARN when the policy is older than this "
                                "(or none came for this long) [s]", 0.1, 1e7, read_only=False)
    fleet_retain: int = _p(100000, "learner:=remote: newest transitions kept in memory for a learner that missed "
                           "them (older ones come from the transition log)", 1, 10**8)


@dataclass
class LearnerParams:
    """learner_node's own settings (the algorithm's are the core.config fields, as on agent_node)."""

    run_dir: str = _p("", "run directory (checkpoint/); empty = runs/learner_node under the working directory")
    fleet_topic: str = _p("/mbpo_fleet", "namespace of the fleet topics: <it>/transitions (agents -> learner), "
                          "<it>/gaps (gap requests) and <it>/policy (snapshots, transient local)")
    checkpoint_period: float = _p(60.0, "seconds between periodic checkpoints; 0 = only on shutdown and on "
                                  "request", 0.0, 1e7)
    snapshot_period: float = _p(0.5, "shortest time between two published policy snapshots [s]", 0.01, 3600.0)
    gap_retry: float = _p(1.0, "an open gap (missing sequence numbers) is asked for again after this long [s]",
                          0.05, 600.0)
    max_request: int = _p(2000, "most transitions asked for per arm and request (the rest follows)", 1, 10**6)
    queue_size: int = _p(100000, "bound of the queue between the node and its trainer child (full: the "
                         "transition is asked for again later)", 1, 10**7)
    diagnostics_period: float = _p(1.0, "period of /diagnostics [wall s]", 0.05, 60.0)


def learner_specs(task: str = "reach") -> list[ParamSpec]:
    """Every learner_node parameter: LearnerParams fields and the core.config fields."""
    out = []
    defaults = LearnerParams()
    for f in dataclasses.fields(LearnerParams):
        m = f.metadata
        out.append(ParamSpec(f.name, _ros_default(getattr(defaults, f.name)), m["doc"], m["lo"], m["hi"],
                             m["read_only"], m["choices"], "node"))
    return out + core_specs(task)


def learner_settings(values: dict[str, Any], task: str = "reach") -> tuple[LearnerParams, Config]:
    """Typed learner_node settings from {name: value}; ParameterError names the parameter at fault."""
    node = LearnerParams(**{f.name: copy.deepcopy(values[f.name]) for f in dataclasses.fields(LearnerParams)})
    if not node.fleet_topic.startswith("/"):
        raise ParameterError(f"parameter 'fleet_topic' = {node.fleet_topic!r} must be absolute (start with /): the "
                             "learner and the agents of every namespace must meet on it")
    try:
        cfg = validate(unflatten({s.name: values[s.name] for s in core_specs(task)}, preset(task)))
    except ValueError as exc:
        raise ParameterError(f"parameter {exc}") from exc
    return node, cfg


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter: name (dotted), default, description, range, read-only flag, choices."""

    name: str
    default: Any
    doc: str
    lo: float | None = None
    hi: float | None = None
    read_only: bool = True
    choices: tuple[str, ...] | None = None
    group: str = "node"  # "node", "core" or "reach"


def _ros_default(value: Any) -> Any:
    """Dataclass default -> a value ROS accepts (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else copy.deepcopy(value)


def core_specs(task: str = "reach") -> list[ParamSpec]:
    """A spec per core.config field; defaults from preset(task). Read-only on the node."""
    defaults = _flat_config(preset(task))
    out = []
    for name, _typ, _default, doc, lo, hi, _ro in field_specs():
        out.append(ParamSpec(name, _ros_default(defaults[name]), f"{doc} (read at start-up)", lo, hi,
                             True, None, "core"))
    return out


def reach_specs(task: str = "reach") -> list[ParamSpec]:
    """A spec `reach.<field>` per field of the task's settings class (`config_class`: ReachConfig, TrackConfig
    with its radius, speed and own success_threshold, a plugin's) except control_rate (the node's own).
    ParameterError for an unknown task."""
    out = []
    for f in dataclasses.fields(agent_task_class(task).config_class):
        if f.name == "control_rate":
            continue
        m = f.metadata
        doc = m.get("doc", f"{task} setting {f.name}")  # a plugin's field may come without param()'s doc
        out.append(ParamSpec(f"reach.{f.name}", _ros_default(f.default), doc, m.get("lo"), m.get("hi"), True, None,
                             "reach"))
    return out


def node_specs() -> list[ParamSpec]:
    """A spec per AgentParams field."""
    out = []
    defaults = AgentParams()
    for f in dataclasses.fields(AgentParams):
        m = f.metadata
        out.append(ParamSpec(f.name, _ros_default(getattr(defaults, f.name)), m["doc"], m["lo"], m["hi"],
                             m["read_only"], m["choices"], "node"))
    return out


def all_specs(task: str = "reach") -> list[ParamSpec]:
    """Every parameter of agent_node running ``task``. Raises RuntimeError if two groups define one name."""
    specs = node_specs() + core_specs() + reach_specs(task)
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise RuntimeError(f"parameter {s.name!r} is defined twice (node, core or reach)")
        seen.add(s.name)
    return specs


def _flat_config(cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config_to_dict(cfg).items():
        if isinstance(value, dict):
            for sub, v in value.items():
                out[f"{key}.{sub}"] = v
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------- validation


def _range_text(spec: ParamSpec) -> str:
    lo = "-inf" if spec.lo is None else repr(spec.lo)
    hi = "inf" if spec.hi is None else repr(spec.hi)
    return f"[{lo}, {hi}]"


def _wrong_type(spec: ParamSpec, value: Any) -> ParameterError:
    """The one wrong-type message (core.config.type_error), with the hint a ROS user needs for doubles."""
    hint = ""
    if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
        hint = " (a floating-point ROS parameter: write 2.0, not 2)"
    return ParameterError(f"parameter {type_error(spec.name, value, spec.default, hint)}")


def check_value(spec: ParamSpec, value: Any) -> Any:
    """Return `value` if it fits `spec`, else raise ParameterError naming the parameter and the rule."""
    default = spec.default
    if isinstance(default, bool) != isinstance(value, bool) or (
        not isinstance(default, bool) and not isinstance(value, type(default))
    ):
        raise _wrong_type(spec, value)
    if isinstance(value, list) and default and len(value) == 0:
        raise ParameterError(f"parameter '{spec.name}' is an empty list ({spec.doc})")
    try:
        check_range(spec.name, value, spec.lo, spec.hi, spec.choices)  # the one range check and message
    except ParameterError as exc:
        raise ParameterError(f"parameter {exc} ({spec.doc})") from None
    return value


@dataclass(frozen=True)
class AgentSettings:
    """The validated, typed parameters of one agent_node start."""

    node: AgentParams
    cfg: Config
    reach: ReachConfig
    values: dict[str, Any]  # every parameter by name, as declared


def agent_task_class(name: str):
    """The task class the agent runs for parameter 'task' (core/arm_task.py registry); ParameterError when
    there is none. Whether its goal can come from the goal topic is `check_task_goals`."""
    from mbpo_ros.core.arm_task import get_task_class

    try:
        return get_task_class(name)
    except ValueError as exc:
        raise ParameterError(f"parameter 'task': {exc}") from exc


def check_task_goals(task_cls, goal_source: str, mode: str, fix: str = "") -> None:
    """ParameterError (one line) when the agent cannot give `task_cls` its goal: a task whose target moves
    (Track) needs goal_source task, and cannot deploy (control/episodes.py check_goal_source)."""
    from mbpo_ros.control.episodes import check_goal_source

    try:
        check_goal_source(task_cls, goal_source, mode, fix)
    except ValueError as exc:
        raise ParameterError(f"parameter {exc}") from exc


def build_settings(values: dict[str, Any]) -> AgentSettings:
    """Typed settings from {name: value} (every spec present), with the cross-parameter checks.

    Raises ParameterError naming the parameter(s) at fault.
    """
    node_vals = {s.name: values[s.name] for s in node_specs()}
    node = AgentParams(**copy.deepcopy(node_vals))
    try:
        cfg = validate(unflatten({s.name: values[s.name] for s in core_specs()}, preset("reach")))
    except ValueError as exc:
        raise ParameterError(f"parameter {exc}") from exc
    task_cls = agent_task_class(node.task)
    reach_kwargs = {}
    for s in reach_specs(node.task):
        v = values[s.name]
        reach_kwargs[s.name.split(".", 1)[1]] = tuple(v) if isinstance(v, list) else v
    reach = task_cls.config_class(control_rate=float(node.control_rate), **reach_kwargs)
    n = len(node.joint_names)
    try:
        validate_reach_config(reach, n)
    except ValueError as exc:
        raise ParameterError(f"parameter {exc}") from exc
    for name in ("position_lower", "position_upper", "velocity_limits"):
        got = len(getattr(node, name))
        if got != n:
            raise ParameterError(f"parameter '{name}' has {got} values, joint_names has {n} joints")
    if len(set(node.joint_names)) != n or any(not j for j in node.joint_names):
        raise ParameterError(f"parameter 'joint_names' = {node.joint_names} has an empty or repeated name")
    for j, (lo, hi) in enumerate(zip(node.position_lower, node.position_upper)):
        if not lo + 2 * node.position_margin < hi:
            raise ParameterError(
                f"joint '{node.joint_names[j]}': position_lower {lo} + 2 * position_margin "
                f"{node.position_margin} is not below position_upper {hi}"
            )
    for name in ("stale_action", "estop_action"):
        try:
            check_stop_action(name, getattr(node, name), node.command_interface)
        except ValueError as exc:
            raise ParameterError(f"parameter {exc}") from exc
    widest = max(abs(x) for x in [*node.position_lower, *node.position_upper])
    if widest >= node.max_abs_position:
        raise ParameterError(f"parameter 'max_abs_position' = {node.max_abs_position} does not exceed the joint "
                             f"limits (|limit| up to {widest}): valid states would be rejected")
    if not node.lockstep and node.max_clock_step <= 1.0 / node.control_rate:
        raise ParameterError(f"parameter 'max_clock_step' = {node.max_clock_step} s does not exceed the control "
                             f"period {1.0 / node.control_rate:g} s: every step would be a clock jump")
    if node.mode == "deploy" and not node.checkpoint:
        raise ParameterError("parameter 'checkpoint' is empty: mode 'deploy' needs a checkpoint directory")
    if node.learner == "remote" and node.lockstep:
        raise ParameterError("parameter 'learner' = remote cannot run lock-step: control never waits for the network")
    if node.learner == "remote" and not node.fleet_topic.startswith("/"):
        raise ParameterError(f"parameter 'fleet_topic' = {node.fleet_topic!r} must be absolute (start with /)")
    check_task_goals(task_cls, node.goal_source, node.mode)
    if node.lockstep and node.mode == "deploy":
        raise ParameterError("parameter 'lockstep' = true needs mode 'train' or 'collect' (a simulated arm)")
    return AgentSettings(node=node, cfg=cfg, reach=reach, values=dict(values))


def controller_config(settings: AgentSettings) -> ControllerConfig:
    """The control.Controller's settings from the node's parameters."""
    p = settings.node
    return ControllerConfig(
        limits=JointLimits(tuple(p.joint_names), p.position_lower, p.position_upper, p.velocity_limits),
        period=1.0 / p.control_rate, command_interface=p.command_interface, position_margin=p.position_margin,
        max_velocity_step=p.max_velocity_step, state_timeout=p.state_timeout, stale_action=p.stale_action,
        estop_action=p.estop_action, mode=p.mode, collect_actions=p.collect_actions,
        init_random_steps=settings.cfg.mbpo.init_random_steps, lockstep=p.lockstep,
        reset_via_service=bool(p.reset_service), reset_timeout=p.reset_timeout, home_tolerance=p.home_tolerance,
        allow_extra_joints=p.allow_extra_joints, bounds=Bounds(p.max_abs_position, p.max_abs_velocity,
                                                               p.max_abs_cartesian),
        max_stamp_ahead=p.max_stamp_ahead, max_clock_step=p.max_clock_step,
        estop_on_foreign_publisher=p.estop_on_foreign_publisher, seed=settings.cfg.seed, goal_source=p.goal_source)


# --------------------------------------------------------------------------- ROS side


def descriptor(spec: ParamSpec):
    """rcl_interfaces ParameterDescriptor for `spec`: description, range, read_only."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    text = spec.doc
    if spec.choices:
        text += f" (one of: {', '.join(spec.choices)})"
    from rclpy.parameter import Parameter

    d = ParameterDescriptor(description=text, read_only=spec.read_only,
                            type=Parameter.Type.from_parameter_value(spec.default).value)
    scalar = spec.default
    if isinstance(scalar, (int, float)) and not isinstance(scalar, bool) and (
        spec.lo is not None or spec.hi is not None
    ):
        if isinstance(scalar, int):
            d.integer_range = [IntegerRange(
                from_value=int(spec.lo) if spec.lo is not None else -(2**63) + 1,
                to_value=int(spec.hi) if spec.hi is not None else 2**63 - 1, step=0)]
        else:
            d.floating_point_range = [FloatingPointRange(
                from_value=float(spec.lo) if spec.lo is not None else -sys.float_info.max,
                to_value=float(spec.hi) if spec.hi is not None else sys.float_info.max, step=0.0)]
    elif isinstance(scalar, list) and (spec.lo is not None or spec.hi is not None):
        d.additional_constraints = f"every element in {_range_text(spec)}"
    if spec.choices:
        d.additional_constraints = f"one of: {', '.join(spec.choices)}"
    return d


def declare_specs(node, specs: Sequence[ParamSpec]) -> dict[str, Any]:
    """Declare ``specs`` on ``node`` (both nodes use this one loop); returns {name: checked value}.

    Each parameter is declared with its type and description first, its value checked against
    the spec (so the error names it), then its full descriptor (range, read_only) is set.
    Raises ParameterError (a ValueError) with a message naming the first bad parameter.
    """
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    values: dict[str, Any] = {}
    for spec in specs:
        try:
            p = node.declare_parameter(spec.name, spec.default, ParameterDescriptor(description=spec.doc))
        except InvalidParameterTypeException as exc:
            # rclpy keeps the refused override only in its message ("... to '<value>' of type ...").
            found = re.search(r"to '(.*)' of type", str(exc))
            try:
                value = yaml.safe_load(found.group(1)) if found else "?"
            except yaml.YAMLError:
                value = found.group(1)
            raise _wrong_type(spec, value) from exc
        except InvalidParameterValueException as exc:
            raise ParameterError(f"parameter '{spec.name}': {exc}") from exc
        value = p.value
        if isinstance(value, (tuple, array.array)):
            value = list(value)
        values[spec.name] = check_value(spec, value)
        node.set_descriptor(spec.name, descriptor(spec))
    return values


def declare_parameters(node) -> AgentSettings:
    """Declare every agent_node parameter on `node`, validate, return the typed settings.

    `task` is declared first: the `reach.*` settings it has (and their defaults) depend on it."""
    values = declare_specs(node, [s for s in node_specs() if s.name == "task"])
    values.update(declare_specs(node, [s for s in all_specs(values["task"]) if s.name != "task"]))
    return build_settings(values)


# --------------------------------------------------------------------------- YAML


def report_bad_parameter(node_name: str, exc: BaseException) -> int:
    """The one way a node refuses its parameters: ``<node>: <message>`` on stderr (one line, no
    traceback); returns EXIT_BAD_PARAMETER for ``main()`` to exit with."""
    print(f"{node_name}: {exc}", file=sys.stderr, flush=True)
    return EXIT_BAD_PARAMETER


def agent_parameter_names() -> list[str]:
    """Every parameter name agent_node declares for some task (for :func:`check_params_file`, which reads
    a params file before the node knows its task): the union over the registry's tasks. A task whose
    plugin does not load adds nothing here; selecting it is refused when the node declares."""
    from mbpo_ros.core.arm_task import task_names

    names = {s.name for s in all_specs()}
    for task in task_names():
        try:
            names.update(s.name for s in reach_specs(task))
        except ParameterError:
            continue
    return sorted(names)


def default_yaml_dict(task: str = "reach") -> dict[str, Any]:
    """{"/**/agent_node": {"ros__parameters": nested defaults}}, the shape of config/mbpo.yaml."""
    params: dict[str, Any] = {}
    for spec in all_specs(task):
        cur = params
        parts = spec.name.split(".")
        for part in parts[:-1]:
            cur = cur.setdefault(part, {})
        cur[parts[-1]] = spec.default
    return {YAML_KEY: {"ros__parameters": params}}


def flatten_yaml_params(doc: dict[str, Any], node_name: str = NODE_NAME) -> dict[str, Any]:
    """{dotted name: value} of the `ros__parameters` of `node_name`'s section of a parsed params file.

    The section is looked up under the wildcard key `/**/<node_name>` (what config/*.yaml use), then
    under the bare `<node_name>` and `/<node_name>` (root-namespace keys).
    """
    keys = (f"/**/{node_name}", node_name, f"/{node_name}")
    params = None
    for key in keys:
        section = doc.get(key) if isinstance(doc, dict) else None
        if isinstance(section, dict) and "ros__parameters" in section:
            params = section["ros__parameters"]
            break
    if not isinstance(params, dict):
        raise ValueError(f"params file has no '{keys[0]}: ros__parameters:' section")
    out: dict[str, Any] = {}

    def walk(prefix: str, d: dict[str, Any]) -> None:
        for key, value in d.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(f"{name}.", value)
            else:
                out[name] = value

    walk("", params)
    return out


def _yaml_scalar(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def default_yaml_text(task: str = "reach") -> str:
    """config/mbpo.yaml text of the defaults: one `name: value  # doc [range]` line per parameter,
    nested by section (ensemble, sac, mbpo, reach) as ROS 2 params files allow."""
    lines = [f"{YAML_KEY}:", "  ros__parameters:"]
    section = None
    for spec in all_specs(task):
        head, _, key = spec.name.rpartition(".")
        if head != section:
            section = head
            if head:
                lines.append(f"    {head}:")
        indent = "      " if head else "    "
        note = spec.doc
        if spec.lo is not None or spec.hi is not None:
            note += f" {_range_text(spec)}"
        if spec.choices:
            note += f" (one of: {', '.join(spec.choices)})"
        lines.append(f"{indent}{key}: {_yaml_scalar(spec.default)}  # {note}")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Print the default params file (YAML) to stdout."""

    sys.stdout.write("# agent_node parameters: generated by `python -m mbpo_ros.nodes.params`, then tuned.\n")
    sys.stdout.write("# Names mirror mbpo_ros/core/config.py (ensemble.*, sac.*, mbpo.*, seed, device, threads),\n")
    sys.stdout.write("# mbpo_ros/core/reach.py (reach.*) and AgentParams in mbpo_ros/nodes/params.py.\n")
    sys.stdout.write("# The key /**/agent_node applies to an agent_node in any namespace (/agent_node, /arm1/agent_node).\n")
    sys.stdout.write(default_yaml_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
