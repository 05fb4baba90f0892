"""TrainerProcess: the MBPO learner in a child process, so torch never shares the control loop's interpreter.

Why a process and not a thread: on the 2-core machines this project runs on, a 100 Hz Python
control loop with a torch training loop in a thread of the same process had p99 period errors of
10-16 ms and stalls up to 145 ms (the GIL and torch's thread pool); with the training in a child
process the loop stayed at about 2 ms p99 (docs/architecture.md, "Why training runs in a child
process", and docs/benchmarks.md, "Control loop"). The control side keeps only an immutable NumPy
:class:`~mbpo_ros.core.policy.PolicySnapshot`.

Processes and channels::

    parent (control process)                         child (spawned, nice +10, SIGINT ignored)
    submit() -> shared-memory ring of float32 records -> polled between pieces of work -> MBPO.add()
               (+ one doorbell byte per transition in lock-step mode, which the child waits on)
    set_paused/request_checkpoint/close -> cmd Pipe -> handled between pieces of work
    receiver thread <- event Pipe <------------------ ready / snapshot arrays / acks / stats / errors
       builds a PolicySnapshot and swaps it in with one attribute assignment

``submit()`` makes no system call that wakes another task (a queue's feeder thread or a pipe write
did, and on a loaded machine the control thread then lost its CPU for milliseconds: submit p99
4-8 ms against 0.06 ms with the ring).

Modes:

- async (default, a real robot): the child drains transitions into ``MBPO.add``, retrains the
  model when due (every ``cfg.mbpo.model_train_freq`` real steps once ``init_random_steps`` are
  collected) and rolls it out, and runs SAC updates in chunks of ``chunk_updates`` while
  ``sac_updates < utd * (env_steps - init_random_steps)``, sending a new snapshot after each chunk.
  When the learner cannot keep up, a retrain also waits for the ``utd * model_train_freq`` SAC
  updates a synchronous loop does between two retrains, so model fitting never starves SAC.
  ``stats()["achieved_utd"]`` is the ratio it actually keeps up with.
- lock-step (``lockstep=True``, deterministic tests and simulated time): per transition the child
  calls ``MBPO.add`` then ``MBPO.step()`` exactly as a synchronous loop would, then acknowledges the
  env step count together with the new snapshot; :meth:`TrainerProcess.wait_until_trained` blocks
  on that acknowledgement.

Ordering: every accepted transition is counted in the parent; a checkpoint or close request
carries that count and the child drains the ring up to it first, so a checkpoint holds every
transition submitted before it was requested.

Shutdown: the child ignores SIGINT (Ctrl-C in a terminal hits the whole process group), so the
parent's orderly :meth:`TrainerProcess.close` writes the final checkpoint. The child also exits by
itself when the parent dies (command pipe EOF or a changed parent pid), without writing a
checkpoint (the parent's periodic checkpoints are the record; two writers must never race on one
checkpoint directory). ``close()`` never hangs: after its timeout the child is terminated, then
killed.
"""

from __future__ import annotations

import collections
import itertools
import math
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mbpo_ros.core.policy import PolicySnapshot

__all__ = ["TrainerProcess", "WorkerOptions", "CHECKPOINT_DIRNAME"]

#: name of the checkpoint directory inside ``run_dir``
CHECKPOINT_DIRNAME = "checkpoint"


@dataclass(frozen=True)
class WorkerOptions:
    """How the child process runs (not learning hyper-parameters: those are in ``Config``)."""

    torch_threads: int = 0
    """torch intra-op threads in the child; 0 = automatic: one fewer than the cores (at least 1),
    so that one core stays free for the control process (docs/benchmarks.md, "Control loop")."""
    nice: int = 10
    """increment of the child's nice value (os.nice), so the control loop wins a contended CPU; 0 = off."""
    sched_idle: bool = False
    """Linux: run the child under SCHED_IDLE, so a waking control thread always preempts it at once.
    It then gets only CPU time nobody else wants: right on a robot computer with spare cores, slow on a
    machine shared with other CPU-bound jobs (docs/benchmarks.md, "Control loop")."""
    chunk_updates: int = 25
    """SAC updates between two snapshots in async mode (smaller: fresher policy, more pipe traffic)."""
    stats_interval_s: float = 0.5
    """at most this long between two stats messages from the child."""
    start_timeout_s: float = 120.0
    """start() raises if the child is not ready after this many seconds (imports, checkpoint load)."""
    drain_timeout_s: float = 10.0
    """how long a checkpoint/close request waits for transitions still in flight to arrive."""

    def __post_init__(self) -> None:
        if self.torch_threads < 0:
            raise ValueError(f"torch_threads = {self.torch_threads} must be >= 0 (0 = automatic)")
        if not 0 <= self.nice <= 19:
            raise ValueError(f"nice = {self.nice} must be in [0, 19] (a nice increment)")
        if self.chunk_updates < 1:
            raise ValueError(f"chunk_updates = {self.chunk_updates} must be >= 1")
        for name in ("stats_interval_s", "start_timeout_s", "drain_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} = {getattr(self, name)} must be > 0 seconds")


