"""nodes/params.py: the config dataclasses <-> ROS parameters, and config/mbpo.yaml mirroring them."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from test_agent_support import PARAMS

from mbpo_ros.core.config import field_specs, preset
from mbpo_ros.core.reach import ReachConfig
from mbpo_ros.nodes.params import (
    AgentParams,
    ParameterError,
    all_specs,
    build_settings,
    check_value,
    default_yaml_dict,
    default_yaml_text,
    flatten_yaml_params,
)


def _yaml_params():
    return flatten_yaml_params(yaml.safe_load(PARAMS.read_text()))


def test_yaml_mirrors_the_dataclasses():
    """config/mbpo.yaml has exactly one entry per dataclass field (core, reach, node), nothing else."""
    got = _yaml_params()
    expected = {s.name for s in all_specs()}
    core = {name for name, *_ in field_specs()}
    reach = {f"reach.{f.name}" for f in dataclasses.fields(ReachConfig) if f.name != "control_rate"}
    node = {f.name for f in dataclasses.fields(AgentParams)}
    assert expected == core | reach | node
    missing, extra = expected - set(got), set(got) - expected
    assert not missing and not extra, (
        f"config/mbpo.yaml is out of date: missing {sorted(missing)}, unknown {sorted(extra)}; "
        "regenerate with `python -m mbpo_ros.nodes.params > config/mbpo.yaml` and re-apply tuned values"
    )


def test_yaml_applies_in_any_namespace():
    """config/mbpo.yaml is keyed `/**/agent_node:` (any namespace), as the generator writes it; a bare
    `agent_node:` key would apply only to /agent_node and leave a namespaced agent on its defaults."""
    assert list(yaml.safe_load(PARAMS.read_text())) == ["/**/agent_node"]
    assert list(default_yaml_dict()) == ["/**/agent_node"]
    assert list(yaml.safe_load(default_yaml_text())) == ["/**/agent_node"]
    bare = {"agent_node": {"ros__parameters": {"sac": {"lr": 0.1}}}}
    assert flatten_yaml_params(bare) == {"sac.lr": 0.1}  # root-namespace keys are still read
    with pytest.raises(ValueError, match="/\\*\\*/agent_node"):
        flatten_yaml_params({"twin_node": {"ros__parameters": {}}})


def test_yaml_values_have_the_fields_types_and_ranges():
    got = _yaml_params()
    for spec in all_specs():
        check_value(spec, got[spec.name])  # raises ParameterError naming the parameter
    settings = build_settings(got)
    assert settings.cfg.mbpo.utd == got["mbpo.utd"]
    assert settings.reach.control_rate == got["control_rate"]
    assert settings.node.joint_names == got["joint_names"]


def test_yaml_reward_matches_the_trainers_reach_task():
    """The trainer process's model rollouts use ReachTask() with its defaults: the node's reward
    (from reach.* in config/mbpo.yaml) must be the same function, or the model and the real data
    disagree. Regenerate the file when ReachConfig's defaults change."""
    from mbpo_ros.nodes.agent_node import REWARD_FIELDS

    got = _yaml_params()
    default = ReachConfig()
    for name in REWARD_FIELDS:
        assert got[f"reach.{name}"] == getattr(default, name), (
            f"config/mbpo.yaml reach.{name} = {got[f'reach.{name}']} but ReachConfig().{name} = "
            f"{getattr(default, name)}: regenerate with `python -m mbpo_ros.nodes.params > config/mbpo.yaml`"
        )


def test_defaults_are_the_reach_preset():
    flat = {s.name: s.default for s in all_specs() if s.group == "core"}
    cfg = preset("reach")
    assert flat["mbpo.init_random_steps"] == cfg.mbpo.init_random_steps
    assert flat["sac.lr"] == cfg.sac.lr
    assert default_yaml_dict()["/**/agent_node"]["ros__parameters"]["mbpo"]["utd"] == cfg.mbpo.utd


@pytest.mark.parametrize(
    "name,value,words",
    [
        ("sac.lr", -1.0, ["sac.lr", "-1.0", "[1e-06, 1.0]"]),
        ("control_rate", 0.5, ["control_rate", "[1.0, 1000.0]"]),
        ("control_rate", 20, ["control_rate", "floating-point"]),
        ("mode", "fly", ["mode", "train", "deploy", "collect"]),
        ("velocity_limits", [1.0, -1.0, 1, 1, 1, 1], ["velocity_limits"]),
    ],
)
def test_check_value_names_the_parameter(name, value, words):
    spec = next(s for s in all_specs() if s.name == name)
    with pytest.raises(ParameterError) as info:
        check_value(spec, value)
    for w in words:
        assert w in str(info.value)


