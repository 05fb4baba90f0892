"""`mbpo-ros` command line: help text, `eval` on a real checkpoint, the episodes.csv tail of `train`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mbpo_ros import cli, sim_eval, sim_train

MBPO_ROS = [sys.executable, "-m", "mbpo_ros.cli"]


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_every_subcommand(capsys):
    text = _help(["--help"], capsys)
    for name, (_module, help_text) in cli.SUBCOMMANDS.items():
        assert name in text
        assert help_text.split()[0] in text


def test_train_help_is_accurate(capsys):
    text = " ".join(_help(["train", "--help"], capsys).split())
    for option in ("--steps N", "--seed S", "--out DIR", "--eval-episodes N", "--max-minutes M"):
        assert option in text
    assert f"(default {sim_train.DEFAULT_STEPS})" in text
    assert "runs/reach-<timestamp>" in text
    args = cli.build_parser().parse_args(["train"])
    assert (args.steps, args.seed, args.out, args.eval_episodes) == (sim_train.DEFAULT_STEPS, 0, None, 50)


def test_eval_help_is_accurate(capsys):
    text = " ".join(_help(["eval", "--help"], capsys).split())
    for option in ("--checkpoint DIR", "--episodes N", "--seed S"):
        assert option in text
    args = cli.build_parser().parse_args(["eval", "--checkpoint", "x"])
    assert (args.episodes, args.seed) == (50, 0)
    assert "(default 50)" in text


def test_eval_of_a_missing_checkpoint_explains_itself(tmp_path):
    proc = subprocess.run([*MBPO_ROS, "eval", "--checkpoint", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "nope" in proc.stderr


def test_episode_tail_reads_complete_rows_only(tmp_path):
    path = tmp_path / "episodes.csv"
    tail = sim_train.EpisodeTail(path)
    assert tail.poll() == []  # not written yet
    with open(path, "w") as f:
        f.write("env_steps,episodes,episode_return,success\n100,1,-20.5,0\n200,2,-1")
    rows = tail.poll()
    assert rows == [{"env_steps": 100.0, "episodes": 1.0, "episode_return": -20.5, "success": 0.0}]
    with open(path, "a") as f:
        f.write("0.25,1\n300,3,,1\n")
    rows = tail.poll()
    assert [r["env_steps"] for r in rows] == [200.0, 300.0]
    assert rows[0]["episode_return"] == -10.25 and rows[0]["success"] == 1.0
    assert np.isnan(rows[1]["episode_return"])
    assert len(tail.rows) == 3


def test_random_policy_baseline_is_deterministic_and_poor():
    a = sim_eval.random_policy_baseline(episodes=3, seed=5)
    b = sim_eval.random_policy_baseline(episodes=3, seed=5)
    assert a.success_rate == b.success_rate and a.final_distance_m == b.final_distance_m
    assert a.success_rate <= 1 / 3, "a random policy should rarely end within 3 cm of the goal"
    assert a.final_distance_m > 0.03


def _tiny_checkpoint(path: Path, seed: int = 0):
    """A real MBPO trained for a few updates on random Reach transitions, saved like the trainer does."""
    import dataclasses

    from mbpo_ros.core.config import preset
    from mbpo_ros.core.tasks import get_task
    from mbpo_ros.core.trainer import MBPO
    from mbpo_ros.io.checkpoint import save_checkpoint

    cfg = preset("reach")
    cfg = dataclasses.replace(cfg, seed=seed, device="cpu",
                              sac=dataclasses.replace(cfg.sac, hidden_size=32, batch_size=16),
                              mbpo=dataclasses.replace(cfg.mbpo, init_random_steps=10))
    task = get_task("reach")
    mbpo = MBPO(task.obs_dim, task.act_dim, cfg, task)
    rng = np.random.default_rng(seed)
    for _ in range(40):
        obs = rng.normal(size=task.obs_dim).astype(np.float32)
        nxt = obs + 0.01 * rng.normal(size=task.obs_dim).astype(np.float32)
        act = rng.uniform(-1, 1, task.act_dim).astype(np.float32)
        mbpo.add(obs, act, float(-np.linalg.norm(nxt[-3:])), nxt, False)
    mbpo.update(5)
    tensors, arrays, meta = mbpo.state()
    save_checkpoint(path, tensors=tensors, arrays=arrays, meta=meta)
    return mbpo


def test_eval_loads_the_checkpoint_policy_and_reports(tmp_path):
    ckpt = tmp_path / "run" / "checkpoint"
    mbpo = _tiny_checkpoint(ckpt)
    policy = sim_eval.load_policy(tmp_path / "run")  # a run directory works too
    obs = np.random.default_rng(1).normal(size=(4, 21)).astype(np.float32)
    np.testing.assert_allclose(policy.act(obs, deterministic=True),
                               mbpo.policy_snapshot().act(obs, deterministic=True), atol=1e-6)
    proc = subprocess.run([*MBPO_ROS, "eval", "--checkpoint", str(ckpt), "--episodes", "2", "--seed", "3",
                           "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["episodes"] == 2
    assert 0.0 <= result["success_rate"] <= 1.0
    assert result["final_distance_m"] > 0.0
