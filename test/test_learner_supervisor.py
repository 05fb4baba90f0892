"""learner.TrainerProcess: real MBPO in a real supervised, spawned child process, on tiny configs (CPU)."""

from __future__ import annotations

import dataclasses
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

from mbpo_ros.core.config import preset
from mbpo_ros.core.tasks import get_task
from mbpo_ros.learner.supervisor import RestartPolicy, TrainerProcess
from mbpo_ros.learner.worker import WorkerOptions

TASK = get_task("reach")
OBS, ACT = TASK.obs_dim, TASK.act_dim
OPTS = WorkerOptions(torch_threads=1, chunk_updates=10, stats_interval_s=0.1, start_timeout_s=90.0)


def tiny_cfg(seed: int = 0, **mbpo):
    """preset("reach") shrunk so that training starts after a few dozen transitions and takes ms."""
    cfg = preset("reach")
    ens = dataclasses.replace(
        cfg.ensemble, num_members=3, num_elites=2, hidden_size=32, num_hidden=2,
        weight_decays=[2.5e-5, 5e-5, 1e-4], batch_size=32,
    )
    sac = dataclasses.replace(cfg.sac, hidden_size=32, batch_size=32)
    loop = dict(
        init_random_steps=30, model_train_freq=20, rollout_batch_size=64, utd=2, epoch_length=50,
        rollout_schedule=[0, 1, 1, 1], max_model_epochs=3, max_model_train_seconds=0.0,
        real_buffer_size=5000, rollout_chunk=64,
    )
    loop.update(mbpo)
    return dataclasses.replace(
        cfg, ensemble=ens, sac=sac, mbpo=dataclasses.replace(cfg.mbpo, **loop), seed=seed, device="cpu", threads=1
    )


