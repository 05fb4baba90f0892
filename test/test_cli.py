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


def _ends_far_task():
    from mbpo_ros.core.reach import ReachTask

    class EndsFar(ReachTask):
        """Reach whose episodes end where the end effector is over 45 cm from its goal: with the policy
        below, episodes of different lengths."""

        name = "reach_ends_far"

        def termination_batch(self, obs, act, next_obs):
            return self.distance(next_obs) > 0.45

    return EndsFar


@pytest.mark.parametrize("ends_early", [False, True], ids=["reach", "episodes_of_different_lengths"])
def test_fixed_episodes_side_by_side_are_the_episodes_one_by_one(ends_early):
    """FixedEpisodes (benchmarks, learning tests) evaluates exactly what `mbpo-ros eval` does: the same
    resets, the same outcome per episode, also when episodes end at different steps."""
    task = _ends_far_task() if ends_early else "reach"
    lengths: list[int] = []
    calls = [0]

    def act(obs):
        return np.tanh(obs[..., :6])

    def counted(obs, rng):
        calls[0] += 1
        return act(obs)

    env = sim_eval.make_env(task=task)
    one = sim_eval.run_episodes(counted, 4, 3, env, on_episode=lambda: lengths.append(calls[0] - sum(lengths)))
    env.close()
    evaluator = sim_eval.FixedEpisodes(4, 3, task=task)
    side = evaluator(act)
    again = evaluator(act)  # the envs are reused: the same resets, the same result
    evaluator.close()
    for a, b in ((one, side), (side, again)):
        assert (a.episodes, a.success_rate) == (b.episodes, b.success_rate)
        np.testing.assert_allclose([a.final_distance_m, a.final_distance_median_m, a.mean_return],
                                   [b.final_distance_m, b.final_distance_median_m, b.mean_return], rtol=1e-9)
    if ends_early:
        assert len(set(lengths)) > 1, lengths  # some end early, at different steps
    else:
        assert lengths == [100] * 4


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


# ---------------------------------------------------------------------- refusals: one line, nothing touched


def _refused(argv: list[str], capsys, code: int = 2) -> str:
    """Run `mbpo-ros argv` in-process; it must exit ``code`` with exactly one line on stderr, no traceback."""
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_train_refuses_an_existing_run_directory(tmp_path, capsys):
    """Regression: `--out DIR` on a finished run read its episodes.csv, evaluated the old checkpoint,
    overwrote summary.json and exited 0."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "episodes.csv").write_text("env_steps,episodes\n6000,60\n")
    (run / "summary.json").write_text('{"success_rate": 0.9}\n')
    line = _refused(["train", "--out", str(run)], capsys)
    assert line.startswith("mbpo-ros train: --out") and "--resume" in line
    assert (run / "summary.json").read_text() == '{"success_rate": 0.9}\n'
    assert sorted(p.name for p in run.iterdir()) == ["episodes.csv", "summary.json"]


def test_train_resume_needs_a_sound_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    assert "no checkpoint/" in _refused(["train", "--out", str(run), "--resume"], capsys)
    assert "needs --out" in _refused(["train", "--resume"], capsys)
    ckpt = run / "checkpoint"
    _tiny_checkpoint(ckpt)
    # 40 env steps so far: --steps must be above them to go on
    assert "already has 40 env steps" in _refused(["train", "--out", str(run), "--resume", "--steps", "40"], capsys)
    # a hostile checkpoint (a file swapped behind the manifest's back) is refused before any node starts
    (ckpt / "arrays.npz").write_bytes(b"\x80\x04not what the manifest says")
    line = _refused(["train", "--out", str(run), "--resume", "--steps", "100"], capsys)
    assert line.startswith("mbpo-ros train: --resume:") and "arrays.npz" in line
    assert not (run / "logs").exists(), "no graph was started"


def test_train_refuses_a_yaml_syntax_error_and_misspelt_parameters(tmp_path, capsys):
    """Regression: `control_rat` / `sac.gama` in a params file were ignored and the run used defaults."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**/agent_node:\n  ros__parameters:\n    control_rate: [20.0\n")
    line = _refused(["train", "--out", str(tmp_path / "a"), "--config", str(bad)], capsys)
    assert "not valid YAML" in line and "line 4" in line
    typo = tmp_path / "typo.yaml"
    typo.write_text("/**/agent_node:\n  ros__parameters:\n    control_rat: 10.0\n")
    line = _refused(["train", "--out", str(tmp_path / "b"), "--config", str(typo)], capsys)
    assert "'control_rat'" in line and "did you mean 'control_rate'?" in line
    typo.write_text("/**/agent_node:\n  ros__parameters:\n    sac:\n      gama: 0.9\n")
    line = _refused(["train", "--out", str(tmp_path / "c"), "--config", str(typo)], capsys)
    assert "'sac.gama'" in line and "did you mean 'sac.gamma'?" in line
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_device_cuda_without_cuda_is_one_line(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = _refused(["train", "--out", str(tmp_path / "run"), "--device", "cuda"], capsys)
    assert "CUDA is not available" in line
    line = _refused(["gym", "--env", "InvertedPendulum-v5", "--device", "cuda", "--out", str(tmp_path / "g")], capsys)
    assert line.startswith("mbpo-ros gym:") and "CUDA is not available" in line


def test_gym_unknown_env_and_the_reach_task_are_one_line(tmp_path, capsys):
    line = _refused(["gym", "--env", "Foo-v0", "--out", str(tmp_path / "f")], capsys)
    assert "no such Gymnasium task" in line and "Hopper-v5" in line
    assert "did you mean Hopper-v5" in _refused(["gym", "--env", "Hoper-v5", "--out", str(tmp_path / "h")], capsys)
    assert "mbpo-ros train" in _refused(["gym", "--env", "reach", "--out", str(tmp_path / "r")], capsys)
    assert not any(tmp_path.iterdir()), "nothing is written for a refused run"


def test_train_honours_the_users_ros_domain_id(monkeypatch):
    """Regression: `mbpo-ros train` printed ROS_DOMAIN_ID=1 with 61 set."""
    monkeypatch.setenv("ROS_DOMAIN_ID", "61")
    with sim_train.ros_domain() as did:
        assert did == 61
    monkeypatch.setenv("ROS_DOMAIN_ID", "sixty")
    with pytest.raises(ValueError, match="ROS_DOMAIN_ID"), sim_train.ros_domain():
        pass
    monkeypatch.delenv("ROS_DOMAIN_ID")
    with sim_train.ros_domain() as did:
        assert 0 <= did <= 232
