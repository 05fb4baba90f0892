"""The train graph as subprocesses: the CI twin of test_launch_graph.py.

twin_node and agent_node are started as processes with exactly the `--ros-args` (params files,
parameter overrides, remappings, node names) that mbpo_ros/graph.py gives train.launch.py, on
this test's own ROS domain; a probe node on real DDS asserts what the launch test asserts: the
twin publishes, the agent commands at its rate, transitions are logged, and the graph shuts
down cleanly on SIGINT with a final checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from graph_helpers import Graph, Probe

from mbpo_ros import graph

pytestmark = pytest.mark.ros


def _specs(run_dir: Path, **kw):
    return graph.train_graph(graph.TrainArgs(run_dir=str(run_dir), device="cpu", seed=0, **kw))


def test_lockstep_graph_trains_logs_and_checkpoints_on_sigint(tmp_path, ros_context):
    run_dir = tmp_path / "run"
    g = Graph(_specs(run_dir, lockstep=True, use_sim_time=True, real_time_factor=0.0), tmp_path / "logs")
    probe = Probe(ros_context)
    try:
        ok = probe.spin_until(lambda: len(probe.commands) >= 150 and len(probe.states) >= 150, 90.0, g.alive)
        assert ok, (f"{len(probe.states)} joint states, {len(probe.commands)} commands in 90 s; "
                    f"alive={g.alive()}\n{g.log_text()}")
        # The twin publishes joint states for all 6 joints, stamped in simulated time.
        assert all(s[2].shape == (6,) for s in probe.states)
        stamps = np.array([s[1] for s in probe.states])
        # Lock-step: one control period (1 / 20 Hz) of simulated time per command; the agent commands
        # once per joint state, so simulated time advances at the agent's control rate.
        steps = np.diff(np.unique(stamps))
        assert np.median(steps) == pytest.approx(1.0 / 20.0, rel=1e-3), steps[:20]
        assert all(c[1].shape == (6,) and np.all(np.isfinite(c[1])) for c in probe.commands)
        # The arm moves under the agent's commands.
        assert np.abs(probe.states[-1][2] - probe.states[0][2]).max() > 1e-3
    finally:
        probe.close()
        codes = g.stop()
    assert codes == {"agent_node": 0, "twin_node": 0}, f"exit codes {codes}\n{g.log_text()}"
    assert (run_dir / "checkpoint").is_dir(), f"no final checkpoint\n{g.log_text()}"
    from mbpo_ros.io.transition_log import read_transitions

    log = read_transitions(run_dir / "transitions.mcap")
    n_logged = len(log["reward"])
    assert n_logged >= 100, f"{n_logged} transitions in the MCAP log"
    assert log["obs"].shape[1] == 21 and log["action"].shape[1] == 6
    assert (run_dir / "episodes.csv").is_file()


def test_realtime_graph_commands_at_the_control_rate(tmp_path, ros_context):
    run_dir = tmp_path / "run"
    g = Graph(_specs(run_dir, lockstep=False, use_sim_time=True, real_time_factor=1.0), tmp_path / "logs")
    probe = Probe(ros_context)
    try:
        ok = probe.spin_until(lambda: len(probe.commands) >= 20, 90.0, g.alive)
        assert ok, f"{len(probe.commands)} commands before timeout; alive={g.alive()}\n{g.log_text()}"
        probe.commands.clear()
        probe.states.clear()
        t0 = time.monotonic()
        probe.spin_until(lambda: False, 4.0)
        elapsed = time.monotonic() - t0
        rate = len(probe.commands) / elapsed
        # 20 Hz configured; a loose band because other tests share the 2 cores.
        assert 10.0 <= rate <= 30.0, f"agent commanded at {rate:.1f} Hz\n{g.log_text()}"
        assert len(probe.states) / elapsed > 20.0, "twin publishes joint states (default 100 Hz)"
    finally:
        probe.close()
        codes = g.stop()
    assert codes == {"agent_node": 0, "twin_node": 0}, f"exit codes {codes}\n{g.log_text()}"
    assert (run_dir / "checkpoint").is_dir(), f"no final checkpoint\n{g.log_text()}"


def _checkpoint_for_deploy(path: Path) -> None:
    """A real MBPO policy checkpoint (untrained weights are enough to drive the arm)."""
    from mbpo_ros.core.config import preset
    from mbpo_ros.core.tasks import get_task
    from mbpo_ros.core.trainer import MBPO
    from mbpo_ros.io.checkpoint import save_checkpoint

    cfg = preset("reach")
    cfg.device = "cpu"
    task = get_task("reach")
    tensors, arrays, meta = MBPO(task.obs_dim, task.act_dim, cfg, task).state()
    save_checkpoint(path, tensors=tensors, arrays=arrays, meta=meta)


def test_deploy_graph_drives_a_ros2_control_style_arm(tmp_path, ros_context):
    """deploy.launch.py's agent (mode deploy, commands remapped to forward_velocity_controller) drives the
    twin standing in for a real arm (wall-clock stamps, listening on the ros2_control topic)."""
    import dataclasses

    ckpt = tmp_path / "trained" / "checkpoint"
    _checkpoint_for_deploy(ckpt)
    (agent,) = graph.deploy_graph(graph.DeployArgs(checkpoint=str(ckpt), run_dir=str(tmp_path / "deploy")))
    twin = _specs(tmp_path / "unused", lockstep=False, real_time_factor=1.0)[0]
    twin = dataclasses.replace(
        twin, parameters={**twin.parameters, "publish_clock": False},
        remappings=((graph.AGENT_COMMAND_TOPIC, graph.FORWARD_VELOCITY_TOPIC),))
    g = Graph([twin, agent], tmp_path / "logs")
    probe = Probe(ros_context)
    from std_msgs.msg import Float64MultiArray

    forwarded: list[float] = []
    probe.node.create_subscription(Float64MultiArray, graph.FORWARD_VELOCITY_TOPIC,
                                   lambda _m: forwarded.append(time.monotonic()), 50)
    try:
        ok = probe.spin_until(lambda: len(forwarded) >= 40 and len(probe.states) >= 40, 90.0, g.alive)
        assert ok, f"{len(forwarded)} forwarded commands; alive={g.alive()}\n{g.log_text()}"
        assert probe.commands == [], "the deploy agent must not publish on the twin's default topic"
        rate = (len(forwarded) - 1) / (forwarded[-1] - forwarded[0])
        assert 10.0 <= rate <= 30.0, f"deploy agent commanded at {rate:.1f} Hz\n{g.log_text()}"
        assert np.abs(probe.states[-1][2] - probe.states[0][2]).max() > 1e-3, "the arm does not move"
    finally:
        probe.close()
        codes = g.stop()
    assert codes == {"agent_node": 0, "twin_node": 0}, f"exit codes {codes}\n{g.log_text()}"