def transitions(n: int, seed: int = 1):
    """n random but fixed transitions: (obs, act, reward, next_obs, terminated, truncated)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n + 1, OBS)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, ACT)).astype(np.float32)
    rew = rng.normal(size=n)
    return [(obs[i], act[i], float(rew[i]), obs[i + 1], False, i % 25 == 24) for i in range(n)]


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def arrays_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture
def make_tp():
    """Factory of TrainerProcesses that are always closed (and their children reaped) after the test."""
    made: list[TrainerProcess] = []

    def make(run_dir, **kw):
        kw.setdefault("options", OPTS)
        tp = TrainerProcess(OBS, ACT, kw.pop("cfg", None) or tiny_cfg(), "reach", run_dir, **kw)
        made.append(tp)
        return tp

    yield make
    for tp in made:
        tp.close(checkpoint=False, timeout=5.0)
        if tp._child.proc is not None:
            assert not tp._child.proc.is_alive(), "a trainer child outlived close()"


def test_snapshots_arrive_and_change_after_training(tmp_path, make_tp):
    tp = make_tp(tmp_path)
    tp.start()
    first = tp.latest_snapshot()
    assert first is not None, "start() returns only once the first snapshot is installed"
    a = first.act(np.zeros(OBS, np.float32), deterministic=True)
    assert a.shape == (ACT,) and np.all(np.abs(a) <= 1.0)
    for tr in transitions(80):
        assert tp.submit(*tr)
    # 80 steps, 30 random: utd 2 -> 102 SAC updates are due (utd per step from step 30 on), in chunks of 10 with a snapshot each.
    wait_for(lambda: tp.stats()["sac_updates"] >= 100, 60, "100 SAC updates")
    wait_for(lambda: tp.stats()["snapshot_seq"] >= 5, 10, "snapshots after the chunks")
    st = tp.stats()
    assert st["alive"] and st["error"] == ""
    assert st["env_steps"] == 80 and st["real_buffer"] == 80
    assert st["model_buffer"] > 0 and np.isfinite(st["model_holdout_loss"])
    assert st["achieved_utd"] == pytest.approx(2.0, abs=0.05)
    last = tp.latest_snapshot()
    assert last is not first
    assert not arrays_equal(first.to_arrays(), last.to_arrays()), "training did not change the policy"


def test_checkpoint_then_resume_keeps_every_transition(tmp_path, make_tp):
    trs = transitions(120)
    tp = make_tp(tmp_path)
    tp.start()
    for tr in trs[:65]:
        assert tp.submit(*tr)
    tp._child.ring._lock.acquire()  # the child is reading the ring: submits must neither block nor lose data
    try:
        for tr in trs[65:70]:
            assert tp.submit(*tr)
        assert len(tp._stash) == 5
    finally:
        tp._child.ring._lock.release()
    path = tp.request_checkpoint(timeout=60)  # flushes the stash first
    assert Path(path) == tmp_path / "checkpoint" and Path(path).is_dir()
    st = tp.stats()
    assert st["env_steps"] == 70 and st["last_checkpoint"] == path
    tp.set_paused(True)  # transitions are still taken in while paused; no more training
    for tr in trs[70:]:
        assert tp.submit(*tr)
    tp.close(checkpoint=True, timeout=60)
    before = tp.stats()
    assert not before["alive"] and before["error"] == ""
    assert before["env_steps"] == 120 and before["real_buffer"] == 120
    final_policy = tp.latest_snapshot().to_arrays()

    tp2 = make_tp(tmp_path, resume=True)
    tp2.start()
    after = tp2.stats()
    assert after["resumed"]
    for key in ("env_steps", "sac_updates", "real_buffer", "model_buffer", "model_trains"):
        assert after[key] == before[key], key
    assert arrays_equal(tp2.latest_snapshot().to_arrays(), final_policy), "first snapshot is not the loaded policy"


def _lockstep_run(tmp_path: Path, name: str, trs, make_tp) -> tuple[dict, dict]:
    tp = make_tp(tmp_path / name, lockstep=True, cfg=tiny_cfg(seed=3))
    tp.start()
    for i, tr in enumerate(trs):
        assert tp.submit(*tr)
        assert tp.wait_until_trained(i + 1, timeout=60), f"step {i + 1} not acknowledged: {tp.stats()}"
    return tp.latest_snapshot().to_arrays(), tp.stats()


def test_lockstep_is_deterministic(tmp_path, make_tp):
    trs = transitions(60, seed=5)
    snap_a, st_a = _lockstep_run(tmp_path, "a", trs, make_tp)
    snap_b, st_b = _lockstep_run(tmp_path, "b", trs, make_tp)
    assert st_a["env_steps"] == 60 and st_a["sac_updates"] > 0
    assert st_a["sac_updates"] == st_b["sac_updates"]
    assert arrays_equal(snap_a, snap_b), "same seed and transitions gave different policies"

    from mbpo_ros.core.trainer import MBPO  # the synchronous loop the lock-step child must equal

    sync = MBPO(OBS, ACT, tiny_cfg(seed=3), TASK)
    for tr in trs:
        sync.add(*tr[:5])
        sync.step()
    assert sync.sac_updates == st_a["sac_updates"]
    assert arrays_equal(sync.policy_snapshot().to_arrays(), snap_a), "lock-step differs from a synchronous loop"


def test_lockstep_record_stashed_at_submit_is_still_trained(tmp_path, make_tp):
    """Regression (mbpo-ros train hung at env step 1100): when the ring's lock is busy at submit the
    record is stashed; in lock-step the child then waits for exactly that record, so
    wait_until_trained must push it itself."""
    tp = make_tp(tmp_path / "run", lockstep=True, cfg=tiny_cfg(seed=3))
    tp.start()
    trs = transitions(3, seed=6)
    assert tp.submit(*trs[0]) and tp.wait_until_trained(1, timeout=60)
    with tp._child.ring._lock:  # the child holds the ring at the moment the control thread submits
        assert tp.submit(*trs[1])
        assert tp._stash, "the record should have been stashed while the ring was busy"
    assert tp.wait_until_trained(2, timeout=30), f"stashed record never reached the child: {tp.stats()}"
    assert not tp._stash
    assert tp.submit(*trs[2]) and tp.wait_until_trained(3, timeout=60)
    assert tp.stats()["env_steps"] == 3


def test_full_queue_counts_drops_and_never_blocks_and_close_survives_a_stuck_child(tmp_path, make_tp):
    tp = make_tp(tmp_path, queue_size=5)
    tp.start()
    os.kill(tp._child.proc.pid, signal.SIGSTOP)  # a child that takes nothing off the queue
    try:
        trs = transitions(40)
        t0 = time.monotonic()
        accepted = [tp.submit(*tr) for tr in trs]
        elapsed = time.monotonic() - t0
        assert sum(accepted) == 5 and accepted[:5] == [True] * 5
        assert tp.stats()["queue_dropped"] == 35
        assert elapsed < 5.0, f"40 submits against a full queue took {elapsed:.1f} s"
    finally:
        os.kill(tp._child.proc.pid, signal.SIGCONT)
    wait_for(lambda: tp.stats()["env_steps"] == 5, 30, "the 5 queued transitions")
    with pytest.raises(ValueError, match="observation has 4 values"):
        tp.submit(np.zeros(4), np.zeros(ACT), 0.0, np.zeros(4), False, False)

    os.kill(tp._child.proc.pid, signal.SIGSTOP)  # stuck for good: close() must still return
    t0 = time.monotonic()
    tp.close(checkpoint=True, timeout=1.0)
    assert time.monotonic() - t0 < 15.0
    assert not tp._child.proc.is_alive()
    st = tp.stats()
    assert not st["alive"] and "did not close in order" in st["error"]


def test_killed_child_is_restarted_and_transitions_meanwhile_are_kept(tmp_path, make_tp):
    """A crashed learner: ERROR while down, restarted from its checkpoint, OK again, and the
    transitions submitted while it was down reach the new child."""
    tp = make_tp(tmp_path, restart=RestartPolicy(max_restarts=2, backoff_s=1.0))
    tp.start()
    trs = transitions(60)
    for tr in trs[:20]:
        assert tp.submit(*tr)
    tp.request_checkpoint(timeout=60)
    first_pid = tp._child.proc.pid
    os.kill(first_pid, signal.SIGKILL)
    wait_for(lambda: tp.health().level == "ERROR", 10, "the dead child to be noticed")
    h = tp.health()
    assert not h.dead and "exited unexpectedly" in h.message and "restarting" in h.message
    assert not tp.stats()["alive"]
    for tr in trs[20:40]:  # while the learner is down (1 s back-off): kept in the ring
        assert tp.submit(*tr)
    wait_for(lambda: tp.health().level == "OK", 120, "the restarted learner")
    assert tp._child.proc.pid != first_pid and tp.stats()["restarts"] == 1
    for tr in trs[40:]:
        assert tp.submit(*tr)
    tp.request_checkpoint(timeout=60)
    st = tp.stats()
    assert st["env_steps"] == 60 and st["real_buffer"] == 60 and st["alive"], st


def test_learner_that_keeps_dying_is_declared_dead_and_close_returns(tmp_path, make_tp):
    tp = make_tp(tmp_path, restart=RestartPolicy(max_restarts=0))
    tp.start()
    os.kill(tp._child.proc.pid, signal.SIGKILL)
    wait_for(lambda: tp.dead, 10, "the learner to be declared dead")
    h = tp.health()
    assert h.level == "ERROR" and h.dead and "exited unexpectedly" in h.message
    assert not tp.wait_until_trained(10, timeout=1.0)
    assert not tp.submit(*transitions(1)[0]), "nobody will take it: counted as dropped"
    with pytest.raises(RuntimeError, match="not running"):
        tp.request_checkpoint(timeout=5)
    t0 = time.monotonic()
    tp.close(checkpoint=True, timeout=5.0)
    assert time.monotonic() - t0 < 10.0
    assert tp.dead or "down at shutdown" in tp.stats()["error"]


def test_child_ignores_sigint_and_closes_in_order(tmp_path, make_tp):
    tp = make_tp(tmp_path)
    tp.start()
    for tr in transitions(10):
        tp.submit(*tr)
    os.kill(tp._child.proc.pid, signal.SIGINT)  # what Ctrl-C sends to the whole process group
    time.sleep(0.5)
    assert tp.stats()["alive"]
    tp.close(checkpoint=True, timeout=60)
    st = tp.stats()
    assert st["error"] == "" and st["env_steps"] == 10 and st["last_checkpoint"] and tp._child.proc.exitcode == 0


def test_child_exception_surfaces(tmp_path, make_tp):
    ckpt = tmp_path / "checkpoint"
    ckpt.mkdir()
    (ckpt / "meta.json").write_text("{not json")
    tp = make_tp(tmp_path, resume=True)
    with pytest.raises(RuntimeError, match="failed to start") as exc:
        tp.start()
    # Regression (issue 15): a hostile checkpoint is bad input, not a bug: one clear line, no child traceback
    assert "\n" not in str(exc.value) and "Traceback" not in str(exc.value), str(exc.value)
    st = tp.stats()
    assert not st["alive"] and "meta.json" in st["error"]

    bad = TrainerProcess(OBS, ACT, tiny_cfg(), "no-such-task", tmp_path / "x", options=OPTS)
    try:
        with pytest.raises(RuntimeError, match="no-such-task"):
            bad.start()
        assert "no-such-task" in bad.stats()["error"]
    finally:
        bad.close(checkpoint=False, timeout=5)


def test_child_exits_when_the_parent_dies(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_learner_supervisor import tiny_cfg, OPTS, OBS, ACT
        from mbpo_ros.learner.supervisor import TrainerProcess
        if __name__ == "__main__":
            tp = TrainerProcess(OBS, ACT, tiny_cfg(), "reach", {str(tmp_path)!r}, options=OPTS)
            tp.start()
            print(tp._child.proc.pid, flush=True)
            os._exit(0)  # die without close()
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    child = int(out.stdout.split()[-1])
    deadline = time.monotonic() + 15
    while not _exited(child):
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the trainer child outlived its parent by 15 s")
        time.sleep(0.1)


def _exited(pid: int) -> bool:
    """True once pid is gone or a zombie (its orphan is reaped by whoever adopted it, maybe later)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return any(line.startswith("State:") and "Z" in line.split()[1] for line in status.splitlines())