def test_cross_parameter_checks():
    base = {s.name: s.default for s in all_specs()}
    with pytest.raises(ParameterError, match="'position_upper' has 5 values, joint_names has 6"):
        build_settings({**base, "position_upper": [1.0] * 5})
    with pytest.raises(ParameterError, match="stale_action.*position"):
        build_settings({**base, "command_interface": "position"})
    with pytest.raises(ParameterError, match="checkpoint"):
        build_settings({**base, "mode": "deploy"})
    with pytest.raises(ParameterError, match="num_elites"):
        build_settings({**base, "ensemble.num_elites": 9})
    with pytest.raises(ParameterError, match="home_pose"):
        build_settings({**base, "reach.home_pose": [0.0] * 5})


@pytest.mark.ros
def test_declared_with_descriptors(ros_context):
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from mbpo_ros.nodes.params import declare_parameters

    node = Node("agent_node", context=ros_context,
                parameter_overrides=[Parameter("sac.lr", value=1e-3), Parameter("control_rate", value=100.0)])
    try:
        settings = declare_parameters(node)
        assert settings.cfg.sac.lr == 1e-3
        assert settings.node.control_rate == 100.0 and settings.reach.control_rate == 100.0
        d = node.describe_parameter("sac.lr")
        assert d.read_only and "learning rate" in d.description
        assert d.floating_point_range[0].from_value == pytest.approx(1e-6)
        assert d.floating_point_range[0].to_value == pytest.approx(1.0)
        d = node.describe_parameter("mbpo.utd")
        assert d.integer_range[0].from_value == 0 and d.integer_range[0].to_value == 10_000
        d = node.describe_parameter("state_timeout")
        assert not d.read_only  # a live change is safe and applied
        assert "stale" in d.description
        d = node.describe_parameter("stale_action")
        assert "zero" in d.additional_constraints and "hold" in d.additional_constraints
        assert node.get_parameter("reach.home_pose").value == list(ReachConfig().home_pose)
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_track_settings_are_the_tasks_own_on_the_node(ros_context):
    """Regression: agent_node declared only Reach's settings, so `task:=track` ran with Reach's 3 cm success
    threshold (the gym env and `mbpo-ros eval` use Track's 4 cm) and its circle's radius and speed could not
    be set. The task's own settings class decides the `reach.*` parameters and their defaults."""
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from mbpo_ros.core.track import TrackConfig
    from mbpo_ros.nodes.params import agent_parameter_names, declare_parameters

    track = [Parameter("task", value="track"), Parameter("goal_source", value="task")]
    node = Node("agent_node", context=ros_context, parameter_overrides=track)
    try:
        settings = declare_parameters(node)
        assert isinstance(settings.reach, TrackConfig)
        assert settings.reach.success_threshold == TrackConfig().success_threshold == 0.04
        assert "circle" in node.describe_parameter("reach.radius").description
    finally:
        node.destroy_node()
    node = Node("agent_node", context=ros_context,
                parameter_overrides=track + [Parameter("reach.radius", value=0.1), Parameter("reach.speed", value=0.2)])
    try:
        settings = declare_parameters(node)
        assert (settings.reach.radius, settings.reach.speed) == (0.1, 0.2)
    finally:
        node.destroy_node()
    node = Node("agent_node", context=ros_context)
    try:  # reach has no circle
        assert not node.has_parameter("reach.radius") and declare_parameters(node).reach == ReachConfig()
        assert not node.has_parameter("reach.radius")
    finally:
        node.destroy_node()
    assert {"reach.radius", "reach.speed"} <= set(agent_parameter_names())  # a params file may set them


@pytest.mark.ros
def test_declare_rejects_out_of_range_override(ros_context):
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from mbpo_ros.nodes.params import declare_parameters

    node = Node("agent_node", context=ros_context, parameter_overrides=[Parameter("mbpo.utd", value=-3)])
    try:
        with pytest.raises(ParameterError, match=r"parameter mbpo.utd = -3 is outside \[0, 10000\]"):
            declare_parameters(node)
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_a_wrong_type_reads_the_same_from_a_config_file_and_from_a_ros_parameter(ros_context):
    """One message format: '<name> = <value> must be <type>', whichever layer refuses it."""
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from mbpo_ros.core.config import config_from_dict
    from mbpo_ros.nodes.params import declare_parameters

    with pytest.raises(ParameterError, match=r"^mbpo.utd = 'x' must be an integer$"):
        config_from_dict({"mbpo": {"utd": "x"}})
    node = Node("agent_node", context=ros_context, parameter_overrides=[Parameter("mbpo.utd", value="x")])
    try:
        with pytest.raises(ParameterError, match=r"^parameter mbpo.utd = 'x' must be an integer$"):
            declare_parameters(node)
    finally:
        node.destroy_node()
    spec = next(s for s in all_specs() if s.name == "mbpo.utd")
    with pytest.raises(ParameterError, match=r"^parameter mbpo.utd = 'x' must be an integer$"):
        check_value(spec, "x")


