"""agent_node in train mode: checkpoint round trip through a restart, the MCAP log, episodes.csv.

The learner (TrainerProcess, a child process) is real; learning itself is kept out of the way
(init_random_steps above the steps taken) so that the test is about keeping every transition.
"""

from __future__ import annotations

import csv
import signal
import time

import numpy as np
import pytest
from test_agent_support import BASE, robot_fixture, start_agent_fixture, values

pytestmark = pytest.mark.ros

TRAIN = {
    **BASE,
    "mode": "train",
    "log_transitions": True,
    "mbpo.init_random_steps": 100000,
    "mbpo.real_buffer_size": 20000,
    "checkpoint_period": 0.0,
    "reach.episode_seconds": 1.0,  # 50 steps at 50 Hz
    "reset_timeout": 0.3,  # the fake robot does not move: the drive home times out quickly
    "device": "cpu",
}


@pytest.fixture
def robot(ros_context):
    yield from robot_fixture(ros_context)


@pytest.fixture
def start_agent(tmp_path, ros_domain):
    yield from start_agent_fixture(tmp_path, TRAIN)


def _checkpoint_counts(run_dir):
    from mbpo_ros.io.checkpoint import load_checkpoint

    tensors, _arrays, meta = load_checkpoint(run_dir / "checkpoint")
    return int(meta["counters"]["env_steps"]), int(meta["real_buffer"]["size"]), tensors