def _auto_threads() -> int:
    """Cores this process may run on, minus one for the control process (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


class _Record:
    """One transition as a fixed-size float32 record of the shared transition ring.

    Layout: [obs (obs_dim), act (act_dim), reward, next_obs (obs_dim), terminated, truncated]. The
    replay buffer stores float32, so nothing is lost.
    """

    def __init__(self, obs_dim: int, act_dim: int):
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.length = 2 * obs_dim + act_dim + 3

    def pack(self, obs, act, reward, next_obs, terminated, truncated) -> np.ndarray:
        o, a = self.obs_dim, self.act_dim
        rec = np.empty(self.length, dtype=np.float32)
        rec[:o] = obs
        rec[o : o + a] = act
        rec[o + a] = reward
        rec[o + a + 1 : 2 * o + a + 1] = next_obs
        rec[-2] = 1.0 if terminated else 0.0
        rec[-1] = 1.0 if truncated else 0.0
        return rec

    def unpack(self, rec: np.ndarray) -> tuple:
        o, a = self.obs_dim, self.act_dim
        return (rec[:o], rec[o : o + a], float(rec[o + a]), rec[o + a + 1 : 2 * o + a + 1],
                bool(rec[-2]), bool(rec[-1]))


class _Ring:
    """Single-producer, single-consumer ring of float32 records in shared memory.

    data: [capacity, length] float32 (multiprocessing RawArray); counters [written, consumed]
    (int64). Both sides hold a multiprocessing Lock while they touch it: uncontended it costs no
    system call, and it orders the memory accesses on every CPU. The writer (the control thread)
    never blocks: if the reader holds the lock, try_put writes nothing and the caller keeps the
    records for the next call. Nothing wakes the reader: it polls, so a submit never hands the CPU
    to another process (a pipe write or a queue's helper thread did: 4-8 ms p99 on a loaded box).
    """

    def __init__(self, ctx: Any, capacity: int, length: int):
        self.capacity, self.length = int(capacity), int(length)
        self._data = ctx.RawArray("f", self.capacity * self.length)
        self._ctr = ctx.RawArray("q", 2)
        self._lock = ctx.Lock()
        self._views()

    def _views(self) -> None:
        self.data = np.frombuffer(self._data, dtype=np.float32).reshape(self.capacity, self.length)
        self.ctr = np.frombuffer(self._ctr, dtype=np.int64)

    def __getstate__(self) -> dict:  # sent to the child once, with the spawn arguments
        return {"capacity": self.capacity, "length": self.length, "_data": self._data, "_ctr": self._ctr,
                "_lock": self._lock}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._views()

    def consumed(self) -> int:
        """Records the reader has taken (a lock-free read of an aligned int64; may lag)."""
        return int(self.ctr[1])

    def try_put(self, records: list) -> int:
        """Append as many of `records` ([length] each) as fit, without blocking; returns how many."""
        if not self._lock.acquire(False):
            return 0
        try:
            w, r = int(self.ctr[0]), int(self.ctr[1])
            n = min(len(records), self.capacity - (w - r))
            for k in range(n):
                self.data[(w + k) % self.capacity] = records[k]
            self.ctr[0] = w + n
        finally:
            self._lock.release()
        return n

    def put_blocking(self, records: list, timeout: float) -> int:
        """try_put that may wait up to `timeout` s for the lock (not for the control thread)."""
        if not self._lock.acquire(True, timeout):
            return 0
        self._lock.release()
        return self.try_put(records)

    def take(self) -> np.ndarray:
        """All records written and not yet taken, oldest first: [n, length] (a copy)."""
        with self._lock:
            w, r = int(self.ctr[0]), int(self.ctr[1])
            if w == r:
                return self.data[:0].copy()
            out = self.data[np.arange(r, w) % self.capacity]  # fancy indexing copies
            self.ctr[1] = w
        return out


# ============================================================================= child side


def _child_main(
    obs_dim: int,
    act_dim: int,
    cfg: Any,
    task_name: str,
    run_dir: str,
    resume: bool,
    lockstep: bool,
    opts: WorkerOptions,
    ring: _Ring,
    bell_conn: Any,
    cmd_conn: Any,
    ev_conn: Any,
    parent_pid: int,
    task_kwargs: dict[str, Any],
) -> None:
    """Entry point of the child process (spawn context: runs in a fresh interpreter)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        worker = _Worker(
            obs_dim, act_dim, cfg, task_name, run_dir, resume, lockstep, opts, ring, bell_conn, cmd_conn,
            ev_conn, parent_pid, task_kwargs,
        )
        worker.run()
    except BaseException as e:  # noqa: BLE001 - everything is reported to the parent, then re-raised
        text = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
        try:
            ev_conn.send(("error", text))
        except (OSError, ValueError):
            pass  # the parent is gone: nobody to tell; the exit code still says it failed
        raise SystemExit(1) from e


class _ParentGone(Exception):
    """The parent process died or closed its end of the command pipe."""


class _Worker:
    """The child's loop. Owns the MBPO instance; talks to the parent only through the channels."""

    def __init__(
        self, obs_dim, act_dim, cfg, task_name, run_dir, resume, lockstep, opts, ring, bell_conn, cmd_conn,
        ev_conn, parent_pid, task_kwargs,
    ):
        if opts.nice:
            os.nice(int(opts.nice))
        if opts.sched_idle:
            if not hasattr(os, "SCHED_IDLE"):
                raise ValueError("sched_idle needs Linux (os.SCHED_IDLE); set WorkerOptions(sched_idle=False)")
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        import torch

        from mbpo_ros.core.config import validate
        from mbpo_ros.core.tasks import get_task
        from mbpo_ros.core.trainer import MBPO

        self.cfg = validate(cfg)
        # explicit option > cfg.threads > automatic (cores - 1): set before and after MBPO() in case
        # the trainer applies cfg.threads itself.
        threads = int(opts.torch_threads) or int(getattr(self.cfg, "threads", 0)) or _auto_threads()
        torch.set_num_threads(threads)
        self.opts = opts
        self.lockstep = lockstep
        self.cmd_conn, self.ev_conn = cmd_conn, ev_conn
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.record = _Record(self.obs_dim, self.act_dim)
        self.ring = ring
        self.bell_conn = bell_conn  # lock-step only: one byte per submitted transition wakes us
        self.last_ack_t = 0.0
        self.parent_pid = parent_pid
        self.run_dir = Path(run_dir)
        self.ckpt_path = self.run_dir / CHECKPOINT_DIRNAME
        self.task = get_task(task_name, **task_kwargs)
        self.mbpo = MBPO(obs_dim, act_dim, self.cfg, self.task)
        torch.set_num_threads(threads)
        self.resumed = False
        if resume and (self.ckpt_path.exists() or (self.run_dir / f".{CHECKPOINT_DIRNAME}.old").exists()):
            from mbpo_ros.io.checkpoint import load_checkpoint

            tensors, arrays, meta = load_checkpoint(self.ckpt_path)
            self.mbpo.load_state(tensors, arrays, meta)
            self.resumed = True
        self.n_received = 0  # transitions taken off the queue by this child (this session)
        self.paused = False
        self.closing = False
        self.last_checkpoint = ""
        self.model_holdout_loss = math.nan
        self.model_holdout_nll = math.nan
        self.truncated_fraction = math.nan
        self.truncated_episodes = 0
        self.snapshot_seq = 0
        self.last_snapshot_updates = -1
        self.last_stats_t = 0.0
        self.updates_at_retrain: int | None = None  # sac_updates at this session's last retrain
        # (t, sac_updates) samples at least 0.5 s apart: updates_per_s over the last ~10 s
        self.update_times: collections.deque = collections.deque(maxlen=20)

    # ---------------------------------------------------------------- messages

    def send(self, msg: tuple) -> None:
        try:
            self.ev_conn.send(msg)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError) as e:
            raise _ParentGone(str(e)) from e

    def stats(self) -> dict[str, Any]:
        m, c = self.mbpo, self.cfg.mbpo
        env_steps, updates = int(m.env_steps), int(m.sac_updates)
        trainable = env_steps - int(c.init_random_steps)
        now = time.monotonic()
        if not self.update_times or now - self.update_times[-1][0] >= 0.5:
            self.update_times.append((now, updates))
        t0, u0 = self.update_times[0]
        ups = (updates - u0) / (now - t0) if now - t0 > 1e-3 else 0.0
        return {
            "env_steps": env_steps,
            "sac_updates": updates,
            "model_trains": int(getattr(m, "model_trains", 0)),
            "achieved_utd": updates / trainable if trainable > 0 else 0.0,
            "target_utd": float(c.utd),
            "updates_per_s": ups,
            "model_holdout_loss": self.model_holdout_loss,
            "model_holdout_nll": self.model_holdout_nll,
            "real_buffer": int(len(m.real_buffer)),
            "model_buffer": int(len(m.model_buffer)),
            "truncated_fraction": self.truncated_fraction,
            "truncated_episodes": self.truncated_episodes,
            "last_checkpoint": self.last_checkpoint,
            "paused": self.paused,
            "resumed": self.resumed,
            "received": self.n_received,
        }

    def send_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_stats_t >= self.opts.stats_interval_s:
            self.last_stats_t = now
            self.send(("stats", self.stats()))

    def snapshot_arrays(self, force: bool = False) -> dict[str, np.ndarray] | None:
        """The actor's arrays if the policy changed since the last snapshot sent (or force)."""
        updates = int(self.mbpo.sac_updates)
        if not force and updates == self.last_snapshot_updates:
            return None
        self.last_snapshot_updates = updates
        self.snapshot_seq += 1
        return self.mbpo.policy_snapshot().to_arrays()

    def send_snapshot(self, force: bool = False) -> None:
        arrays = self.snapshot_arrays(force)
        if arrays is not None:
            self.send(("snapshot", self.snapshot_seq, int(self.mbpo.env_steps), arrays, self.stats()))
            self.last_stats_t = time.monotonic()

    # ---------------------------------------------------------------- transitions

    def check_parent(self) -> None:
        if os.getppid() != self.parent_pid:
            raise _ParentGone(f"parent pid {self.parent_pid} is gone")

    def wait_for_work(self, timeout: float) -> None:
        """Sleep until a command (or, in lock-step, a transition) arrives, at most `timeout` s."""
        if self.bell_conn is None:
            self.cmd_conn.poll(timeout)
            return
        ready = mp_connection.wait([self.cmd_conn, self.bell_conn], timeout)
        if self.bell_conn in ready:
            try:
                os.read(self.bell_conn.fileno(), 1 << 16)
            except BlockingIOError:
                pass  # another wake-up already emptied it: the ring is what counts

    def ingest(self, tr: tuple) -> None:
        obs, act, reward, next_obs, terminated, truncated = tr
        self.n_received += 1
        self.mbpo.add(obs, act, float(reward), next_obs, bool(terminated))
        if truncated:
            self.truncated_episodes += 1
        if self.lockstep:
            if not self.paused:
                self.note_metrics(self.mbpo.step())
            self.send(("ack", int(self.mbpo.env_steps), self.snapshot_seq_arrays(), self.stats()))
            self.last_stats_t = time.monotonic()

    def snapshot_seq_arrays(self) -> tuple[int, dict[str, np.ndarray]] | None:
        arrays = self.snapshot_arrays()
        return None if arrays is None else (self.snapshot_seq, arrays)

    def drain(self, wait: float | None = None) -> int:
        """Move every transition in the ring into MBPO; if there is none, wait up to `wait` s first."""
        recs = self.ring.take()
        if not len(recs) and wait:
            self.wait_for_work(wait)
            recs = self.ring.take()
        for rec in recs:
            self.ingest(self.record.unpack(rec))
        now = time.monotonic()
        if len(recs) and not self.lockstep and now - self.last_ack_t >= self.opts.stats_interval_s:
            self.last_ack_t = self.last_stats_t = now  # rate-limited: the parent stays quiet
            self.send(("ack", int(self.mbpo.env_steps), None, self.stats()))
        return len(recs)

    def drain_until(self, target: int) -> None:
        """Drain until every transition the parent accepted before a request has arrived."""
        deadline = time.monotonic() + self.opts.drain_timeout_s
        while self.n_received < target:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"only {self.n_received} of {target} submitted transitions arrived within "
                    f"{self.opts.drain_timeout_s} s"
                )
            self.drain(wait=min(left, 0.01))
        if not self.lockstep:  # acknowledge at once: a request is waiting
            self.last_ack_t = time.monotonic()
            self.send(("ack", int(self.mbpo.env_steps), None, self.stats()))

    # ---------------------------------------------------------------- commands

    def poll_commands(self) -> None:
        self.check_parent()
        try:
            while self.cmd_conn.poll(0):
                self.handle(self.cmd_conn.recv())
        except (EOFError, OSError) as e:
            raise _ParentGone(str(e)) from e

    def save_checkpoint(self) -> str:
        from mbpo_ros.io.checkpoint import save_checkpoint

        tensors, arrays, meta = self.mbpo.state()
        path = save_checkpoint(self.ckpt_path, tensors=tensors, arrays=arrays, meta=meta)
        self.last_checkpoint = str(path)
        return self.last_checkpoint

    def handle(self, cmd: tuple) -> None:
        kind = cmd[0]
        if kind == "pause":
            self.paused = bool(cmd[1])
            self.send_stats(force=True)
        elif kind == "checkpoint":
            _, req_id, target = cmd
            try:
                self.drain_until(target)
                path, err = self.save_checkpoint(), None
            except Exception as e:  # a failed checkpoint is reported to its caller; training goes on
                path, err = "", f"{type(e).__name__}: {e}"
            self.send(("checkpoint", req_id, path, err, self.stats()))
            self.last_stats_t = time.monotonic()
        elif kind == "close":
            _, checkpoint, target = cmd
            path, err = "", None
            try:
                self.drain_until(target)
                if checkpoint:
                    path = self.save_checkpoint()
            except Exception as e:
                err = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
            self.send(("closed", path, err, self.stats()))
            self.closing = True
        else:
            raise ValueError(f"unknown command {kind!r} from the parent")

    # ---------------------------------------------------------------- training

    def note_metrics(self, metrics: dict | None) -> None:
        """Keep the figures stats() reports from what train_model()/rollout()/step() returned."""
        if not metrics:
            return
        if "model_holdout_mse" in metrics:
            self.model_holdout_loss = float(metrics["model_holdout_mse"])
        if "model_holdout_nll" in metrics:
            self.model_holdout_nll = float(metrics["model_holdout_nll"])
        if "rollout_truncated_fraction" in metrics:
            self.truncated_fraction = float(metrics["rollout_truncated_fraction"])

    def async_work(self) -> bool:
        """Do one bounded piece of training work; False when there is nothing due.

        MBPO.step()'s schedule, decoupled from the arrival of transitions: the ensemble is retrained
        and rolled out every model_train_freq env steps (first at init_random_steps), and SAC updates
        run in chunks until sac_updates reaches utd * (env_steps - init_random_steps). When the
        learner cannot keep up, the next retrain also waits until SAC has done the utd *
        model_train_freq updates that a synchronous loop does between two retrains (or has caught
        up), so retraining cannot starve SAC: both lag in the synchronous ratio, and
        stats()["achieved_utd"] says by how much.
        """
        m, c = self.mbpo, self.cfg.mbpo
        env_steps = int(m.env_steps)
        if env_steps < max(int(c.init_random_steps), 1):
            return False
        deficit = int(c.utd) * (env_steps - int(c.init_random_steps)) - int(m.sac_updates)
        last = int(m.last_model_train_step)
        if last < 0 or env_steps - last >= int(c.model_train_freq):
            owed = int(c.utd) * int(c.model_train_freq)
            if self.updates_at_retrain is None or deficit <= 0 or m.sac_updates - self.updates_at_retrain >= owed:
                if c.real_ratio < 1.0 and len(m.real_buffer) >= 2:
                    self.note_metrics(m.train_model())
                    self.note_metrics(m.rollout())
                else:
                    m.last_model_train_step = env_steps  # as MBPO.step(): no model needed
                self.updates_at_retrain = int(m.sac_updates)
                self.send_stats(force=True)
                return True
        if deficit <= 0:
            return False
        m.update(min(deficit, int(self.opts.chunk_updates)), sync=False)
        self.send_snapshot()
        return True

    def run(self) -> None:
        if self.bell_conn is not None:
            os.set_blocking(self.bell_conn.fileno(), False)
        self.send_snapshot(force=True)
        self.send(("ready", {"resumed": self.resumed, "env_steps": int(self.mbpo.env_steps)}, self.stats()))
        try:
            while not self.closing:
                self.poll_commands()
                if self.closing:
                    break
                if self.lockstep:
                    self.drain(wait=0.05)
                else:
                    self.drain()
                    busy = (not self.paused) and self.async_work()
                    if not busy:
                        self.drain(wait=0.02)
                self.send_stats()
        except _ParentGone:
            return