def test_async_schedule_retrains_without_starving_sac():
    """MBPO.work (the learner's schedule, core/schedule.py): a retrain that is due waits until SAC
    has done the utd * model_train_freq updates a synchronous loop does between two retrains."""
    from mbpo_ros.core.trainer import MBPO

    m = MBPO(OBS, ACT, tiny_cfg(init_random_steps=30, model_train_freq=20, utd=2), TASK)
    trs = transitions(200)
    for tr in trs[:29]:
        m.add(*tr[:5])
    assert m.work(10)[0] == "idle", "nothing is due before init_random_steps"
    for tr in trs[29:100]:
        m.add(*tr[:5])
    assert m.work(10)[0] == "retrain" and m.model_trains == 1 and m.sac_updates == 0  # first retrain at once
    for tr in trs[100:130]:  # a retrain is due again (30 >= 20 steps), SAC owes 2 * 101 updates
        m.add(*tr[:5])
    for _ in range(4):
        assert m.work(10)[0] == "update"
    assert m.model_trains == 1 and m.sac_updates == 40, "retrain must wait for utd * model_train_freq updates"
    assert m.work(10)[0] == "retrain" and m.model_trains == 2 and m.sac_updates == 40
    while m.work(10)[0] != "idle":
        pass
    assert m.sac_updates == 2 * (130 - 30 + 1) and m.model_trains == 2


