"""LearningSession: periodic checkpoints are never starved by training (issue 11)."""

from __future__ import annotations

import json
import time

import numpy as np
from conftest import fill_disk
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


class _Logger:
    """The node's logger's three methods, recording what the learning side says."""

    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def info(self, text, **_kw):
        self.lines.append(("info", text))

    def warning(self, text, **_kw):
        self.lines.append(("warning", text))

    def error(self, text, **_kw):
        self.lines.append(("error", text))


def test_full_disk_is_error_on_diagnostics_said_once_and_ok_again_when_space_returns(small_disk):
    """Regression (issue 11): on a full disk the log stopped for good with only a stderr line. The
    node's learning side (AgentLearning, what /diagnostics shows) says ERROR once through the node's
    logger, then WARN with the counts when the log writes again; close() never raises."""
    from types import SimpleNamespace

    from mbpo_ros.control import Transition
    from mbpo_ros.nodes.agent_learning import AgentLearning

    p = SimpleNamespace(mode="collect", log_transitions=True, lockstep=False)
    log = _Logger()
    learning = AgentLearning(p, None, SimpleNamespace(obs_dim=OBS, act_dim=ACT), small_disk / "run", log)
    learning.tlog.retry_interval = 0.05
    rng = np.random.default_rng(0)

    def submit(n, k0):
        for k in range(k0, k0 + n):
            o = rng.normal(size=OBS).astype(np.float32)
            learning.submit(Transition(o, np.zeros(ACT, np.float32), 0.0, o, False, False, k, k, k + 1))
        learning.tlog.flush()

    submit(50, 0)
    assert learning.status(50)[0] == "OK"
    fill_disk(small_disk / "filler")
    submit(300, 50)
    level, message, values = learning.status(350)
    assert level == "ERROR" and "transition log" in message and values["log_state"] == "ERROR", (level, message)
    learning.status(350)  # said once, not on every diagnostics tick
    errors = [t for lvl, t in log.lines if lvl == "error"]
    assert len(errors) == 1 and "cannot write" in errors[0], log.lines
    (small_disk / "filler").unlink()
    deadline = time.monotonic() + 10
    while learning.tlog.status().level == "ERROR" and time.monotonic() < deadline:
        submit(1, 1000)
        time.sleep(0.05)
    level, message, values = learning.status(400)
    assert level == "WARN" and int(values["log_lost"]) + int(values["log_dropped"]) > 0, (level, message, values)
    assert any(lvl == "warning" and "lost" in t for lvl, t in log.lines), log.lines
    assert learning.close() is True  # no learner in collect mode: nothing dead; never raises
