"""Learning: MBPO (InvertedPendulum-v5 preset) reaches an evaluation return of 950 within 5,000 env steps.

Two seeds run at once as `mbpo-ros gym` processes (one torch thread each, so both cores work), and
each stops as soon as an evaluation (mean of the preset's episodes, deterministic policy) reaches 950.
Time budget: 10 minutes for both seeds on a 2-core machine.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SEEDS = (0, 1)
TARGET = 950.0
MAX_STEPS = 5000
# Budget: 10 minutes for both seeds on a quiet 2-core machine (about 5 expected). The hard kill is
# later so that a machine shared with other jobs gives a slow pass rather than a false failure; the
# criterion itself is in env steps, not seconds.
TIMEOUT_S = 1200


@pytest.mark.slow
@pytest.mark.long  # make test-long: beyond make test's 15-minute budget
def test_inverted_pendulum_reaches_950_within_5000_steps(tmp_path):
    pytest.importorskip("gymnasium")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    procs = {}
    logs = {}
    try:
        for seed in SEEDS:
            out = tmp_path / f"s{seed}"
            logs[seed] = open(tmp_path / f"s{seed}.log", "w")
            procs[seed] = subprocess.Popen(
                [sys.executable, "-m", "mbpo_ros.cli", "gym", "--env", "InvertedPendulum-v5",
                 "--steps", str(MAX_STEPS), "--seed", str(seed), "--out", str(out), "--threads", "1",
                 "--target-return", str(TARGET), "--no-tensorboard", "--quiet"],
                stdout=logs[seed], stderr=subprocess.STDOUT, env=env,
            )
        deadline = time.monotonic() + TIMEOUT_S
        for p in procs.values():
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs.values():
            f.close()
    for seed in SEEDS:
        text = (tmp_path / f"s{seed}.log").read_text()
        assert procs[seed].returncode == 0, f"seed {seed} failed:\n{text[-3000:]}"
        summary = json.loads(text.strip().splitlines()[-1])
        with open(Path(summary["out"]) / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        curve = [(int(r["env_steps"]), float(r["eval_return"])) for r in rows]
        best = max(r for _, r in curve)
        assert summary["reached_target"] and best >= TARGET, f"seed {seed}: best {best:.0f} < {TARGET}; curve {curve}"
        assert summary["env_steps"] <= MAX_STEPS
