"""arm.launch.py: the README's real-arm commands, run as written, against a stand-in UR5e that is not the twin.

The commands are read from README.md ("Pointing it at a real arm"), their `name:=value` arguments become
graph.ArmArgs exactly as `ros2 launch` would hand them to the launch file (graph.args_from_strings), and
graph.arm_graph's NodeSpecs are started as processes with their `--ros-args` (test_launch_graph.py's
subprocess twin). The arm is test/stand_in_arm.py: UR joint names, a gripper joint, a new joint order in
every JointState, velocity commands on forward_velocity_controller/commands. The files the commands name
(ur5e.urdf, ur5e_limits.yaml, runs/ur5e-gym/checkpoint) are made in a scratch working directory from the
README itself: the URDF by test/arm_urdf.py, the limits file from the README's YAML block, the checkpoint
by the README's own `mbpo-ros gym` command (shortened to 120 steps).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from arm_urdf import UR5E_DH, UR5E_JOINTS, dh_forward, ur5e_urdf
from graph_helpers import Graph, spin_until

from mbpo_ros import graph
from mbpo_ros.graph import ArmArgs

REPO = Path(__file__).resolve().parents[1]
STAND_IN = Path(__file__).resolve().parent / "stand_in_arm.py"
SECTION = "## Pointing it at a real arm"


def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start:end if end > 0 else len(text)]


def readme_commands(title: str, prefix: list[str]) -> list[list[str]]:
    """The words after ``prefix`` of every command in the ```bash blocks of the README section ``title``."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", readme_section(title), re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            if words[:len(prefix)] == prefix:
                out.append(words[len(prefix):])
    return out


def arm_commands() -> dict[str, dict[str, str]]:
    """mode -> the launch arguments of the README's `ros2 launch mbpo_ros arm.launch.py mode:=...` command."""
    out = {}
    for words in readme_commands(SECTION, ["ros2", "launch", "mbpo_ros", "arm.launch.py"]):
        kv = dict(w.split(":=", 1) for w in words if ":=" in w)
        assert len(kv) == len(words) or words == ["--show-args"], f"not a launch argument in {words}"
        if kv:
            out[kv["mode"]] = kv
    return out


def readme_limits_yaml() -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", readme_section(SECTION), re.S)
    (block,) = [b for b in blocks if "velocity_limits" in b]
    return "\n".join(line[2:] if line.startswith("  ") else line for line in block.splitlines()) + "\n"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A working directory holding what the README's commands name: ur5e.urdf and ur5e_limits.yaml."""
    d = tmp_path_factory.mktemp("ur5e_user")
    ur5e_urdf(d / "ur5e.urdf")
    (d / "ur5e_limits.yaml").write_text(readme_limits_yaml())
    return d


@pytest.fixture(scope="module")
def gym_checkpoint(workdir) -> Path:
    """runs/ur5e-gym/checkpoint, written by the README's `mbpo-ros gym ... --out runs/ur5e-gym` command."""
    (words,) = [w for w in readme_commands("## Your own arm", ["mbpo-ros", "gym"]) if "runs/ur5e-gym" in w]
    short = ["--steps", "120", "--threads", "1", "--eval-episodes", "1", "--no-tensorboard", "--quiet",
             "--set=mbpo.init_random_steps=100", "--set=mbpo.epoch_length=100", "--set=mbpo.real_buffer_size=1000",
             "--set=mbpo.rollout_batch_size=100", "--set=sac.hidden_size=16", "--set=ensemble.hidden_size=16"]
    exe = Path(sys.executable).parent / "mbpo-ros"
    argv = [str(exe)] if exe.is_file() else [sys.executable, "-m", "mbpo_ros.cli"]
    done = subprocess.run([*argv, "gym", *words, *short], cwd=workdir, capture_output=True, text=True, timeout=300,
                          env=graph.local_env())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return workdir / "runs" / "ur5e-gym" / "checkpoint"


def specs_for(readme_mode: str, workdir: Path, monkeypatch, **extra: str) -> list[graph.NodeSpec]:
    """The README's command for ``readme_mode`` (with ``extra`` arguments) as the launch file builds it, run
    from ``workdir`` (its relative paths)."""
    monkeypatch.chdir(workdir)
    return graph.arm_graph(graph.args_from_strings(ArmArgs, {**arm_commands()[readme_mode], **extra}))


class StandInArm:
    """test/stand_in_arm.py as a process (stop(): SIGINT, exit code)."""

    def __init__(self, log: Path, namespace: str = "") -> None:
        self.log = log
        with open(log, "w") as f:
            self.proc = subprocess.Popen([sys.executable, str(STAND_IN), "--namespace", namespace], stdout=f,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=graph.local_env())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


class ArmProbe:
    """Listens like an operator would: the arm's joint states (by name), what reaches the controller's
    command topic, the goals on `goal` and the announcements on `episode`; with ``goal``, publishes a
    latched goal the way an external goal source does."""

    def __init__(self, ctx, goal=None) -> None:
        import rclpy
        from geometry_msgs.msg import PointStamped
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray, String

        self.node = rclpy.create_node("arm_probe", context=ctx)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self.states: dict[int, np.ndarray] = {}  # stamp [ns] -> q in UR5E_JOINTS order
        self.last_q: np.ndarray | None = None
        self.extra_names: set[str] = set()
        self.commands: list[np.ndarray] = []
        self.default_topic_commands = 0
        self.node.create_subscription(JointState, "joint_states", self._on_state, qos_profile_sensor_data)
        self.node.create_subscription(Float64MultiArray, graph.FORWARD_VELOCITY_TOPIC,
                                      lambda m: self.commands.append(np.array(m.data)), 100)
        self.node.create_subscription(Float64MultiArray, graph.AGENT_COMMAND_TOPIC,
                                      lambda _m: setattr(self, "default_topic_commands",
                                                         self.default_topic_commands + 1), 10)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.goals: list[tuple[np.ndarray, str]] = []
        self.events: list[dict] = []
        self.node.create_subscription(PointStamped, "goal", lambda m: self.goals.append(
            (np.array([m.point.x, m.point.y, m.point.z]), m.header.frame_id)), latched)
        self.node.create_subscription(String, "episode", lambda m: self.events.append(json.loads(m.data)),
                                      QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        if goal is not None:
            self.goal_pub = self.node.create_publisher(PointStamped, "goal", latched)
            msg = PointStamped()
            msg.header.frame_id = "base_link"
            msg.header.stamp = self.node.get_clock().now().to_msg()
            msg.point.x, msg.point.y, msg.point.z = (float(v) for v in goal)
            self.goal_pub.publish(msg)

    def _on_state(self, msg) -> None:
        by_name = dict(zip(msg.name, msg.position))
        q = np.array([by_name[j] for j in UR5E_JOINTS])
        self.extra_names |= set(msg.name) - set(UR5E_JOINTS)
        self.states[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = q
        self.last_q = q

    def spin_until(self, predicate, timeout: float, alive=lambda: True) -> bool:
        return spin_until(self.executor, predicate, timeout, alive)

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()


def _goal_of(agent: graph.NodeSpec) -> np.ndarray:
    """The middle of the arm's goal box (reachable, in the base frame)."""
    return (np.array(agent.parameters["reach.goal_low"]) + np.array(agent.parameters["reach.goal_high"])) / 2


# --------------------------------------------------------------------------- the commands, as data


def test_readme_shows_arm_launch_for_every_mode_with_the_arguments_a_real_arm_needs():
    cmds = arm_commands()
    assert set(cmds) == {"train", "collect", "deploy"}, cmds
    names = {f.name for f in dataclasses.fields(ArmArgs)}
    for needed in ("mode", "checkpoint", "robot", "joint_names", "command_topic", "command_type", "allow_extra_joints",
                   "reset_service", "config", "limits", "namespace", "learner", "shutdown_grace"):
        assert needed in names, needed
    for kv in cmds.values():
        assert set(kv) <= names, set(kv) - names


def test_readme_commands_build_the_agent_a_real_ur5e_needs(workdir, monkeypatch):
    for mode in ("train", "collect", "deploy"):
        (agent,) = specs_for(mode, workdir, monkeypatch)
        p = agent.parameters
        assert (agent.executable, p["mode"]) == ("agent_node", mode)
        assert p["joint_names"] == list(UR5E_JOINTS) and p["allow_extra_joints"] is True
        assert p["robot_model"] == str(workdir / "ur5e.urdf") and p["ee_body"] == "tool0"
        assert p["reset_service"] == "", "a real arm drives home between episodes"
        assert p["goal_source"] == ("topic" if mode == "deploy" else "task")
        assert dict(agent.remappings)[graph.AGENT_COMMAND_TOPIC] == graph.FORWARD_VELOCITY_TOPIC
        assert agent.shutdown_grace == graph.SHUTDOWN_GRACE_S
    (collect,) = specs_for("collect", workdir, monkeypatch)
    assert collect.parameters["velocity_limits"] == [1.0, 1.0, 1.0, 1.2, 1.2, 1.2], "the README's limits file"
    assert collect.parameters["run_dir"] == str(workdir / "runs" / "ur5e-collect")


@pytest.mark.parametrize(("extra", "message"), [
    ({"mode": "learn"}, r"^mode = 'learn' must be train, collect or deploy$"),
    ({"mode": "deploy", "checkpoint": ""}, r"^mode:=deploy needs checkpoint:="),
    ({"mode": "collect", "checkpoint": "runs/x/checkpoint"}, r"^checkpoint:= is for mode:=deploy"),
    ({"mode": "train", "checkpoint": "runs/none/checkpoint"}, r"^checkpoint = 'runs/none/checkpoint': no such"),
    ({"mode": "collect", "learner": "remote"}, r"^learner:=remote needs mode:=train"),
    ({"command_type": "float"}, r"^command_type = 'float' must be multi_array or trajectory$"),
    ({"namespace": "arm1"}, r"^namespace = 'arm1' is not a ROS namespace"),
    ({"joint_names": "shoulder_pan_joint,gripper_joint"}, r"joint 'gripper_joint' is not in .*ur5e.urdf \(joint_names\); its hinge and slide joints: "
     r"\['shoulder_pan_joint', 'shoulder_lift_joint'"),
    ({"limits": "ur5e.urdf"}, r"^params file .*ur5e.urdf"),
    ({"robot": "ur10e.urdf"}, r"ur10e.urdf"),
    ({"control_rate": "0"}, r"^control_rate = 0.0 Hz must be positive$"),
    ({"goal_source": "rviz"}, r"^goal_source = 'rviz' must be one of topic, task \(or empty\)$"),
    ({"mode": "deploy", "checkpoint": "ck", "goal_source": "task"}, r"^goal_source:=task needs mode:=train or collect"),
])
def test_bad_arguments_are_refused_in_one_line(workdir, monkeypatch, extra, message):
    with pytest.raises(ValueError, match=message) as info:
        specs_for("train", workdir, monkeypatch, **extra)
    assert "\n" not in str(info.value)


def test_a_limits_file_sets_only_limits_and_wins_over_the_model(workdir, monkeypatch, tmp_path):
    bad = tmp_path / "limits.yaml"
    bad.write_text("/**/agent_node:\n  ros__parameters:\n    max_velocity_step: 0.5\n    sac.lr: 0.1\n")
    with pytest.raises(ValueError, match=r"sets 'sac.lr': a limits file sets only position_lower"):
        specs_for("train", workdir, monkeypatch, limits=str(bad))
    (plain,) = specs_for("train", workdir, monkeypatch)
    assert plain.parameters["velocity_limits"] == pytest.approx([np.pi] * 6, abs=1e-5), "the UR5e's, from its URDF"
    (limited,) = specs_for("train", workdir, monkeypatch, limits="ur5e_limits.yaml")
    assert limited.parameters["velocity_limits"] == [1.0, 1.0, 1.0, 1.2, 1.2, 1.2]
    assert limited.parameters["max_velocity_step"] == 0.5
    assert limited.parameters["position_upper"] == [3.0] * 6


def test_regression_a_config_that_moves_the_command_topic_is_refused(workdir, monkeypatch, tmp_path):
    """Regression: a params file with command_topic made the launch's remapping of the agent's default name
    match nothing, so command_topic:= was silently ignored (commands went where the file said, or, on the twin,
    nowhere the twin listens). The launch arguments own the command topics; the file's default value is fine."""
    moved = tmp_path / "mbpo.yaml"
    moved.write_text("/**/agent_node:\n  ros__parameters:\n    command_topic: my_controller/commands\n")
    with pytest.raises(ValueError, match=r"sets command_topic = 'my_controller/commands': .* launch arguments") as info:
        specs_for("train", workdir, monkeypatch, config=str(moved))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"sets command_topic"):
        graph.train_graph(graph.TrainArgs(config=str(moved)))
    moved.write_text("/arm1/agent_node:\n  ros__parameters:\n    trajectory_topic: /jtc/joint_trajectory\n")
    with pytest.raises(ValueError, match=r"\('/arm1/agent_node'\) sets trajectory_topic"):
        specs_for("deploy", workdir, monkeypatch, config=str(moved), checkpoint="ck")
    moved.write_text(f"/**/agent_node:\n  ros__parameters:\n    command_topic: {graph.AGENT_COMMAND_TOPIC}\n")
    (agent,) = specs_for("train", workdir, monkeypatch, config=str(moved))
    assert dict(agent.remappings)[graph.AGENT_COMMAND_TOPIC] == graph.FORWARD_VELOCITY_TOPIC


def test_a_limits_file_for_another_number_of_joints_is_refused(workdir, monkeypatch, tmp_path):
    seven = tmp_path / "panda_limits.yaml"
    seven.write_text("/**/agent_node:\n  ros__parameters:\n    velocity_limits: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]\n")
    with pytest.raises(ValueError, match=r"velocity_limits has 7 values, the arm has 6 joints \['shoulder_pan_joint'"):
        specs_for("train", workdir, monkeypatch, limits=str(seven))


def test_train_with_a_checkpoint_resumes_its_run(workdir, monkeypatch, tmp_path):
    (tmp_path / "runs" / "old" / "checkpoint").mkdir(parents=True)
    (agent,) = specs_for("train", workdir, monkeypatch, run_dir="", checkpoint=str(tmp_path / "runs/old/checkpoint"))
    assert agent.parameters["run_dir"] == str(tmp_path / "runs" / "old") and "checkpoint" not in agent.parameters
    with pytest.raises(ValueError, match=r"is not in run_dir = 'runs/ur5e-real'"):
        specs_for("train", workdir, monkeypatch, checkpoint=str(tmp_path / "runs/old/checkpoint"))


def test_joint_names_pick_the_models_joints_in_the_controllers_order(workdir, monkeypatch):
    order = ["wrist_3_joint", *UR5E_JOINTS[:5]]
    (agent,) = specs_for("train", workdir, monkeypatch, joint_names=",".join(order))
    (plain,) = specs_for("train", workdir, monkeypatch, joint_names="")
    assert agent.parameters["joint_names"] == order
    perm = [UR5E_JOINTS.index(j) for j in order]
    assert agent.parameters["reach.home_pose"] == [plain.parameters["reach.home_pose"][i] for i in perm]


def test_deploy_launch_is_arm_launch_in_deploy_mode():
    (deploy,) = graph.deploy_graph(graph.DeployArgs(checkpoint="ck", joint_names="a,b"))
    (arm,) = graph.arm_graph(ArmArgs(mode="deploy", checkpoint="ck", joint_names="a,b", device="cpu"))
    assert deploy.remappings == arm.remappings and deploy.params_files == arm.params_files
    # deploy.launch.py declares no task, allow_extra_joints or goal_source: those stay the config file's
    own = ("task", "allow_extra_joints", "goal_source")
    assert {k: v for k, v in arm.parameters.items() if k not in own} == deploy.parameters
    assert arm.parameters["goal_source"] == "topic", "deploy has no episodes: its goal comes from the goal topic"


# --------------------------------------------------------------------------- the commands, run


def _run_graph(specs, tmp_path, ctx, goal, until, timeout):
    """Stand-in arm + the graph's processes + a probe; ``until(probe)`` ends the wait. Returns (probe, codes,
    logs, reached)."""
    arm = StandInArm(tmp_path / "stand_in_arm.log")
    g = Graph(specs, tmp_path / "logs")
    probe = ArmProbe(ctx, goal)
    try:
        reached = probe.spin_until(lambda: until(probe), timeout, lambda: g.alive() and arm.proc.poll() is None)
    finally:
        probe.close()
        codes = g.stop()
        codes["stand_in_arm"] = arm.stop()
    logs = g.log_text() + "\n--- stand_in_arm:\n" + (tmp_path / "stand_in_arm.log").read_text()[-2000:]
    return probe, codes, logs, reached


@pytest.mark.ros
def test_readme_deploy_command_drives_the_stand_in_ur5e(workdir, gym_checkpoint, monkeypatch, ros_context, tmp_path):
    """mode:=deploy with a checkpoint trained for that UR5e model: commands of 6 velocities reach
    forward_velocity_controller/commands and the arm moves; the gripper
    joint and the shuffled JointState order are taken in stride."""
    specs = specs_for("deploy", workdir, monkeypatch)
    probe, codes, logs, reached = _run_graph(
        specs, tmp_path, ros_context, _goal_of(specs[0]),
        lambda p: sum(np.any(c != 0.0) for c in p.commands) >= 30 and len(p.states) >= 50, 90.0)
    assert reached, (f"{len(probe.commands)} commands reached {graph.FORWARD_VELOCITY_TOPIC}, "
                     f"{len(probe.states)} joint states seen\n{logs}")
    assert codes == {"agent_node": 0, "stand_in_arm": 0}, f"{codes}\n{logs}"
    assert probe.extra_names == {"robotiq_85_left_knuckle_joint"}
    assert all(c.shape == (6,) and np.all(np.isfinite(c)) for c in probe.commands)
    assert probe.default_topic_commands == 0, "the agent must publish on the controller's topic only"
    first = np.array([0.3, -1.2, 1.0, -0.8, -1.4, 0.6])  # stand_in_arm.START
    assert np.abs(probe.last_q - first).max() > 0.05, "the arm did not move"
    assert re.search(r"commands held, 0 refused", logs), "the stand-in's controller refused commands"


@pytest.mark.ros
def test_readme_collect_command_logs_transitions_from_the_stand_in_ur5e(workdir, monkeypatch, ros_context, tmp_path):
    """mode:=collect: random actions within the README's limits file reach the controller, transitions are
    logged with the joints in command order (mapped by name from shuffled joint states with a gripper) and
    the end effector from the model's forward kinematics; the task draws each episode's goal in the arm's
    goal box and publishes it; the episode ends, is announced, and the arm drives to its home pose, joint
    by joint (a wrong order could not get there), where the next episode starts with a new goal."""
    specs = specs_for("collect", workdir, monkeypatch)
    home = np.array(specs[0].parameters["reach.home_pose"])
    left, arrived = threading.Event(), threading.Event()

    def home_after_leaving(p) -> bool:
        if p.last_q is not None:
            far = np.abs(p.last_q - home).max()
            if far > 0.3:
                left.set()
            if left.is_set() and far < 0.06:
                arrived.set()  # the next episode may move it away again at once
        return arrived.is_set() and len(p.goals) >= 2

    probe, codes, logs, reached = _run_graph(specs, tmp_path, ros_context, None, home_after_leaving, 60.0)
    assert reached, (f"the arm did not drive home to a second goal (now {probe.last_q}, home {home}; "
                     f"{len(probe.goals)} goals)\n{logs}")
    assert codes == {"agent_node": 0, "stand_in_arm": 0}, f"{codes}\n{logs}"
    low, high = (np.array(specs[0].parameters[k]) for k in ("reach.goal_low", "reach.goal_high"))
    assert all(np.all(g >= low - 1e-9) and np.all(g <= high + 1e-9) and f == "base_link" for g, f in probe.goals)
    assert np.abs(probe.goals[0][0] - probe.goals[1][0]).max() > 1e-3, "the same goal twice"
    ends = [e for e in probe.events if e["event"] == "end"]
    assert ends and ends[0]["reason"] == "time_limit" and ends[0]["steps"] == 100, probe.events
    cmds = np.array(probe.commands)
    assert cmds.shape[1] == 6 and np.any(cmds != 0.0)
    limits = yaml.safe_load(readme_limits_yaml())["/**/agent_node"]["ros__parameters"]
    assert np.all(np.abs(cmds) <= np.array(limits["velocity_limits"]) + 1e-9), "a command beyond the limits file"
    # motion is rate-limited; a stop (the watchdog's, the drive home's end) may come at once
    moving = np.any(cmds[1:] != 0.0, axis=1)
    assert np.all(np.abs(np.diff(cmds, axis=0))[moving] <= limits["max_velocity_step"] + 1e-9), "no rate limit"

    from mbpo_ros.io.transition_log import read_transitions

    log = read_transitions(workdir / "runs" / "ur5e-collect" / "transitions.mcap")
    n = len(log["reward"])
    assert n >= 50 and log["action"].shape[1] == 6, n
    matched = [(i, probe.states[s]) for i, s in enumerate(log["stamp_ns"]) if int(s) in probe.states]
    assert len(matched) >= n // 2, f"{len(matched)} of {n} transitions stamped like a joint state the arm sent"
    for i, q in matched:  # the observation's joints are the arm's, in command order
        np.testing.assert_allclose(log["next_obs"][i, :6], q, atol=1e-4)
        np.testing.assert_allclose(log["next_obs"][i, 12:15], dh_forward(UR5E_DH, q, modified=False), atol=2e-3)


@pytest.mark.ros
@pytest.mark.slow
def test_readme_train_command_learns_on_the_stand_in_ur5e(workdir, monkeypatch, ros_context, tmp_path):
    """mode:=train: the learner runs, transitions are logged, the final checkpoint names the UR5e."""
    specs = specs_for("train", workdir, monkeypatch)
    probe, codes, logs, reached = _run_graph(specs, tmp_path, ros_context, None,
                                             lambda p: len(p.commands) >= 200 and p.goals, 120.0)
    assert reached, f"{len(probe.commands)} commands\n{logs}"
    assert codes == {"agent_node": 0, "stand_in_arm": 0}, f"{codes}\n{logs}"
    run = workdir / "runs" / "ur5e-real"
    from mbpo_ros.io.checkpoint import load_identity
    from mbpo_ros.io.transition_log import read_transitions

    assert len(read_transitions(run / "transitions.mcap")["reward"]) >= 100
    assert load_identity(run / "checkpoint")["robot"]["joint_names"] == list(UR5E_JOINTS)
