"""graph.py: one description of the node graphs, rendered for subprocesses and for ros2 launch.

The `--ros-args` rendering is checked by rclpy's own argument parser (a node created in a
context initialised with those arguments gets the name, namespace, parameter overrides and
remappings the spec asks for), not by comparing strings with themselves.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import py_compile
import re
from pathlib import Path

import pytest

from mbpo_ros import graph
from mbpo_ros.graph import DeployArgs, NodeSpec, TrainArgs

#: a real agent params file: graph checks it (syntax, unknown keys) before any node starts
AGENT_YAML = graph.config_file("mbpo.yaml")

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILES = ["train.launch.py", "deploy.launch.py", "arm.launch.py", "learner.launch.py"]


def _load_launch_module(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), REPO / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_file_compiles_and_uses_standard_api_only(name):
    path = REPO / "launch" / name
    py_compile.compile(str(path), doraise=True)
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
    assert imported <= {"launch", "launch_ros", "mbpo_ros", "ament_index_python"}, imported
    funcs = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs


@pytest.mark.parametrize(("name", "cls"), [("train.launch.py", TrainArgs), ("deploy.launch.py", DeployArgs),
                                           ("learner.launch.py", graph.LearnerArgs), ("arm.launch.py", graph.ArmArgs)])
def test_generate_launch_description_where_launch_exists(name, cls):
    launch = pytest.importorskip("launch", reason="launch comes with a full ROS 2 install")
    pytest.importorskip("launch_ros", reason="launch_ros comes with a full ROS 2 install")
    ld = _load_launch_module(name).generate_launch_description()
    assert isinstance(ld, launch.LaunchDescription)
    declared = {a.name: a.default_value for a in ld.get_launch_arguments()}
    assert set(declared) == {f.name for f in dataclasses.fields(cls)}


def test_launch_arguments_mirror_the_dataclass_defaults():
    for cls in (TrainArgs, DeployArgs, graph.LearnerArgs, graph.ArmArgs):
        rows = graph.launch_arguments(cls)
        assert [r[0] for r in rows] == [f.name for f in dataclasses.fields(cls)]
        parsed = graph.args_from_strings(cls, {name: default for name, default, _ in rows})
        assert parsed == cls(), f"{cls.__name__}: launch defaults do not parse back to the dataclass defaults"
        assert all(doc for _, _, doc in rows), f"{cls.__name__}: every launch argument needs a description"


def test_train_args_are_the_issue_arguments():
    names = {f.name for f in dataclasses.fields(TrainArgs)}
    for required in ("robot", "config", "control_rate", "use_sim_time", "real_time_factor",
                     "lockstep", "device", "run_dir", "seed"):
        assert required in names


def test_args_from_strings_types_and_errors():
    a = graph.args_from_strings(TrainArgs, {"lockstep": "True", "seed": "7", "control_rate": "50",
                                            "real_time_factor": "0"})
    assert a.lockstep is True and a.seed == 7 and a.control_rate == 50.0 and a.real_time_factor == 0.0
    with pytest.raises(ValueError, match="lockstep"):
        graph.args_from_strings(TrainArgs, {"lockstep": "maybe"})
    with pytest.raises(ValueError, match="unknown argument 'robto'"):
        graph.args_from_strings(TrainArgs, {"robto": "x"})


def test_share_dir_falls_back_to_the_source_tree_config():
    share = graph.share_dir()
    assert (share / "config").is_dir()
    assert Path(graph.bundled_robot()).name == "arm6.xml"


def _train_specs(**kw):
    # Explicit params files so that these tests do not depend on the YAML files' presence.
    return graph.train_graph(TrainArgs(config=AGENT_YAML, twin_config="/tmp/twin.yaml", **kw))


def test_train_graph_content():
    twin, agent = _train_specs(control_rate=50.0, lockstep=True, seed=3, run_dir="runs/x", robot=graph.bundled_robot())
    assert (twin.executable, twin.name, agent.executable, agent.name) == (
        "twin_node", "twin_node", "agent_node", "agent_node")
    assert twin.params_files == ("/tmp/twin.yaml",) and agent.params_files == (AGENT_YAML,)
    assert twin.parameters["control_period"] == pytest.approx(0.02)
    assert agent.parameters["control_rate"] == 50.0
    assert twin.parameters["lockstep"] is True and agent.parameters["lockstep"] is True
    assert twin.parameters["seed"] == agent.parameters["seed"] == 3
    assert Path(agent.parameters["run_dir"]).is_absolute()
    assert Path(twin.parameters["model_path"]).is_absolute()
    # the arm's joints and limits go to the agent, its home pose and goal box to both nodes
    assert agent.parameters["joint_names"][0] == "shoulder_pan" and len(agent.parameters["position_lower"]) == 6
    for key in ("reach.home_pose", "reach.goal_low", "reach.goal_high"):
        assert twin.parameters[key] == agent.parameters[key]
    with pytest.raises(ValueError, match="does not exist"):
        _train_specs(robot="no_such_arm.urdf")
    assert agent.parameters["reset_service"] == "twin_node/reset"  # relative: the twin in the agent's namespace
    assert twin.namespace == agent.namespace == "", "default: the root namespace"
    assert "use_sim_time" not in twin.parameters, "the twin owns time; it must not follow /clock"
    with pytest.raises(ValueError, match="control_rate"):
        _train_specs(control_rate=0.0)


def test_deploy_graph_remaps_to_ros2_control():
    (agent,) = graph.deploy_graph(DeployArgs(checkpoint="ck", config=AGENT_YAML,
                                             joint_names="a, b,c", joint_states_topic="/arm/joint_states"))
    assert agent.parameters["mode"] == "deploy"
    assert Path(agent.parameters["checkpoint"]).is_absolute()
    assert agent.parameters["joint_names"] == ["a", "b", "c"]
    assert agent.parameters["reset_service"] == ""
    assert agent.parameters["command_type"] == "multi_array"
    remaps = dict(agent.remappings)
    # Relative on both sides: the rules match, and land, in whatever namespace the agent runs in.
    assert remaps["arm_controller/commands"] == "forward_velocity_controller/commands"
    assert remaps["arm_controller/joint_trajectory"] == "joint_trajectory_controller/joint_trajectory"
    assert remaps["joint_states"] == "/arm/joint_states"
    (agent,) = graph.deploy_graph(DeployArgs(checkpoint="ck", config=AGENT_YAML))
    assert "joint_states" not in dict(agent.remappings), "no identity remapping"
    with pytest.raises(ValueError, match="checkpoint"):
        graph.deploy_graph(DeployArgs(config=AGENT_YAML))
    with pytest.raises(ValueError, match="command_type"):
        graph.deploy_graph(DeployArgs(checkpoint="ck", config=AGENT_YAML, command_type="bogus"))


def test_agent_default_topics_are_the_remap_sources():
    """The deploy remappings' "from" sides are agent_node's own (relative) default names."""
    from mbpo_ros.nodes.params import AgentParams

    defaults = AgentParams()
    assert graph.AGENT_COMMAND_TOPIC == defaults.command_topic
    assert graph.AGENT_TRAJECTORY_TOPIC == defaults.trajectory_topic
    assert graph.TWIN_RESET_SERVICE == defaults.reset_service
    for name in (graph.AGENT_COMMAND_TOPIC, graph.AGENT_TRAJECTORY_TOPIC, graph.AGENT_JOINT_STATES_TOPIC,
                 graph.FORWARD_VELOCITY_TOPIC, graph.JOINT_TRAJECTORY_TOPIC, graph.TWIN_RESET_SERVICE):
        assert not name.startswith("/"), f"{name} must be relative to resolve in the graph's namespace"


@pytest.mark.parametrize("cls", [TrainArgs, DeployArgs])
def test_namespace_argument_reaches_every_node(cls):
    assert "namespace" in {f.name for f in dataclasses.fields(cls)}
    assert cls().namespace == ""
    base = {"checkpoint": "ck"} if cls is DeployArgs else {"twin_config": "/tmp/twin.yaml"}
    build = graph.deploy_graph if cls is DeployArgs else graph.train_graph
    args = graph.args_from_strings(cls, {**base, "config": AGENT_YAML, "namespace": "/arm1"})
    specs = build(args)
    assert specs and all(s.namespace == "/arm1" for s in specs)
    for spec in specs:
        argv = graph.to_ros_args(spec)
        i = argv.index("__ns:=/arm1")
        assert argv[i - 1] == "-r"
        kwargs = graph.launch_node_kwargs(spec)
        assert kwargs["namespace"] == "/arm1" and kwargs["name"] == spec.name
    # Root namespace: no __ns rule and no namespace keyword (a PushRosNamespace around the include applies).
    for ns in ("", "/"):
        for spec in build(dataclasses.replace(args, namespace=ns)):
            assert spec.namespace == ""
            assert not any(a.startswith("__ns:=") for a in graph.to_ros_args(spec))
            assert "namespace" not in graph.launch_node_kwargs(spec)


BAD_NAMESPACES = ["arm1", "/arm1/", "/1arm", "/arm-1", "/arm 1", "//arm1", "/a//b", "/~/x", "/{ns}"]


@pytest.mark.parametrize("bad", BAD_NAMESPACES)
def test_invalid_namespace_is_rejected_naming_the_argument(bad):
    with pytest.raises(ValueError, match=r"^namespace = .* is not a ROS namespace"):
        graph.train_graph(TrainArgs(config=AGENT_YAML, twin_config="/tmp/twin.yaml", namespace=bad))
    with pytest.raises(ValueError, match=r"^namespace = .* is not a ROS namespace"):
        graph.deploy_graph(DeployArgs(checkpoint="ck", config=AGENT_YAML, namespace=bad))


def test_check_namespace_agrees_with_rclpy():
    validate = pytest.importorskip("rclpy.validate_namespace").validate_namespace
    for ns in [*BAD_NAMESPACES, "/arm1", "/robots/arm_1", "/_a/b9", "/a__b", "/" + "a" * 244, "/" + "a" * 245]:
        try:
            validate(ns)
            ok = True
        except Exception:  # rclpy's InvalidNamespaceException
            ok = False
        try:
            graph.check_namespace(ns)
            ours = True
        except ValueError:
            ours = False
        assert ours == ok, f"{ns[:40]!r} ({len(ns)} chars): rclpy says valid={ok}, check_namespace says {ours}"


def test_to_ros_args_layout():
    spec = NodeSpec(package="mbpo_ros", executable="agent_node", name="agent_node", namespace="/ns",
                    params_files=("/p.yaml",), parameters={"a": 1, "b": "x"}, remappings=(("/x", "/y"),))
    assert graph.to_ros_args(spec) == ["--ros-args", "-r", "__node:=agent_node", "-r", "__ns:=/ns",
                                       "--params-file", "/p.yaml", "-p", "a:=1", "-p", "b:=x", "-r", "/x:=/y"]


def test_param_values_keep_their_types():
    assert graph.param_value(True) == "true"
    assert graph.param_value(2) == "2"
    assert graph.param_value(20.0) == "20.0"
    assert graph.param_value("1.5") == "'1.5'"  # a string that YAML would read as a float
    assert graph.param_value("") == "''"
    assert graph.param_value(["j1", "j2"]) == "[j1, j2]"
    with pytest.raises(TypeError):
        graph.param_value(object())


def test_command_line_finds_the_executables():
    for exe in ("twin_node", "agent_node"):
        argv = graph.resolve_executable(NodeSpec(package="mbpo_ros", executable=exe, name=exe))
        assert argv, exe
        assert re.search(exe, " ".join(argv)) or "mbpo_ros.nodes" in " ".join(argv)


@pytest.mark.ros
def test_rclpy_parses_the_rendered_ros_args(tmp_path, ros_domain):
    """rclpy applies name, namespace, params file, typed overrides and remaps exactly as rendered."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    params = tmp_path / "p.yaml"
    params.write_text("/team/probe_node:\n  ros__parameters:\n    from_file: 5\n    overridden: 1.0\n")
    spec = NodeSpec(package="mbpo_ros", executable="x", name="probe_node", namespace="/team",
                    params_files=(str(params),),
                    parameters={"overridden": 2.5, "flag": True, "label": "1.5", "names": ["j1", "j2"], "n": 3},
                    remappings=(("/arm_controller/commands", "/forward_velocity_controller/commands"),))
    ctx = rclpy.Context()
    rclpy.init(args=["prog", *graph.to_ros_args(spec)], context=ctx, domain_id=ros_domain)
    try:
        node = rclpy.create_node("some_other_name", context=ctx)
        assert node.get_name() == "probe_node"
        assert node.get_namespace() == "/team"
        node.declare_parameter("from_file", 0)
        node.declare_parameter("overridden", 0.0)
        node.declare_parameter("flag", False)
        node.declare_parameter("label", "")
        node.declare_parameter("names", Parameter.Type.STRING_ARRAY)
        node.declare_parameter("n", 0)
        assert node.get_parameter("from_file").value == 5
        assert node.get_parameter("overridden").value == 2.5
        assert node.get_parameter("flag").value is True
        assert node.get_parameter("label").value == "1.5"
        assert list(node.get_parameter("names").value) == ["j1", "j2"]
        assert node.get_parameter("n").value == 3
        from std_msgs.msg import Float64MultiArray

        pub = node.create_publisher(Float64MultiArray, "/arm_controller/commands", 1)
        assert pub.topic_name == "/forward_velocity_controller/commands"
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