def test_non_finite_transitions_are_rejected_and_counted(tmp_path, make_tp):
    """Second line of defence (issue 10 rejects them in the node): the learner never adds a NaN/Inf."""
    tp = make_tp(tmp_path)
    tp.start()
    trs = transitions(20)
    bad = [(np.full(OBS, np.nan, np.float32),) + trs[0][1:], trs[1][:2] + (float("inf"),) + trs[1][3:],
           trs[2][:3] + (np.full(OBS, 1e39),) + trs[2][4:]]  # 1e39 is inf in float32
    for tr in trs[:10] + bad + trs[10:]:
        assert tp.submit(*tr)
    wait_for(lambda: tp.stats()["received"] == 23, 30, "all 23 submitted transitions to arrive")
    st = tp.stats()
    assert st["rejected_non_finite"] == 3 and st["env_steps"] == 20 and st["real_buffer"] == 20
    assert tp.health().level == "OK"


def test_diverged_learner_keeps_the_previous_checkpoint_and_reports_error(tmp_path, make_tp):
    """Rewards that are finite but huge (3e38) make SAC's critic overflow to Inf/NaN: the learner
    must not replace its last good checkpoint with that, and must say ERROR."""
    tp = make_tp(tmp_path, lockstep=True)
    tp.start()
    for i, tr in enumerate(transitions(40)):
        assert tp.submit(*tr) and tp.wait_until_trained(i + 1, timeout=60)
    good = tp.request_checkpoint(timeout=60)
    good_meta = (Path(good) / "meta.json").read_bytes()
    for i, tr in enumerate(transitions(30, seed=9)):
        assert tp.submit(tr[0], tr[1], 3e38, tr[3], False, False) and tp.wait_until_trained(41 + i, timeout=60)
    with pytest.raises(RuntimeError, match="non-finite"):
        tp.request_checkpoint(timeout=60)
    assert (Path(good) / "meta.json").read_bytes() == good_meta, "the good checkpoint was replaced"
    h = tp.health()
    assert h.level == "ERROR" and "non-finite" in h.message, h


