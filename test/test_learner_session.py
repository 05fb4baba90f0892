"""LearningSession: periodic checkpoints are never starved by training (issue 11)."""

from __future__ import annotations

import json
import time

import numpy as np
from test_learner_supervisor import ACT, OBS, OPTS, tiny_cfg

from mbpo_ros.learner.session import LearningSession


def _created(run_dir) -> float:
    try:
        doc = json.loads((run_dir / "checkpoint" / "meta.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return float("nan")
    return doc["created_unix_ns"] * 1e-9


def test_periodic_checkpoint_age_stays_under_period_plus_one_piece_of_work(tmp_path):
    """Regression (issue 11): the periodic checkpoint stayed at 1,037 env steps for 7 rounds while the
    learner retrained. Bound: period + the longest piece of work (a retrain, capped by
    max_model_train_seconds) + the write, sampled every 50 ms while transitions stream in."""
    period, retrain_cap = 1.0, 0.6
    cfg = tiny_cfg(model_train_freq=40, max_model_epochs=1000, max_model_train_seconds=retrain_cap,
                   real_buffer_size=20_000)
    s = LearningSession(tmp_path, OBS, ACT, cfg, "reach", checkpoint_period=period, options=OPTS)
    s.start()
    rng = np.random.default_rng(0)
    ages, t_end = [], time.monotonic() + 9.0
    try:
        k = 0
        while time.monotonic() < t_end:
            for _ in range(10):
                obs = rng.normal(size=OBS).astype(np.float32)
                s.record(obs, rng.uniform(-1, 1, ACT), float(rng.normal()), obs + 0.1, False, False, 0, k,
                         time.time_ns())
                k += 1
            time.sleep(0.05)
            created = _created(tmp_path)
            if created == created and time.monotonic() > t_end - 7.0:  # after the first period
                ages.append(time.time() - created)
        st = s.trainer.stats()
    finally:
        result = s.close()
    assert result.error == "" and not result.learner_dead, result
    assert st["model_trains"] >= 3, f"the learner should have retrained while checkpoints ran: {st}"
    bound = period + retrain_cap + 1.5  # 1.5 s: the write plus a loaded 2-core machine's scheduling
    assert ages and max(ages) < bound, f"newest checkpoint {max(ages):.2f} s old (bound {bound} s)"
