"""TrainerProcess: the supervisor of the learner child (the control process's side).

Why a process and not a thread: on the 2-core machines this project runs on, a 100 Hz Python
control loop with a torch training loop in a thread of the same process had p99 period errors of
10-16 ms and stalls up to 145 ms (the GIL and torch's thread pool); with the training in a child
process the loop stayed at about 2 ms p99 (docs/architecture.md, "Why training runs in a child
process"). The control side keeps only an immutable NumPy PolicySnapshot.

Processes and channels::

    parent (control process)                         child (learner/worker.py; own session)
    submit() -> shared-memory ring (learner/ring.py) -> polled between pieces of work -> MBPO.add()
               (+ one doorbell byte per transition in lock-step mode, which the child waits on)
    set_paused/request_checkpoint/close -> cmd Pipe (learner/messages.py) -> handled between pieces
    receiver thread <- event Pipe <------------------ Ready / Snapshot / Ack / Stats / errors
       builds a PolicySnapshot and swaps it in with one attribute assignment

Supervision: a child that dies (killed, crashed) is restarted from its checkpoint plus the
transition log (the worker replays every logged transition the checkpoint does not hold), after a
back-off of ``backoff_s * 2**k`` (at most ``backoff_max_s``), at most ``max_restarts`` times in a
row (a child that ran ``stable_after_s`` resets the count). Before a restart the ``flush_log``
callback makes the log durable so the new child can replay it. Transitions submitted while the
child is down wait in the ring (``queue_size``) and move to the new child's ring; beyond that they
are counted in ``queue_dropped`` and are in the log for the next start. :meth:`health` says
ERROR while the learner is down (restarting, or dead for good), OK when it runs again;
:attr:`dead` says whether it gave up.

Ordering: every accepted transition is counted; a checkpoint or close request carries that count
and the child drains the ring up to it first, so a checkpoint holds every transition submitted
before it was requested, except those newer than ``durable_log_id`` (not yet written by the
transition log: the log replays them after a crash, so a checkpoint never holds a transition the
log could lose).

Shutdown: the child ignores SIGINT and SIGTERM and runs in its own session, so the parent's
orderly :meth:`close` writes the final checkpoint. ``close()`` never hangs: after its timeout the
child is killed.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mbpo_ros.core.policy import PolicySnapshot
from mbpo_ros.learner import messages as msg
from mbpo_ros.learner.ring import NO_LOG_ID, RecordCodec, Ring, Transition
from mbpo_ros.learner.worker import CHECKPOINT_DIRNAME, WorkerOptions, WorkerSpec, child_main

__all__ = ["TrainerProcess", "RestartPolicy", "LearnerHealth", "WorkerOptions", "OK", "ERROR", "CHECKPOINT_DIRNAME"]

OK, ERROR = "OK", "ERROR"


@dataclass(frozen=True)
class RestartPolicy:
    """How a crashed learner child is restarted."""

    max_restarts: int = 5
    """restarts in a row before the learner is declared dead (0 = never restart)"""
    backoff_s: float = 1.0
    """wait before the first restart; doubled for each further one in a row"""
    backoff_max_s: float = 30.0
    """longest wait between two restarts"""
    stable_after_s: float = 300.0
    """a child that ran this long resets the count of restarts in a row"""

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts = {self.max_restarts} must be >= 0")
        for name in ("backoff_s", "backoff_max_s", "stable_after_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} = {getattr(self, name)} must be >= 0 seconds")

    def delay(self, attempt: int) -> float:
        """Wait before restart number ``attempt`` (1-based) of a row."""
        return min(self.backoff_max_s, self.backoff_s * 2 ** max(0, attempt - 1))


@dataclass(frozen=True)
class LearnerHealth:
    """What /diagnostics shows for the learner: level OK or ERROR, and why."""

    level: str
    message: str
    dead: bool


class _Child:
    """One learner child process and its channels (replaced as a whole on a restart)."""

    def __init__(self, proc: Any, ring: Ring, bell: Any, cmd: Any, ev: Any, base: int):
        self.proc, self.ring, self.bell, self.cmd, self.ev = proc, ring, bell, cmd, ev
        self.bell_fd = bell.fileno() if bell is not None else -1
        self.base = base  # supervisor's submit count when this ring started (minus records moved in)
        self.started = time.monotonic()
        self.receiver: threading.Thread | None = None
        self.ready = False
        self.exited = False  # its event pipe reached EOF
        self.close_reply: msg.Closed | None = None


class TrainerProcess:
    """MBPO in a supervised, spawned child process; the parent side is O(1) and never blocks the control loop.

    obs_dim, act_dim: sizes of one observation / action (act in [-1, 1]^act_dim).
    cfg: the full Config (validated; sent to the child with the spawn arguments).
    task_name: core.tasks.get_task name ("reach", "Hopper-v5", ...), resolved in the child.
    run_dir: the checkpoint lives in run_dir/checkpoint; with resume=True an existing one is loaded.
    queue_size: bound of the transition queue; submit() drops (and counts) beyond it.
    lockstep: per-transition MBPO.step() and acknowledgements (see learner/worker.py).
    options: how the child runs (threads, nice, snapshot chunking); WorkerOptions() by default.
    task_kwargs: keyword arguments of get_task in the child (e.g. ReachTask settings); plain data only.
    log_path: the transition log (io.transition_log) the child replays at every start; None: none.
    restart: RestartPolicy() by default.
    flush_log: called before a restart so the log holds what the new child must replay.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        cfg: Any,
        task_name: str,
        run_dir: str | Path,
        resume: bool = True,
        queue_size: int = 10000,
        lockstep: bool = False,
        options: WorkerOptions | None = None,
        task_kwargs: dict[str, Any] | None = None,
        log_path: str | Path | None = None,
        restart: RestartPolicy | None = None,
        flush_log: Callable[[], Any] | None = None,
    ):
        if int(obs_dim) <= 0 or int(act_dim) <= 0:
            raise ValueError(f"obs_dim and act_dim must be positive, got obs_dim={obs_dim}, act_dim={act_dim}")
        if int(queue_size) <= 0:
            raise ValueError(f"queue_size must be positive, got {queue_size}")
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.cfg = cfg
        self.task_name = str(task_name)
        self.run_dir = Path(run_dir)
        self.resume = bool(resume)
        self.queue_size = int(queue_size)
        self.lockstep = bool(lockstep)
        self.options = options or WorkerOptions()
        self.task_kwargs = dict(task_kwargs or {})
        self.log_path = None if log_path is None else str(log_path)
        self.restart_policy = restart or RestartPolicy()
        self.flush_log = flush_log

        self._ctx = mp.get_context("spawn")
        self._codec = RecordCodec(self.obs_dim, self.act_dim)
        self._child: _Child | None = None
        self._submit_lock = threading.Lock()  # submit() vs. the ring swap of a restart (held for microseconds)
        self._stash: list = []  # records the ring could not take yet (its lock was busy), oldest first
        self._cmd_lock = threading.Lock()
        self._cond = threading.Condition()
        self._snapshot: PolicySnapshot | None = None
        self._snapshot_seq = 0
        self._acked_env_steps = -1
        self._child_stats: dict[str, Any] = {}
        self._state = "new"  # new | running | restarting | dead | closed
        self._error = ""
        self._closed = False
        self._n_submitted = 0
        self._dropped = 0
        self._restarts = 0  # restarts done in total
        self._in_a_row = 0
        self._ckpt_ids = itertools.count(1)
        self._ckpt_replies: dict[int, msg.CheckpointDone] = {}
        self._last_checkpoint = ""
        self._watcher: threading.Thread | None = None
        self._down_reason = ""  # why the child the supervisor is replacing died
        self._dead = False  # gave up restarting, or down / not closed in order at shutdown

    # ---------------------------------------------------------------- life cycle

    def _spawn(self, resume: bool, moved: list) -> _Child:
        ring = Ring(self._ctx, self.queue_size, self._codec.length)
        n = ring.try_put(moved[: self.queue_size])
        if n < len(moved):
            self._dropped += len(moved) - n
        bell_child = bell = None
        if self.lockstep:
            bell_child, bell = self._ctx.Pipe(duplex=False)
            os.set_blocking(bell.fileno(), False)
        cmd_child, cmd = self._ctx.Pipe(duplex=False)
        ev, ev_child = self._ctx.Pipe(duplex=False)
        spec = WorkerSpec(self.obs_dim, self.act_dim, self.cfg, self.task_name, self.task_kwargs, str(self.run_dir),
                          resume, self.lockstep, self.options, self.log_path, os.getpid())
        proc = self._ctx.Process(target=child_main, name="mbpo-trainer",
                                 args=(spec, ring, bell_child, cmd_child, ev_child), daemon=True)
        # SIG_IGN survives exec: the child ignores Ctrl-C even before its own handlers are installed.
        restore = None
        if threading.current_thread() is threading.main_thread():
            restore = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            proc.start()
        finally:
            if restore is not None:
                signal.signal(signal.SIGINT, restore)
        for c in (bell_child, cmd_child, ev_child):
            if c is not None:
                c.close()
        child = _Child(proc, ring, bell, cmd, ev, self._n_submitted - n)
        child.receiver = threading.Thread(target=self._receive_loop, args=(child,), name="mbpo-trainer-rx",
                                          daemon=True)
        child.receiver.start()
        return child

    def _wait_ready(self, child: _Child) -> str:
        """'' once ready, else the reason it is not."""
        deadline = time.monotonic() + self.options.start_timeout_s
        with self._cond:
            while not child.ready and not child.exited and child.proc.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.2))
            if child.ready:
                return ""
        if child.receiver is not None:
            child.receiver.join(timeout=2.0)  # an error message may still be in flight
        with self._cond:
            if self._error:
                return self._error
        if child.proc.is_alive():
            return f"the trainer process was not ready within {self.options.start_timeout_s} s"
        return f"the trainer process exited while starting (exit code {child.proc.exitcode})"

    def start(self) -> None:
        """Spawn the child and wait until it is ready and its first snapshot is installed.

        Raises RuntimeError with the child's error text if it fails to start (bad task name,
        unreadable checkpoint, ...), TimeoutError if it is not ready within options.start_timeout_s.
        A failure here is not retried: it would fail the same way.
        """
        if self._child is not None:
            raise RuntimeError("TrainerProcess.start() was already called")
        from mbpo_ros.core.config import validate

        validate(self.cfg)  # a bad config fails here, in the caller, with the field named
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._child = child = self._spawn(self.resume, [])
        why = self._wait_ready(child)
        if why:
            with self._cond:
                self._error = self._error or why
            self.close(checkpoint=False, timeout=5.0)
            if "not ready within" in why:
                raise TimeoutError(why)
            raise RuntimeError(f"the trainer process failed to start: {why}")
        with self._cond:
            self._state = "running"
        self._watcher = threading.Thread(target=self._watch, name="mbpo-trainer-supervisor", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        """Supervisor thread: restart a child that died, with back-off, until closed or out of retries."""
        while True:
            with self._cond:
                while not self._closed and not self._child.exited:
                    self._cond.wait(0.5)
                if self._closed:
                    return
                child = self._child
                ran = time.monotonic() - child.started
                if ran >= self.restart_policy.stable_after_s:
                    self._in_a_row = 0
                if self._in_a_row >= self.restart_policy.max_restarts:
                    self._state = "dead"
                    self._dead = True
                    self._error = (f"the learner died {self._in_a_row + 1} times in a row and is not restarted "
                                   f"again; last: {self._error or 'it exited'}")
                    self._cond.notify_all()
                    return
                self._in_a_row += 1
                self._state = "restarting"
                self._down_reason = self._error or "it exited"
                self._error = ""
                delay = self.restart_policy.delay(self._in_a_row)
                self._cond.notify_all()
            child.proc.join(timeout=5.0)
            if child.proc.is_alive():
                child.proc.kill()
                child.proc.join(timeout=5.0)
            deadline = time.monotonic() + delay
            with self._cond:
                while not self._closed and time.monotonic() < deadline:
                    self._cond.wait(deadline - time.monotonic())
                if self._closed:
                    return
            if self.flush_log is not None:
                try:
                    self.flush_log()
                except Exception as e:  # the log's own error state reports it; the restart goes on
                    with self._cond:
                        self._error = f"{self._error}; flushing the log before the restart failed: {e}"
            with self._submit_lock:  # move what the dead child did not take into the new ring
                moved = child.ring.pending_unlocked() + self._stash
                self._stash = []
                new = self._spawn(True, moved)
                self._child = new
            self._close_conns(child)
            why = self._wait_ready(new)
            with self._cond:
                if self._closed:
                    return
                if not why:
                    self._restarts += 1
                    self._state = "running"
                    self._error = ""
                    self._cond.notify_all()
                else:
                    self._error = why
                    new.exited = True  # the loop counts it and tries again (or gives up)
            if why and new.proc.is_alive():
                new.proc.kill()

    def _close_conns(self, child: _Child) -> None:
        for c in (child.bell, child.cmd):
            if c is not None:
                try:
                    c.close()
                except OSError:
                    pass  # already closed
        child.bell_fd = -1

    def close(self, checkpoint: bool = True, timeout: float = 60.0, durable_log_id: int | None = None) -> None:
        """Final checkpoint (if asked), then the child exits. Never hangs: kill after timeout.

        Raises nothing for a dead or stuck child (the error text stays in stats()); a failed final
        checkpoint is kept in stats()["error"]. durable_log_id: see CheckpointRequest.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            was = self._state
            self._state = "closed"
            self._cond.notify_all()
        child = self._child
        if child is None:
            return
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=max(1.0, self.options.start_timeout_s))
            child = self._child
        proc = child.proc
        deadline = time.monotonic() + max(0.0, float(timeout))
        asked = False
        if proc.is_alive() and was in ("running", "new"):
            self._flush_stash(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            try:
                with self._cmd_lock:
                    child.cmd.send(msg.CloseRequest(bool(checkpoint), self._n_submitted - child.base,
                                                    durable_log_id))
                asked = True
            except (OSError, ValueError):
                pass  # the child is already gone; joined below
            proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()  # it ignores SIGTERM (group signals must not reach it)
            proc.join(2.0)
        self._close_conns(child)
        if child.receiver is not None:
            child.receiver.join(timeout=2.0)
        with self._cond:
            reply = child.close_reply
            if reply is not None:
                if reply.path:
                    self._last_checkpoint = reply.path
                if reply.error:
                    self._error = self._error or f"final checkpoint failed: {reply.error}"
                if reply.stats:
                    self._child_stats.update(reply.stats)
            elif asked:
                self._dead = True
                if checkpoint and not self._error:
                    self._error = f"the trainer process did not close in order (exit code {proc.exitcode})"
            elif was in ("restarting", "dead"):
                self._dead = True
                self._error = self._error or f"the learner was down at shutdown ({self._down_reason}): no final checkpoint"
            self._cond.notify_all()

    def __enter__(self) -> TrainerProcess:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---------------------------------------------------------------- control-loop side (O(1))

    def submit(self, obs, act, reward, next_obs, terminated, truncated, log_id: int = NO_LOG_ID) -> bool:
        """Hand one real transition to the learner without blocking. False (and counted) if the queue is full.

        obs, next_obs: [obs_dim]; act: [act_dim] in [-1, 1]; reward: float; terminated/truncated: bool;
        log_id: the transition log's id of this transition (TransitionLog.append's return value), so
        a restarted learner replays from the log exactly what it does not hold.
        """
        obs = np.asarray(obs, dtype=np.float32).reshape(-1)
        next_obs = np.asarray(next_obs, dtype=np.float32).reshape(-1)
        act = np.asarray(act, dtype=np.float32).reshape(-1)
        if obs.shape[0] != self.obs_dim or next_obs.shape[0] != self.obs_dim:
            raise ValueError(
                f"observation has {obs.shape[0]} values (next: {next_obs.shape[0]}), "
                f"the trainer expects {self.obs_dim}"
            )
        if act.shape[0] != self.act_dim:
            raise ValueError(f"action has {act.shape[0]} values, the trainer expects {self.act_dim}")
        with self._submit_lock:
            child = self._child
            ring = None if child is None else child.ring
            if (
                ring is None or self._closed or self._state == "dead"  # nobody will take it
                or self._n_submitted - child.base - ring.consumed() >= self.queue_size  # the queue is full
            ):
                self._dropped += 1
                return False
            rec = self._codec.pack(Transition(obs, act, float(reward), next_obs, bool(terminated), bool(truncated),
                                              int(log_id)))
            if self._stash:
                self._stash.append(rec)
                self._stash = self._stash[ring.try_put(self._stash) :]
            elif not ring.try_put([rec]):
                self._stash = [rec]  # the child holds the ring for a few microseconds: next call
            self._n_submitted += 1
            if child.bell_fd >= 0:  # lock-step: wake the child (it waits for exactly this)
                try:
                    os.write(child.bell_fd, b"\0")
                except OSError:
                    pass  # full (it has wake-ups pending anyway) or gone (stats() says so)
        return True

    def _flush_stash(self, timeout: float = 1.0) -> None:
        """Before a request that counts submitted transitions: push out what the ring did not take."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._submit_lock:
                if not self._stash or self._child is None:
                    return
                self._stash = self._stash[self._child.ring.put_blocking(self._stash, 0.05) :]
                if not self._stash:
                    return
            time.sleep(0.005)

    def latest_snapshot(self) -> PolicySnapshot | None:
        """The newest policy from the child (immutable; swapped atomically by the receiver thread)."""
        return self._snapshot

    def wait_until_trained(self, env_steps: int, timeout: float) -> bool:
        """Block until the child has added transitions up to `env_steps` and done the training due.

        Lock-step mode: the training due is MBPO.step() per transition and the matching snapshot is
        installed when this returns True. Async mode: True once the transitions were added.
        False on timeout or if the learner is not running.
        """
        deadline = time.monotonic() + float(timeout)
        while True:
            # A record the ring could not take (stash) is what the child is waiting for in lock-step:
            # nothing else would push it, so push it here and ring the bell again.
            with self._submit_lock:
                child = self._child
                if self._stash and child is not None:
                    self._stash = self._stash[child.ring.try_put(self._stash) :]
                    if not self._stash and child.bell_fd >= 0:
                        try:
                            os.write(child.bell_fd, b"\0")
                        except OSError:
                            pass  # full (wake-ups pending anyway) or gone (the liveness check says so)
            with self._cond:
                if self._acked_env_steps >= env_steps:
                    return True
                if self._state != "running" or child is None or not child.proc.is_alive():
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.005 if self._stash else 0.5))

    def set_paused(self, paused: bool) -> None:
        """Pause (True) or resume (False) training; transitions are still taken in while paused."""
        self._send_cmd(msg.Pause(bool(paused)))

    def request_checkpoint(self, timeout: float = 60.0, durable_log_id: int | None = None) -> str:
        """Have the child write run_dir/checkpoint atomically with every transition submitted so far
        (except those newer than ``durable_log_id``: see the module docstring).

        Returns the checkpoint path. Raises RuntimeError (child error text, or the learner is down)
        or TimeoutError.
        """
        req_id = next(self._ckpt_ids)
        self._flush_stash()
        child = self._child
        self._send_cmd(msg.CheckpointRequest(req_id, self._n_submitted - (child.base if child else 0), durable_log_id))
        deadline = time.monotonic() + float(timeout)
        with self._cond:
            while req_id not in self._ckpt_replies:
                if self._state != "running" or self._child is not child:
                    raise RuntimeError(f"the trainer process is not running: {self._error or self._state}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no checkpoint from the trainer process within {timeout} s")
                self._cond.wait(min(left, 0.5))
            reply = self._ckpt_replies.pop(req_id)
        if reply.error:
            raise RuntimeError(f"checkpoint failed in the trainer process: {reply.error}")
        return reply.path

    @property
    def dead(self) -> bool:
        """True once the learner gave up restarting, or when it was down or did not close in order at
        shutdown (the node's exit code reports it when training was asked for)."""
        with self._cond:
            return self._dead

    def health(self) -> LearnerHealth:
        """OK while the learner runs and reports no error; ERROR while it is down or reports one."""
        with self._cond:
            state, error = self._state, self._error
            learner_error = str(self._child_stats.get("learner_error") or "")
        if state == "running" and not error and not learner_error:
            return LearnerHealth(OK, "running", False)
        if state == "restarting":
            return LearnerHealth(ERROR, f"learner down, restarting (restart {self._in_a_row} of "
                                        f"{self.restart_policy.max_restarts}): {self._down_reason}", False)
        if state == "dead":
            return LearnerHealth(ERROR, f"learner dead: {error}", True)
        if state == "closed":
            return LearnerHealth(ERROR if error else OK, error or "closed", False)
        return LearnerHealth(ERROR, error or learner_error or state, False)

    def stats(self) -> dict[str, Any]:
        """Learner statistics (from the child's latest report) plus the supervisor's counters.

        Keys: env_steps, sac_updates, achieved_utd, updates_per_s, model_holdout_loss, real_buffer,
        model_buffer, truncated_fraction, last_checkpoint, queue_dropped, submitted, alive, error,
        snapshot_seq, paused, state, restarts, replayed, rejected_non_finite, ...
        """
        with self._cond:
            out: dict[str, Any] = {
                "env_steps": 0, "sac_updates": 0, "achieved_utd": 0.0, "updates_per_s": 0.0,
                "model_holdout_loss": math.nan, "real_buffer": 0, "model_buffer": 0,
                "truncated_fraction": math.nan,
            }
            out.update(self._child_stats)
            out["last_checkpoint"] = self._last_checkpoint or out.get("last_checkpoint", "")
            out["queue_dropped"] = self._dropped
            out["submitted"] = self._n_submitted
            out["snapshot_seq"] = self._snapshot_seq
            out["error"] = self._error
            out["state"] = self._state
            out["restarts"] = self._restarts
            child = self._child
            alive = child is not None and child.proc.is_alive() and self._state == "running" and not self._error
            out["alive"] = bool(alive)
            out["exitcode"] = None if child is None else child.proc.exitcode
            out["pid"] = None if child is None else child.proc.pid
        return out

    # ---------------------------------------------------------------- internals

    def _send_cmd(self, cmd: msg.Command) -> None:
        child = self._child
        if child is None or self._closed:
            raise RuntimeError("the trainer process is not running (start() not called, or closed)")
        if self._state != "running" or not child.proc.is_alive():
            raise RuntimeError(f"the trainer process is not running: {self._error or self._state}")
        try:
            with self._cmd_lock:
                child.cmd.send(cmd)
        except (OSError, ValueError) as e:
            raise RuntimeError(f"the trainer process is not reachable: {e}") from e

    def _install_snapshot(self, snap: msg.Snapshot) -> None:
        policy = PolicySnapshot.from_arrays(snap.arrays)
        self._snapshot = policy  # one attribute assignment: readers see the old or the new one
        self._snapshot_seq += 1

    def _receive_loop(self, child: _Child) -> None:
        conn = child.ev
        try:
            self._receive(child, conn)
        except Exception as e:  # a malformed message or snapshot: say so instead of dying silently
            with self._cond:
                self._error = self._error or f"receiver thread failed: {type(e).__name__}: {e}"
        finally:
            conn.close()
            child.proc.join(timeout=1.0)  # reap it, so its exit code can be told
            code = child.proc.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            with self._cond:
                child.exited = True
                if not self._closed and child.close_reply is None and not self._error:
                    self._error = f"the trainer process exited unexpectedly ({how})"
                self._cond.notify_all()

    def _receive(self, child: _Child, conn: Any) -> None:
        """Handle the child's messages until it closes its end of the event pipe."""
        while True:
            try:
                ev = conn.recv()
            except (EOFError, OSError):
                break
            if isinstance(ev, msg.Snapshot):
                self._install_snapshot(ev)
                with self._cond:
                    self._child_stats.update(ev.stats)
                    self._cond.notify_all()
            elif isinstance(ev, msg.Ack):
                if ev.snapshot is not None:
                    self._install_snapshot(ev.snapshot)
                with self._cond:
                    self._acked_env_steps = max(self._acked_env_steps, ev.env_steps) if child.ready else ev.env_steps
                    if ev.stats:
                        self._child_stats.update(ev.stats)
                    self._cond.notify_all()
            elif isinstance(ev, msg.Stats):
                with self._cond:
                    self._child_stats.update(ev.stats)
            elif isinstance(ev, msg.Ready):
                with self._cond:
                    self._child_stats.update(ev.stats)
                    self._acked_env_steps = int(ev.env_steps)
                    child.ready = True
                    self._cond.notify_all()
            elif isinstance(ev, msg.CheckpointDone):
                with self._cond:
                    self._child_stats.update(ev.stats)
                    if ev.path:
                        self._last_checkpoint = ev.path
                    self._ckpt_replies[ev.req_id] = ev
                    self._cond.notify_all()
            elif isinstance(ev, msg.Closed):
                with self._cond:
                    child.close_reply = ev
                    self._cond.notify_all()
            elif isinstance(ev, msg.Failed):
                with self._cond:
                    self._error = ev.text
                    self._cond.notify_all()