def test_checkpoint_round_trip_through_restart_keeps_every_transition(tmp_path, robot, start_agent):
    from std_srvs.srv import SetBool, Trigger

    from mbpo_ros.io.transition_log import read_transitions, segment_paths

    run_dir = tmp_path / "run"
    robot.shuffle = True  # JointState order shuffled on every message: observations must not change
    robot.start_publishing(100.0)

    # session 1: collect, checkpoint on request, then SIGINT (final checkpoint)
    agent = start_agent()
    assert robot.wait_for_commands(100, timeout=90), agent.output()
    res = robot.call(Trigger, "/agent_node/save_checkpoint", Trigger.Request(), timeout=60)
    assert res.success, res.message
    assert res.message.endswith("checkpoint")
    res = robot.call(SetBool, "/agent_node/pause_training", SetBool.Request(data=True))
    assert res.success, res.message
    time.sleep(1.0)
    assert agent.stop() == 0, agent.output()
    n1, size1, _ = _checkpoint_counts(run_dir)
    log1 = read_transitions(run_dir)
    assert n1 >= 100
    assert size1 == n1 == len(log1["obs"]), (size1, n1, len(log1["obs"]))
    # every observation has the joints in arm order, whatever order the JointState had
    np.testing.assert_allclose(log1["obs"][:, :6], np.broadcast_to(robot.q, (n1, 6)), atol=1e-6)
    np.testing.assert_allclose(log1["next_obs"][:, :6], np.broadcast_to(robot.q, (n1, 6)), atol=1e-6)

    # session 2: same run directory -> resumes with every transition, appends to the log
    t_start = time.monotonic()
    agent2 = start_agent()
    st = robot.wait_for_status("agent_node: learner", lambda s: int(values(s)["env_steps"]) > n1 + 20,
                               timeout=90, since=t_start)
    assert st is not None, agent2.output()
    assert agent2.stop(sig=signal.SIGTERM) == 0, agent2.output()  # SIGTERM: same orderly shutdown
    n2, size2, tensors = _checkpoint_counts(run_dir)
    log2 = read_transitions(run_dir)
    assert n2 > n1 + 20
    assert size2 == n2 == len(log2["obs"])
    # the first session's transitions are unchanged, in the buffer and in the log
    np.testing.assert_array_equal(log2["obs"][:n1], log1["obs"])
    np.testing.assert_allclose(tensors["real.obs"][:n1].numpy(), log1["obs"], atol=1e-6)
    np.testing.assert_allclose(tensors["real.act"][:n2].numpy(), log2["action"], atol=1e-6)
    assert np.all(np.diff(log2["stamp_ns"]) >= 0)

    # the log is a plain ROS 2 bag: mcap-ros2-support decodes every message of every segment
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    segments = segment_paths(run_dir)  # the rosbag2 directory run_dir/transitions/
    assert len(segments) == 2
    decoded = []
    for seg in segments:
        with open(seg, "rb") as f:
            reader = make_reader(f, decoder_factories=[DecoderFactory()])
            decoded += [(channel.topic, msg) for _s, channel, _m, msg in reader.iter_decoded_messages()]
    assert len(decoded) == n2
    assert {topic for topic, _ in decoded} == {"/mbpo/transitions"}
    assert len(decoded[0][1].data) == len(log2["obs"][0]) * 2 + 6 + 5
    np.testing.assert_allclose(decoded[-1][1].data[: len(log2["obs"][0])], log2["obs"][-1], atol=1e-6)

    # episodes.csv: one row per episode, counters continue across the restart
    with open(run_dir / "episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 2
    episodes = [int(r["episodes"]) for r in rows]
    assert episodes == list(range(1, len(rows) + 1))
    steps = [int(r["env_steps"]) for r in rows]
    assert steps == sorted(steps) and steps[-1] <= n2
    assert {"success", "final_distance_m", "episode_return", "achieved_utd", "model_loss", "wall_seconds"} <= set(rows[0])

    # Regression (issue 15): the agent itself writes the run's metrics, as under ros2 launch or on a real arm:
    # metrics.csv one row per episode (the restart redid none), TensorBoard train/ and model/ scalars, the curve
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mbpo_ros.io.metrics import read_metrics_csv

    columns, mrows = read_metrics_csv(run_dir / "metrics.csv")
    assert [int(r["train/episodes"]) for r in mrows] == episodes
    assert {"train/episode_return", "train/success_rate", "train/critic_loss", "train/actor_loss", "train/alpha",
            "train/achieved_utd", "model/holdout_mse", "model/real_buffer"} <= set(columns), columns
    tags = set()
    for events in (run_dir / "tb").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"train/episode_return", "train/success_rate", "model/real_buffer"} <= tags, tags
    assert (run_dir / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"

    # deploy mode: the checkpoint's deterministic policy, no learning, nothing logged
    t_start = time.monotonic()
    agent3 = start_agent(mode="deploy", checkpoint=str(run_dir / "checkpoint"))
    assert robot.wait_for_commands(60, timeout=60, since=t_start), agent3.output()
    time.sleep(1.0)
    t = time.monotonic()
    time.sleep(1.0)
    cmds = np.array([c for _, c in robot.commands_since(t)])
    assert len(cmds) > 20
    np.testing.assert_allclose(cmds, np.broadcast_to(cmds[0], cmds.shape), atol=1e-9)  # same obs, same action
    st = robot.wait_for_status("agent_node: learner", lambda s: values(s)["mode"] == "deploy", since=t_start)
    assert st is not None and int(values(st)["env_steps"]) == 0
    assert agent3.stop() == 0, agent3.output()
    assert len(read_transitions(run_dir)["obs"]) == n2


def test_crashed_learner_is_restarted_diagnostics_error_then_ok_and_dead_learner_exit_code(
        tmp_path, robot, start_agent):
    """Regression (issue 11): a killed trainer child stopped learning for good, /diagnostics said ERROR
    and the node exited 0. Now the learner is restarted (ERROR while down, OK after, its transitions
    kept), and a learner that is dead at shutdown gives exit code 3."""
    import os

    from mbpo_ros.nodes.agent_node import EXIT_LEARNER_DEAD

    robot.start_publishing(100.0)
    agent = start_agent()
    st = robot.wait_for_status("agent_node: learner", lambda s: s.level == b"\x00" and values(s).get("pid"),
                               timeout=90)
    assert st is not None, agent.output()
    first = int(values(st)["pid"])
    os.kill(first, signal.SIGKILL)
    t_kill = time.monotonic()
    down = robot.wait_for_status("agent_node: learner", lambda s: s.level == b"\x02", timeout=20, since=t_kill)
    assert down is not None and "restarting" in down.message, agent.output()
    up = robot.wait_for_status("agent_node: learner", lambda s: s.level == b"\x00" and values(s)["restarts"] == "1",
                               timeout=90, since=t_kill)
    assert up is not None, agent.output()
    assert int(values(up)["pid"]) != first and int(values(up)["env_steps"]) > 0
    assert "learner: OK again" in agent.output() and "learner: learner down" in agent.output()

    os.kill(int(values(up)["pid"]), signal.SIGKILL)  # down again, and the node stops while it is down
    t_kill = time.monotonic()
    assert robot.wait_for_status("agent_node: learner", lambda s: s.level == b"\x02", timeout=20, since=t_kill)
    agent.expected_exit = EXIT_LEARNER_DEAD
    assert agent.stop(sig=signal.SIGTERM) == EXIT_LEARNER_DEAD, agent.output()
    assert "dead at shutdown" in agent.output()