def test_twin_node_refuses_a_misspelt_params_file_key_in_one_line(tmp_path):
    """Regression: rclpy ignores a params-file key nobody declares, so `publish_rat` ran with the default."""
    import subprocess
    import sys

    bad = tmp_path / "twin.yaml"
    bad.write_text("/**/twin_node:\n  ros__parameters:\n    publish_rat: 50.0\n")
    code = "import sys; from mbpo_ros.nodes.twin_node import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", code, "--ros-args", "--params-file", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "'publish_rat'" in proc.stderr and "did you mean 'publish_rate'?" in proc.stderr


def test_params_file_checks_only_this_nodes_sections(tmp_path):
    from mbpo_ros.nodes.params import agent_parameter_names, check_params_file

    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    anything: 1\n/**/twin_node:\n  ros__parameters:\n    other: 2\n"
                 "/arm1/agent_node:\n  ros__parameters:\n    use_sim_time: true\n    qos_overrides:\n"
                 "      /clock:\n        subscription:\n          depth: 1\n    sac:\n      lr: 0.001\n")
    check_params_file(str(f), "agent_node", agent_parameter_names())  # wildcard, other node, ROS's own: fine
    f.write_text("agent_node:\n  ros__parameters:\n    reach:\n      sucess_threshold: 0.02\n")
    with pytest.raises(ParameterError, match=r"'reach.sucess_threshold'.*did you mean 'reach.success_threshold'\?"):
        check_params_file(str(f), "agent_node", agent_parameter_names())


@pytest.mark.ros
def test_python_logging_of_io_reaches_the_nodes_ros_logger_and_rosout(ros_context):
    """One logging channel per process: a warning from io/ (stdlib logging) arrives on /rosout under the
    node's name, like the node's own messages."""
    import logging
    import time

    import rclpy
    from rcl_interfaces.msg import Log

    from mbpo_ros.nodes.ros_logging import route_python_logging

    node = rclpy.create_node("agent_node", context=ros_context)
    got = []
    node.create_subscription(Log, "/rosout", got.append, 100)
    executor = rclpy.executors.SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    handler = route_python_logging(node)
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end and not any("disk is full" in m.msg for m in got):
            logging.getLogger("mbpo_ros.io.transition_log").warning("transitions/ disk is full")
            executor.spin_once(timeout_sec=0.2)
        hits = [m for m in got if "disk is full" in m.msg]
        assert hits, [m.msg for m in got]
        assert hits[0].name == "agent_node" and hits[0].level == Log.WARN
        assert hits[0].msg == "[mbpo_ros.io.transition_log] transitions/ disk is full"
    finally:
        logging.getLogger("mbpo_ros").removeHandler(handler)
        logging.getLogger("mbpo_ros").propagate = True
        executor.remove_node(node)
        node.destroy_node()


def test_agent_node_refuses_a_misspelt_params_file_key_in_one_line(tmp_path):
    """Regression: `control_rat: 10.0` / `sac.gama` in the agent's params file ran with the defaults."""
    import subprocess
    import sys

    bad = tmp_path / "mbpo.yaml"
    bad.write_text("/**/agent_node:\n  ros__parameters:\n    sac:\n      gama: 0.9\n")
    code = "import sys; from mbpo_ros.nodes.agent_node import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", code, "--ros-args", "--params-file", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "'sac.gama'" in proc.stderr and "did you mean 'sac.gamma'?" in proc.stderr


@pytest.mark.ros
def test_a_params_file_written_by_launch_ros_with_list_parameters_is_read(tmp_path, ros_domain):
    """Regression (found running arm.launch.py robot:=ur5e.urdf under ros2 launch): launch_ros holds a launch
    file's list parameters as tuples and writes its temporary params file with yaml.dump, so joint_names and
    the limits carry the tag !!python/tuple; the node's own params-file check (yaml.safe_load) refused the file
    and agent_node exited 2 before starting. The check reads such a file, and so does rcl."""
    import rclpy
    import yaml
    from rclpy.parameter import Parameter

    from mbpo_ros.nodes.params import agent_parameter_names, check_params_file, read_params_file

    path = tmp_path / "launch_params_x"
    with open(path, "w") as f:  # what launch_ros.actions.Node._create_params_file_from_dict writes
        yaml.dump({"/agent_node": {"ros__parameters": {"joint_names": ("a", "b"), "position_lower": (-1.0, -2.0)}}},
                  f, default_flow_style=False)
    assert "!!python/tuple" in path.read_text()
    check_params_file(str(path), "agent_node", agent_parameter_names())
    assert read_params_file(str(path))["/agent_node"]["ros__parameters"]["joint_names"] == ["a", "b"]
    ctx = rclpy.Context()
    rclpy.init(args=["prog", "--ros-args", "--params-file", str(path)], context=ctx, domain_id=ros_domain)
    try:
        node = rclpy.create_node("agent_node", context=ctx)
        assert list(node.declare_parameter("joint_names", Parameter.Type.STRING_ARRAY).value) == ["a", "b"]
        assert list(node.declare_parameter("position_lower", Parameter.Type.DOUBLE_ARRAY).value) == [-1.0, -2.0]
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
