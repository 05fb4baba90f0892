"""agent_node against the MuJoCo twin in lock-step simulated time (slow).

Lock-step + training: the agent waits for the trainer before every command, so two runs with the
same seed produce the same transitions, bit for bit, while the learner is updating the policy.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_agent_support import PARAMS, REPO, AgentProcess

pytestmark = [pytest.mark.ros, pytest.mark.slow]

SMALL_TRAIN = {
    "mode": "train",
    "lockstep": True,
    "use_sim_time": True,
    "device": "cpu",
    "checkpoint_period": 0.0,
    "reach.episode_seconds": 2.5,  # 50 steps per episode at 20 Hz
    "mbpo.init_random_steps": 100,
    "mbpo.model_train_freq": 50,
    "mbpo.epoch_length": 100,
    "mbpo.utd": 2,
    "mbpo.rollout_batch_size": 400,
    "mbpo.max_model_epochs": 3,
    "mbpo.max_model_train_seconds": 0.0,  # a wall-clock cap would make the run timing-dependent
    "ensemble.num_members": 3,
    "ensemble.num_elites": 2,
    "ensemble.hidden_size": 32,
    "sac.hidden_size": 32,
    "sac.batch_size": 64,
    "ensemble.batch_size": 64,
}


def _twin(tmp_path: Path, name: str) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "twin_node"
    argv = [str(exe), "--ros-args", "--params-file", str(REPO / "config" / "twin.yaml"),
            "-p", "lockstep:=true", "-p", "real_time_factor:=0.0", "-p", "seed:=3", "-p", "control_period:=0.05"]
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - the process owns it until it exits
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=str(tmp_path))


def _episodes(run_dir: Path) -> list[dict]:
    try:
        with open(run_dir / "episodes.csv", newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def _run(tmp_path: Path, name: str, episodes: int, timeout: float = 150.0) -> Path:
    run_dir = tmp_path / name
    twin = _twin(tmp_path, f"{name}-twin")
    agent = AgentProcess(tmp_path, {**SMALL_TRAIN, "run_dir": str(run_dir)}, name=f"{name}-agent")
    try:
        deadline = time.monotonic() + timeout
        while len(_episodes(run_dir)) < episodes:
            assert agent.alive(), agent.output()
            assert twin.poll() is None, (tmp_path / f"{name}-twin.log").read_text()
            assert time.monotonic() < deadline, f"{len(_episodes(run_dir))} episodes in {timeout} s\n{agent.output()}"
            time.sleep(0.2)
    finally:
        code = agent.stop(timeout=90)
        twin.send_signal(2)
        try:
            twin.wait(15)
        except subprocess.TimeoutExpired:
            twin.kill()
            twin.wait(5)
    assert code == 0, agent.output()
    return run_dir


def test_lockstep_training_run_is_deterministic(tmp_path, ros_domain):
    from mbpo_ros.io.transition_log import read_transitions

    assert PARAMS.is_file()
    episodes = 5  # 250 steps: random for 100, then the learner's policy, retrained every 50
    a = read_transitions(_run(tmp_path, "a", episodes))
    b = read_transitions(_run(tmp_path, "b", episodes))
    n = episodes * 50
    assert len(a["obs"]) >= n and len(b["obs"]) >= n
    for key in ("obs", "action", "reward", "next_obs", "truncated", "episode", "step", "stamp_ns"):
        np.testing.assert_array_equal(a[key][:n], b[key][:n], err_msg=key)
    # the policy did take over (actions after init_random_steps are not the random stream) and
    # the episodes are the twin's: 50 steps each, truncated at the time limit, stamps 50 ms apart
    assert np.count_nonzero(a["truncated"][:n]) == episodes
    assert np.all(a["step"][:n] == np.tile(np.arange(50), episodes))
    steps = np.diff(a["stamp_ns"][:50])
    assert np.all(steps == 50_000_000)
    # consecutive control ticks: next_obs of one step is the obs of the next within an episode,
    # and the reward is the shared task function of the logged transition
    from mbpo_ros.core.reach import ReachTask

    same = a["episode"][1:n] == a["episode"][: n - 1]
    np.testing.assert_array_equal(a["next_obs"][: n - 1][same], a["obs"][1:n][same])
    task = ReachTask()
    np.testing.assert_allclose(task.reward_batch(a["obs"][:n], a["action"][:n], a["next_obs"][:n]),
                               a["reward"][:n], rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(a["action"][:n]) <= 1.0)
    rows = _episodes(tmp_path / "a")
    assert float(rows[-1]["achieved_utd"]) > 0.0