@pytest.mark.ros
def test_namespaced_deploy_args_resolve_and_remap_inside_the_namespace(tmp_path, ros_domain):
    """deploy_graph(namespace=/arm1) rendered as --ros-args: rclpy puts agent_node in /arm1, applies the
    shipped YAML's `/**/agent_node:` section there, and the relative remap rules match the agent's
    relative names inside the namespace (ROS 2 expands a rule's "from" in the node's namespace)."""
    rclpy = pytest.importorskip("rclpy")
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory

    text = (REPO / "config" / "mbpo.yaml").read_text()
    assert "\n    max_velocity_step: 3.0  #" in text
    tuned = tmp_path / "mbpo.yaml"
    tuned.write_text(text.replace("\n    max_velocity_step: 3.0  #", "\n    max_velocity_step: 1.25  #"))
    (spec,) = graph.deploy_graph(DeployArgs(checkpoint="ck", config=str(tuned), namespace="/arm1",
                                            joint_states_topic="arm/joint_states"))
    ctx = rclpy.Context()
    rclpy.init(args=["prog", *graph.to_ros_args(spec)], context=ctx, domain_id=ros_domain)
    try:
        node = rclpy.create_node("some_other_name", context=ctx)
        assert (node.get_namespace(), node.get_name()) == ("/arm1", "agent_node")
        assert node.declare_parameter("max_velocity_step", 0.0).value == 1.25, "YAML section not applied"
        assert node.declare_parameter("mode", "").value == "deploy"
        cmd = node.create_publisher(Float64MultiArray, "arm_controller/commands", 1)
        traj = node.create_publisher(JointTrajectory, "arm_controller/joint_trajectory", 1)
        js = node.create_subscription(JointState, "joint_states", lambda _m: None, 1)
        other = node.create_subscription(JointState, "goal", lambda _m: None, 1)
        assert cmd.topic_name == "/arm1/forward_velocity_controller/commands"
        assert traj.topic_name == "/arm1/joint_trajectory_controller/joint_trajectory"
        assert js.topic_name == "/arm1/arm/joint_states"
        assert other.topic_name == "/arm1/goal"
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_processes_started_for_tests_and_benchmarks_discover_on_this_host_only():
    env = graph.local_env({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "PATH": "/bin"}, ROS_DOMAIN_ID="7")
    assert env == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "PATH": "/bin", "ROS_DOMAIN_ID": "7"}
    # conftest.py sets it for the whole session, so every child process of every test inherits it.
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"