_GROUP_SIGNAL = textwrap.dedent(
    """
    import json, signal, sys, threading
    sys.path.insert(0, sys.argv[1])
    from test_learner_supervisor import tiny_cfg, OPTS, OBS, ACT, transitions
    from mbpo_ros.learner.supervisor import TrainerProcess
    if __name__ == "__main__":
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())  # as agent_node: SIGTERM like SIGINT
        tp = TrainerProcess(OBS, ACT, tiny_cfg(), "reach", sys.argv[2], options=OPTS)
        tp.start()
        for tr in transitions(50):
            tp.submit(*tr)
        print("ready", tp._child.proc.pid, flush=True)
        stop.wait(60)
        tp.close(checkpoint=True, timeout=60)
        st = tp.stats()
        print(json.dumps({"error": st["error"], "env_steps": st["env_steps"], "exitcode": st["exitcode"],
                          "last_checkpoint": st["last_checkpoint"], "dead": tp.dead}), flush=True)
    """
)


def test_sigterm_to_the_whole_process_group_reaches_only_the_parent(tmp_path):
    """Regression (issue 11): SIGTERM to the process group (systemd's KillMode, container stops) killed
    the trainer child too: no final checkpoint. The child runs in its own session and ignores both."""
    proc = subprocess.Popen([sys.executable, "-c", _GROUP_SIGNAL, str(Path(__file__).parent), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready"), line + proc.stderr.read()
        child = int(line.split()[1])
        assert os.getsid(child) != os.getsid(proc.pid), "the learner child shares the parent's session"
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = json.loads(out.splitlines()[-1])
    assert proc.returncode == 0, err
    assert result["error"] == "" and result["exitcode"] == 0 and not result["dead"], result
    assert result["env_steps"] == 50 and result["last_checkpoint"], result
