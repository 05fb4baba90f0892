"""`mbpo-ros train` end to end, in a reduced form of `make demo`'s budget (slow).

The real command as a subprocess: twin_node + agent_node in lock-step simulated time on their
own ROS domain, the progress tail, the SIGINT shutdown with a final checkpoint, the final
deterministic evaluation. The learned policy must beat the random policy measured at start.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ros]

#: reduced budget (the default is 2000; it was 3000 when these figures were taken). With goal relabelling in the
#: preset (issue 13), 3000 steps gave 80 % deterministic success and 1.9 cm (random: 0 %) in 6.5 min under load 5.7
#: (about 3 min quiet); before relabelling this test needed 4500 steps. The fifth round's preset (utd 20, SAC
#: batches of 512, gamma 0.85) costs twice the compute per learning step and learns in fewer: 2000 steps. The eighth
#: round's preset learns from env step 250 (not 1,000) and reaches 90 % by 750 steps in the benchmark: 1000 steps
#: (750 learning steps, fewer than the 1,000 of before; the suite sits at its 15-minute budget).
REDUCED_STEPS = 1000
TIME_LIMIT_S = 480  # the slow end-to-end budget: 8 minutes


def test_mbpo_ros_train_reduced_budget_beats_random(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ)
    env.setdefault("AMENT_PREFIX_PATH", os.path.dirname(os.path.dirname(sys.executable)))
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mbpo_ros.cli", "train", "--steps", str(REDUCED_STEPS), "--seed", "0",
         "--out", str(out), "--eval-episodes", "20", "--baseline-episodes", "5", "--device", "cpu"],
        capture_output=True, text=True, timeout=TIME_LIMIT_S + 60, env=env,
    )
    wall = time.monotonic() - t0
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert wall < TIME_LIMIT_S, f"reduced demo took {wall:.0f} s"
    summary = json.loads((out / "summary.json").read_text())
    for key in ("env_steps", "episodes", "success_rate", "final_distance_m", "wall_seconds"):
        assert key in summary, key
    assert summary["env_steps"] >= REDUCED_STEPS
    assert summary["episodes"] >= REDUCED_STEPS // 100
    assert summary["node_exit_codes"] == {"agent_node": 0, "twin_node": 0}
    for name in ("checkpoint", "transitions/metadata.yaml", "metrics.csv", "learning_curve.png", "episodes.csv", "tb"):
        assert (out / name).exists(), f"{name} missing from the run directory"
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "tb").glob("events.out.tfevents.*")), "no TensorBoard scalars"
    # the agent's own metrics: SAC and model losses once learning runs, and the final evaluation (eval/)
    from mbpo_ros.io.metrics import read_metrics_csv

    _columns, mrows = read_metrics_csv(out / "metrics.csv")
    trained = [r for r in mrows if r.get("train/critic_loss") not in ("", "nan")]
    assert trained and all(float(trained[-1][k]) == float(trained[-1][k]) for k in
                           ("train/critic_loss", "train/actor_loss", "train/alpha", "model/holdout_mse"))
    assert float(mrows[-1]["eval/success_rate"]) == summary["success_rate"]
    # The learned policy is better than the random one measured at start, by a margin.
    assert summary["final_distance_m"] < 0.5 * summary["random_final_distance_m"], summary
    assert summary["success_rate"] > summary["random_success_rate"], summary
    assert proc.stdout.strip().splitlines()[-1].startswith("mbpo-ros train:"), "ends with a one-line summary"

    # --resume continues this run (regression: a second `--out` on a run re-evaluated the old checkpoint and
    # exited 0): the agent resumes from the checkpoint and the episodes go on past it; the metrics keep
    # the rows up to the checkpoint and add the new ones
    from mbpo_ros.sim_train import _checkpoint_steps

    def twin_goals() -> list[str]:
        return re.findall(r"episode \d+: goal (\(.*?\))", (out / "logs" / "twin_node.log").read_text())

    first_goals = twin_goals()
    ckpt_steps = _checkpoint_steps(out / "checkpoint")
    assert ckpt_steps >= summary["env_steps"]
    target = ckpt_steps + 200
    proc = subprocess.run(
        [sys.executable, "-m", "mbpo_ros.cli", "train", "--steps", str(target), "--seed", "0",
         "--out", str(out), "--resume", "--eval-episodes", "2", "--baseline-episodes", "1", "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert f"resuming at {ckpt_steps} env steps" in proc.stdout
    resumed = json.loads((out / "summary.json").read_text())
    assert resumed["env_steps"] >= target and resumed["eval_episodes"] == 2
    _columns, later = read_metrics_csv(out / "metrics.csv")
    steps = [int(float(r["env_steps"])) for r in later if r.get("train/episodes")]
    assert steps == sorted(steps) and steps[-1] >= target, steps
    assert len(steps) > len([r for r in mrows if r.get("train/episodes")]), "no episode after the resume"
    # the twin's log keeps the first run's lines, and its episodes go on with new goals (regression: a resumed
    # run restarted the twin from the same seed and replayed the first run's goals, and overwrote its log)
    goals = twin_goals()
    assert len(first_goals) >= 5 and goals[:len(first_goals)] == first_goals
    new = goals[len(first_goals):]
    assert new and not set(new) & set(first_goals), (first_goals[:3], new)