@pytest.mark.parametrize("cls", [TrainArgs, DeployArgs])
def test_agent_gets_the_shutdown_grace_in_launch_and_in_the_subprocess_twin(cls):
    """Regression (issue 11): under ros2 launch, agent_node got launch's default 5 s after Ctrl-C, then
    SIGTERM, then SIGKILL 5 s later: a long run's final checkpoint did not fit. The grace is a launch
    argument, passed to launch_ros Node as sigterm_timeout/sigkill_timeout, and the subprocess twin
    (mbpo-ros train, the tests) stops the nodes with the same sequence."""
    base = {"checkpoint": "ck"} if cls is DeployArgs else {"twin_config": "/tmp/twin.yaml"}
    build = graph.deploy_graph if cls is DeployArgs else graph.train_graph
    assert cls().shutdown_grace == graph.SHUTDOWN_GRACE_S > 3 * graph.LAUNCH_DEFAULT_GRACE_S
    specs = {s.name: s for s in build(graph.args_from_strings(cls, {**base, "config": AGENT_YAML,
                                                                     "shutdown_grace": "45"}))}
    kwargs = graph.launch_node_kwargs(specs["agent_node"])
    assert kwargs["sigterm_timeout"] == kwargs["sigkill_timeout"] == "45.0"
    assert specs["agent_node"].stop_sequence() == [("SIGINT", 45.0), ("SIGTERM", 45.0), ("SIGKILL", 10.0)]
    if "twin_node" in specs:  # the twin has nothing to save: launch's defaults
        assert "sigterm_timeout" not in graph.launch_node_kwargs(specs["twin_node"])
        assert specs["twin_node"].stop_sequence()[0] == ("SIGINT", graph.LAUNCH_DEFAULT_GRACE_S)
    with pytest.raises(ValueError, match="shutdown_grace = -1.0 s must be >= 0"):
        build(graph.args_from_strings(cls, {**base, "config": AGENT_YAML, "shutdown_grace": "-1"}))