# ============================================================================= parent side


class TrainerProcess:
    """MBPO in a spawned child process; the parent side is O(1) and never blocks the control loop.

    obs_dim, act_dim: sizes of one observation / action (act in [-1, 1]^act_dim).
    cfg: the full Config (validated; sent to the child with the spawn arguments).
    task_name: core.tasks.get_task name ("reach", "Hopper-v5", ...), resolved in the child.
    run_dir: the checkpoint lives in run_dir/checkpoint; with resume=True an existing one is loaded.
    queue_size: bound of the transition queue; submit() drops (and counts) beyond it.
    lockstep: per-transition MBPO.step() and acknowledgements (see the module docstring).
    options: how the child runs (threads, nice, snapshot chunking); WorkerOptions() by default.
    task_kwargs: keyword arguments of get_task in the child (e.g. ReachTask settings); plain data only.
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

        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._record = _Record(self.obs_dim, self.act_dim)
        self._ring: _Ring | None = None
        self._stash: list = []  # records the ring could not take yet (its lock was busy), oldest first
        self._bell_conn: Any = None  # lock-step only: write end of the wake-up pipe
        self._bell_fd = -1
        self._cmd_conn: Any = None
        self._ev_conn: Any = None
        self._receiver: threading.Thread | None = None
        self._cmd_lock = threading.Lock()
        self._cond = threading.Condition()
        self._snapshot: PolicySnapshot | None = None
        self._snapshot_seq = 0
        self._acked_env_steps = -1
        self._child_stats: dict[str, Any] = {}
        self._ready = False
        self._error = ""
        self._closed = False
        self._close_reply: tuple | None = None
        self._n_submitted = 0
        self._dropped = 0
        self._ckpt_ids = itertools.count(1)
        self._ckpt_replies: dict[int, tuple[str, str | None]] = {}
        self._last_checkpoint = ""

    # ---------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Spawn the child and wait until it is ready and its first snapshot is installed.

        Raises RuntimeError with the child's error text if it fails to start (bad task name,
        unreadable checkpoint, ...), TimeoutError if it is not ready within options.start_timeout_s.
        """
        if self._proc is not None:
            raise RuntimeError("TrainerProcess.start() was already called")
        from mbpo_ros.core.config import validate

        validate(self.cfg)  # a bad config fails here, in the caller, with the field named
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._ring = _Ring(self._ctx, self.queue_size, self._record.length)
        bell_child = None
        if self.lockstep:
            bell_child, self._bell_conn = self._ctx.Pipe(duplex=False)
            self._bell_fd = self._bell_conn.fileno()
            os.set_blocking(self._bell_fd, False)
        cmd_child, self._cmd_conn = self._ctx.Pipe(duplex=False)
        self._ev_conn, ev_child = self._ctx.Pipe(duplex=False)
        self._proc = self._ctx.Process(
            target=_child_main,
            name="mbpo-trainer",
            args=(
                self.obs_dim, self.act_dim, self.cfg, self.task_name, str(self.run_dir),
                self.resume, self.lockstep, self.options, self._ring, bell_child, cmd_child, ev_child,
                os.getpid(),
                self.task_kwargs,
            ),
            daemon=True,
        )
        # SIG_IGN survives exec: the child ignores Ctrl-C even before its own handler is installed.
        restore = None
        if threading.current_thread() is threading.main_thread():
            restore = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self._proc.start()
        finally:
            if restore is not None:
                signal.signal(signal.SIGINT, restore)
        if bell_child is not None:
            bell_child.close()
        cmd_child.close()
        ev_child.close()
        self._receiver = threading.Thread(target=self._receive_loop, name="mbpo-trainer-rx", daemon=True)
        self._receiver.start()
        deadline = time.monotonic() + self.options.start_timeout_s
        with self._cond:
            while not self._ready and not self._error and self._proc.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.2))
            ready, error = self._ready, self._error
        if not ready:
            if not error:
                self._receiver.join(timeout=2.0)  # an error message may still be in flight
                error = self._error
            self.close(checkpoint=False, timeout=5.0)
            if error:
                raise RuntimeError(f"the trainer process failed to start: {error}")
            raise TimeoutError(f"the trainer process was not ready within {self.options.start_timeout_s} s")

    def close(self, checkpoint: bool = True, timeout: float = 60.0) -> None:
        """Final checkpoint (if asked), then the child exits. Never hangs: terminate/kill after timeout.

        Raises nothing for a dead or stuck child (the error text stays in stats()); a failed final
        checkpoint is kept in stats()["error"].
        """
        if self._closed:
            return
        self._closed = True
        proc = self._proc
        if proc is None:
            return
        deadline = time.monotonic() + max(0.0, float(timeout))
        if proc.is_alive():
            self._flush_stash(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            try:
                with self._cmd_lock:
                    self._cmd_conn.send(("close", bool(checkpoint), self._n_submitted))
            except (OSError, ValueError):
                pass  # the child is already gone; joined below
            proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.terminate()
            proc.join(2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(2.0)
        if self._bell_conn is not None:
            self._bell_conn.close()
            self._bell_fd = -1
        if self._cmd_conn is not None:
            self._cmd_conn.close()
        if self._receiver is not None:
            self._receiver.join(timeout=2.0)
        with self._cond:
            if self._close_reply is not None:
                path, err, stats = self._close_reply
                if path:
                    self._last_checkpoint = path
                if err:
                    self._error = self._error or f"final checkpoint failed: {err}"
                if stats:
                    self._child_stats.update(stats)
            elif checkpoint and not self._error:
                self._error = f"the trainer process did not close in order (exit code {proc.exitcode})"
            self._cond.notify_all()

    def __enter__(self) -> TrainerProcess:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---------------------------------------------------------------- control-loop side (O(1))

    def submit(self, obs, act, reward, next_obs, terminated, truncated) -> bool:
        """Hand one real transition to the learner without blocking. False (and counted) if the queue is full.

        obs, next_obs: [obs_dim]; act: [act_dim] in [-1, 1]; reward: float; terminated/truncated: bool.
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
        ring = self._ring
        if (
            ring is None or self._closed or self._error  # nobody will take it
            or self._n_submitted - ring.consumed() >= self.queue_size  # the bounded queue is full
        ):
            self._dropped += 1
            return False
        rec = self._record.pack(obs, act, reward, next_obs, terminated, truncated)
        if self._stash:
            self._stash.append(rec)
            self._stash = self._stash[ring.try_put(self._stash) :]
        elif not ring.try_put([rec]):
            self._stash = [rec]  # the child holds the ring for a few microseconds: next call
        self._n_submitted += 1
        if self._bell_fd >= 0:  # lock-step: wake the child (it waits for exactly this)
            try:
                os.write(self._bell_fd, b"\0")
            except OSError:
                pass  # full (it has wake-ups pending anyway) or gone (stats() says so)
        return True

    def _flush_stash(self, timeout: float = 1.0) -> None:
        """Before a request that counts submitted transitions: push out what the ring did not take."""
        deadline = time.monotonic() + timeout
        while self._stash and self._ring is not None and time.monotonic() < deadline:
            self._stash = self._stash[self._ring.put_blocking(self._stash, 0.05) :]
            if self._stash:
                time.sleep(0.005)

    def latest_snapshot(self) -> PolicySnapshot | None:
        """The newest policy from the child (immutable; swapped atomically by the receiver thread)."""
        return self._snapshot

    def wait_until_trained(self, env_steps: int, timeout: float) -> bool:
        """Block until the child has added transitions up to `env_steps` and done the training due.

        Lock-step mode: the training due is MBPO.step() per transition and the matching snapshot is
        installed when this returns True. Async mode: True once the transitions were added.
        False on timeout or if the child is dead.
        """
        deadline = time.monotonic() + float(timeout)
        while True:
            # A record the ring could not take (stash) is what the child is waiting for in lock-step:
            # nothing else would push it, so push it here and ring the bell again.
            if self._stash and self._ring is not None:
                self._stash = self._stash[self._ring.try_put(self._stash) :]
                if not self._stash and self._bell_fd >= 0:
                    try:
                        os.write(self._bell_fd, b"\0")
                    except OSError:
                        pass  # full (wake-ups pending anyway) or gone (the liveness check says so)
            with self._cond:
                if self._acked_env_steps >= env_steps:
                    return True
                if self._error or self._closed or self._proc is None or not self._proc.is_alive():
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.005 if self._stash else 0.5))

    def set_paused(self, paused: bool) -> None:
        """Pause (True) or resume (False) training; transitions are still taken in while paused."""
        self._send_cmd(("pause", bool(paused)))

    def request_checkpoint(self, timeout: float = 60.0) -> str:
        """Have the child write run_dir/checkpoint atomically with every transition submitted so far.

        Returns the checkpoint path. Raises RuntimeError (child error text) or TimeoutError.
        """
        req_id = next(self._ckpt_ids)
        self._flush_stash()
        self._send_cmd(("checkpoint", req_id, self._n_submitted))
        deadline = time.monotonic() + float(timeout)
        with self._cond:
            while req_id not in self._ckpt_replies:
                if self._error or not self._proc.is_alive():
                    raise RuntimeError(f"the trainer process is not running: {self._error or 'it exited'}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no checkpoint from the trainer process within {timeout} s")
                self._cond.wait(min(left, 0.5))
            path, err = self._ckpt_replies.pop(req_id)
        if err:
            raise RuntimeError(f"checkpoint failed in the trainer process: {err}")
        return path

    def stats(self) -> dict[str, Any]:
        """Learner statistics (from the child's latest report) plus the parent's counters.

        Keys: env_steps, sac_updates, achieved_utd, updates_per_s, model_holdout_loss, real_buffer,
        model_buffer, truncated_fraction, last_checkpoint, queue_dropped, submitted, alive, error,
        snapshot_seq, paused, ...
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
            alive = self._proc is not None and self._proc.is_alive() and not self._error
            out["alive"] = bool(alive and not self._closed)
            out["exitcode"] = None if self._proc is None else self._proc.exitcode
        return out

    # ---------------------------------------------------------------- internals

    def _send_cmd(self, cmd: tuple) -> None:
        if self._proc is None or self._closed:
            raise RuntimeError("the trainer process is not running (start() not called, or closed)")
        if self._error or not self._proc.is_alive():
            raise RuntimeError(f"the trainer process is not running: {self._error or 'it exited'}")
        try:
            with self._cmd_lock:
                self._cmd_conn.send(cmd)
        except (OSError, ValueError) as e:
            raise RuntimeError(f"the trainer process is not reachable: {e}") from e

    def _install_snapshot(self, seq: int, arrays: dict[str, np.ndarray]) -> None:
        snap = PolicySnapshot.from_arrays(arrays)
        self._snapshot = snap  # one attribute assignment: readers see the old or the new one
        self._snapshot_seq = seq

    def _receive_loop(self) -> None:
        conn = self._ev_conn
        try:
            self._receive(conn)
        except Exception as e:  # a malformed message or snapshot: say so instead of dying silently
            with self._cond:
                self._error = self._error or f"receiver thread failed: {type(e).__name__}: {e}"
        finally:
            conn.close()
            with self._cond:
                if not self._closed and not self._error:
                    self._error = "the trainer process exited unexpectedly"
                self._cond.notify_all()

    def _receive(self, conn: Any) -> None:
        """Handle the child's messages until it closes its end of the event pipe."""
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            kind = msg[0]
            if kind == "snapshot":
                _, seq, env_steps, arrays, stats = msg
                self._install_snapshot(seq, arrays)
                with self._cond:
                    self._child_stats.update(stats)
                    self._cond.notify_all()
            elif kind == "ack":
                _, env_steps, snap, stats = msg
                if snap is not None:
                    self._install_snapshot(*snap)
                with self._cond:
                    self._acked_env_steps = max(self._acked_env_steps, env_steps)
                    if stats:
                        self._child_stats.update(stats)
                        self._cond.notify_all()
            elif kind == "stats":
                with self._cond:
                    self._child_stats.update(msg[1])
            elif kind == "ready":
                with self._cond:
                    self._child_stats.update(msg[2])
                    self._acked_env_steps = int(msg[1]["env_steps"])
                    self._ready = True
                    self._cond.notify_all()
            elif kind == "checkpoint":
                _, req_id, path, err, stats = msg
                with self._cond:
                    self._child_stats.update(stats)
                    if path:
                        self._last_checkpoint = path
                    self._ckpt_replies[req_id] = (path, err)
                    self._cond.notify_all()
            elif kind == "closed":
                with self._cond:
                    self._close_reply = msg[1:]
                    self._cond.notify_all()
            elif kind == "error":
                with self._cond:
                    self._error = msg[1]
                    self._cond.notify_all()
