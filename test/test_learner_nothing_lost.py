"""Issue 11, "Nothing lost": kill -9 at random moments, restart, and the learner holds exactly the log.

A driver process runs the product's LearningSession (transition log + supervised learner child,
periodic checkpoints, log rotation) on synthetic transitions at ~200 Hz with a tiny MBPO config
that retrains every 20 steps, and is killed with SIGKILL at random moments: sometimes the driver
alone (its child notices and exits), sometimes driver and child together, sometimes the child alone
first (the supervisor restarts it), some during start-up (checkpoint load and log replay). Then a
last session starts, replays, and writes its final checkpoint: its real buffer must equal the set
of logged transitions, row for row: 0 lost, 0 duplicated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mbpo_ros.io.checkpoint import load_checkpoint
from mbpo_ros.io.transition_log import read_transitions, segment_paths
from mbpo_ros.learner.log_ids import IdSet

_DRIVER = textwrap.dedent(
    """
    import dataclasses, json, sys, time
    import numpy as np
    from mbpo_ros.core.config import preset
    from mbpo_ros.core.reach import ReachTask
    from mbpo_ros.learner.session import LearningSession
    from mbpo_ros.learner.supervisor import RestartPolicy
    from mbpo_ros.learner.worker import WorkerOptions

    run_dir, seed, final = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "final"
    OBS, ACT = ReachTask().obs_dim, ReachTask().act_dim
    cfg = preset("reach")  # shrunk (as test_learner_supervisor.tiny_cfg): retrains every 20 steps, in ms
    cfg = dataclasses.replace(
        cfg, seed=seed, device="cpu", threads=1,
        ensemble=dataclasses.replace(cfg.ensemble, num_members=3, num_elites=2, hidden_size=32, num_hidden=2,
                                     weight_decays=[2.5e-5, 5e-5, 1e-4], batch_size=32),
        sac=dataclasses.replace(cfg.sac, hidden_size=32, batch_size=32),
        mbpo=dataclasses.replace(cfg.mbpo, init_random_steps=30, model_train_freq=20, rollout_batch_size=64, utd=2,
                                 epoch_length=50, rollout_schedule=[0, 1, 1, 1], max_model_epochs=3,
                                 max_model_train_seconds=0.0, real_buffer_size=100_000, rollout_chunk=64))
    s = LearningSession(run_dir, OBS, ACT, cfg, "reach", checkpoint_period=0.4,
                        options=WorkerOptions(torch_threads=1, nice=0, chunk_updates=10, stats_interval_s=0.1,
                                              start_timeout_s=90.0),
                        restart=RestartPolicy(backoff_s=0.1),
                        log_options=dict(flush_every=10, flush_interval=0.2, max_segment_transitions=60))
    s.start()
    print("ready", s.trainer.stats()["pid"], flush=True)
    if final:
        st = s.trainer.stats()
        r = s.close(checkpoint=True)
        print(json.dumps({"checkpoint": r.checkpoint, "error": r.error, "replayed": st["replayed"],
                          "duplicates_skipped": st["duplicates_skipped"]}), flush=True)
        sys.exit(0)
    rng = np.random.default_rng(seed)
    k = 0
    while True:
        obs = rng.normal(size=OBS).astype(np.float32)
        act = rng.uniform(-1, 1, ACT).astype(np.float32)
        s.record(obs, act, float(rng.normal()), obs + 0.1, bool(k % 97 == 96), bool(k % 50 == 49),
                 seed, k, time.time_ns())
        k += 1
        time.sleep(0.005)
    """
)


def _start(run_dir: Path, seed: int, final: bool = False) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", _DRIVER, "", str(run_dir), str(seed),
                             "final" if final else "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return not any(line.startswith("State:") and "Z" in line.split()[1] for line in status.splitlines())


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone


def _wait_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            _kill(pid)
            pytest.fail(f"learner child {pid} outlived its killed parent by {timeout} s")
        time.sleep(0.05)


def _rows(obs, act, rew, nxt, done) -> np.ndarray:
    """Transitions as float32 rows, sorted, for a multiset comparison."""
    m = np.concatenate([np.asarray(obs, np.float32), np.asarray(act, np.float32),
                        np.asarray(rew, np.float32)[:, None], np.asarray(nxt, np.float32),
                        np.asarray(done, np.float32)[:, None]], axis=1)
    return m[np.lexsort(m.T[::-1])]


def _kill_cycles(run_dir: Path, kills: int, seed: int) -> list[str]:
    """Kill -9 `kills` times: per driver session, the learner child alone at a random moment (the
    supervisor restarts it from checkpoint + log), then the driver (alone, or with its child) at
    another; every fourth session is killed during start-up (checkpoint load, log replay) instead."""
    rng = np.random.default_rng(seed)
    what: list[str] = []
    c = 0
    while len(what) < kills:
        proc = _start(run_dir, seed=1000 * seed + c)
        try:
            if c % 4 == 3:
                time.sleep(float(rng.uniform(0.3, 2.0)))
                _kill(proc.pid)
                what.append("driver during start-up")
            else:
                line = proc.stdout.readline()
                assert line.startswith("ready"), f"driver did not start: {line!r} {proc.stderr.read()}"
                time.sleep(float(rng.uniform(0.0, 1.2)))
                _kill(int(line.split()[1]))
                what.append("learner child")
                time.sleep(float(rng.uniform(0.2, 2.5)))  # the restart (back-off 0.1 s, replay) may still run
                if c % 2:
                    for pid in _children_of(run_dir):
                        _kill(pid)
                    what.append("driver and child")
                else:
                    what.append("driver")
                _kill(proc.pid)
        finally:
            _kill(proc.pid)
            proc.wait(timeout=30)
            proc.stdout.close()
            proc.stderr.close()
        for pid in _children_of(run_dir):
            _wait_gone(pid)  # orphaned learners exit by themselves (and hold the run dir's lock until then)
        c += 1
    return what


def _children_of(run_dir: Path) -> list[int]:
    """The pid in the learner lock file, if that process still runs."""
    lock = run_dir / ".learner.lock"
    try:
        pid = int(lock.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return []
    return [pid] if _alive(pid) else []


def _check_learner_equals_log(run_dir: Path) -> dict:
    final = _start(run_dir, seed=999_999, final=True)
    out, err = final.communicate(timeout=180)
    assert final.returncode == 0, f"final session failed: {out}\n{err}"
    result = json.loads(out.splitlines()[-1])
    assert result["error"] == "" and result["checkpoint"], result

    log = read_transitions(run_dir)
    ids = log["log_id"]
    assert len(np.unique(ids)) == len(ids), "the log holds a transition twice"
    tensors, _, meta = load_checkpoint(Path(result["checkpoint"]))
    held = IdSet.from_ranges(meta["log_ids"])
    want = IdSet()
    for i in ids:
        want.add(int(i))
    assert held == want, "the checkpoint's record of what it holds differs from the log"
    n = int(meta["real_buffer"]["size"])
    assert n == len(ids) == meta["counters"]["env_steps"], (n, len(ids))
    got = _rows(*(tensors[f"real.{k}"].numpy() for k in ("obs", "act", "rew", "next_obs", "done")))
    expect = _rows(log["obs"], log["action"], log["reward"], log["next_obs"], log["terminated"])
    np.testing.assert_array_equal(got, expect, err_msg="learner buffer != logged transitions")
    return {"logged": len(ids), "segments": len(segment_paths(run_dir)), **result}


def test_kill_9_at_20_random_moments_loses_and_duplicates_nothing(tmp_path):
    what = _kill_cycles(tmp_path / "run", kills=20, seed=11)
    summary = _check_learner_equals_log(tmp_path / "run")
    assert len(what) >= 20 and summary["logged"] > 300 and summary["segments"] > 10, (summary, what)


@pytest.mark.slow
@pytest.mark.long  # make test-long: beyond make test's 15-minute budget
def test_kill_9_at_60_random_moments_longer_runs(tmp_path):
    what = _kill_cycles(tmp_path / "run", kills=60, seed=12)
    summary = _check_learner_equals_log(tmp_path / "run")
    assert summary["logged"] > 1500, (summary, what)