def test_fleet_graph_description():
    """learner:=remote: the agent is told so; without sim time the twin stamps with the wall clock (no /clock)."""
    twin, agent = graph.train_graph(TrainArgs(config=AGENT_YAML, twin_config="/tmp/twin.yaml", learner="remote",
                                              use_sim_time=False, namespace="/arm1"))
    assert agent.parameters["learner"] == "remote" and twin.parameters["publish_clock"] is False
    assert twin.namespace == agent.namespace == "/arm1"
    local_twin, local_agent = graph.train_graph(TrainArgs(config=AGENT_YAML, twin_config="/tmp/twin.yaml"))
    assert "learner" not in local_agent.parameters and "publish_clock" not in local_twin.parameters
    with pytest.raises(ValueError, match="real_time_factor:=1"):
        graph.train_graph(TrainArgs(config=AGENT_YAML, learner="remote", use_sim_time=False, real_time_factor=0.0))
    with pytest.raises(ValueError, match="learner = 'far'"):
        graph.train_graph(TrainArgs(config=AGENT_YAML, learner="far"))
    learner, = graph.learner_graph(graph.LearnerArgs(device="cuda", run_dir="/tmp/fleet"))
    assert (learner.executable, learner.name, learner.params_files) == ("learner_node", "learner_node", ())
    assert learner.parameters["device"] == "cuda" and learner.parameters["fleet_topic"] == "/mbpo_fleet"
    assert learner.shutdown_grace == graph.SHUTDOWN_GRACE_S  # time for the final checkpoint under launch
    args = graph.to_ros_args(learner)
    assert "device:=cuda" in args and "__node:=learner_node" in " ".join(args)
