"""The learner child: owns the MBPO instance, fed through the ring, steered by typed messages.

Runs in a spawned child process (a fresh interpreter: torch never shares the control loop's
interpreter). It starts in its own session and ignores SIGINT and SIGTERM, so a signal sent to
the whole process group (Ctrl-C in a terminal, systemd's KillMode=control-group, a container
runtime's stop) reaches only the parent, which then closes it in order (final checkpoint). It
exits by itself when the parent dies (command pipe EOF or a changed parent pid), without writing
a checkpoint (two writers must never race on one checkpoint directory).

Start: load ``run_dir/checkpoint`` (resume), then replay every transition of the transition log
that the checkpoint does not hold (by log id; the checkpoint records the ids it holds in its meta
under ``"log_ids"``), then report Ready with the first snapshot.

Modes:

- async (default, a real robot): drain the ring into ``MBPO.add``, then one bounded piece of
  ``MBPO.work`` (core.schedule: a retrain, or a chunk of SAC updates), a snapshot after each chunk.
- lock-step (deterministic tests and simulated time): per transition ``MBPO.add`` then
  ``MBPO.step()`` exactly as a synchronous loop, then an Ack with the env step count and the new
  snapshot.

Second line of defence: a transition with a non-finite value is rejected and counted
(``rejected_non_finite``); a checkpoint with non-finite tensors is never written (io refuses it,
the previous one is kept) and ``stats()["error"]`` says so.
"""

from __future__ import annotations

import collections
import math
import multiprocessing.connection as mp_connection
import os
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mbpo_ros.core import schedule
from mbpo_ros.learner import messages as msg
from mbpo_ros.learner.log_ids import IdSet
from mbpo_ros.learner.ring import NO_LOG_ID, RecordCodec, Ring, Transition

__all__ = ["WorkerOptions", "Worker", "child_main", "auto_threads", "CHECKPOINT_DIRNAME"]

#: name of the checkpoint directory inside ``run_dir`` (io.checkpoint.CHECKPOINT_DIRNAME)
CHECKPOINT_DIRNAME = "checkpoint"
#: checkpoint meta key of the held log ids
LOG_IDS_KEY = "log_ids"


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
    """start() raises if the child is not ready after this many seconds (imports, checkpoint load, log replay)."""
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


def auto_threads() -> int:
    """Cores this process may run on, minus one for the control process (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything the child needs to build its worker (sent once, with the spawn arguments)."""

    obs_dim: int
    act_dim: int
    cfg: Any
    task_name: str
    task_kwargs: dict[str, Any]
    run_dir: str
    resume: bool
    lockstep: bool
    options: WorkerOptions
    log_path: str | None
    parent_pid: int


def child_main(spec: WorkerSpec, ring: Ring, bell_conn: Any, cmd_conn: Any, ev_conn: Any) -> None:
    """Entry point of the child process (spawn context: runs in a fresh interpreter)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.setsid()  # its own session and process group: group signals do not reach it
    except OSError:
        pass  # already a session leader (cannot happen for a spawned child); the SIG_IGNs still hold
    try:
        Worker(spec, ring, bell_conn, cmd_conn, ev_conn).run()
    except BaseException as e:  # noqa: BLE001 - everything is reported to the parent, then re-raised
        if isinstance(e, (ValueError, FileNotFoundError)):
            # bad input (a damaged or hostile checkpoint, a task or config the child refuses): its
            # message says what is wrong and where; a traceback would bury that first line
            text = f"{type(e).__name__}: {e}"
        else:  # a bug: the traceback is what finds it
            text = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
        try:
            ev_conn.send(msg.Failed(text))
        except (OSError, ValueError):
            pass  # the parent is gone: nobody to tell; the exit code still says it failed
        raise SystemExit(1) from e


def _lock_run_dir(run_dir: Path, timeout: float) -> Any:
    """An exclusive lock on run_dir/.learner.lock, so two learners never share a run directory (an
    orphaned child of a killed node may still be finishing a checkpoint when the next one starts).
    The kernel releases it when this process exits, however it exits."""
    import fcntl

    f = open(run_dir / ".learner.lock", "a+")  # noqa: SIM115 - kept open for the process's life
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() > deadline:
                f.close()
                raise RuntimeError(f"another learner process holds {run_dir / '.learner.lock'} "
                                   f"(is a second agent_node running on this run directory?)") from None
            time.sleep(0.05)
            continue
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        return f


class ParentGone(Exception):
    """The parent process died or closed its end of the command pipe."""


class Worker:
    """The child's loop. Owns the MBPO instance; talks to the parent only through the channels."""

    def __init__(self, spec: WorkerSpec, ring: Ring, bell_conn: Any, cmd_conn: Any, ev_conn: Any):
        opts = spec.options
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

        self.cfg = validate(spec.cfg)
        # explicit option > cfg.threads > automatic (cores - 1): set before and after MBPO() in case
        # the trainer applies cfg.threads itself.
        threads = int(opts.torch_threads) or int(getattr(self.cfg, "threads", 0)) or auto_threads()
        torch.set_num_threads(threads)
        self.opts = opts
        self.lockstep = spec.lockstep
        self.cmd_conn, self.ev_conn = cmd_conn, ev_conn
        self.codec = RecordCodec(spec.obs_dim, spec.act_dim)
        self.ring = ring
        self.bell_conn = bell_conn  # lock-step only: one byte per submitted transition wakes us
        self.last_ack_t = 0.0
        self.parent_pid = spec.parent_pid
        self.run_dir = Path(spec.run_dir)
        self.ckpt_path = self.run_dir / CHECKPOINT_DIRNAME
        self.log_path = spec.log_path
        self.task = get_task(spec.task_name, **spec.task_kwargs)
        self.mbpo = MBPO(spec.obs_dim, spec.act_dim, self.cfg, self.task)
        torch.set_num_threads(threads)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.lock_file = _lock_run_dir(self.run_dir, opts.start_timeout_s / 2)  # held until this process exits
        self.held = IdSet()  # log ids of the transitions the learner holds
        # log ids of recent adds through the ring, newest last (NO_LOG_ID: unlogged or replayed)
        self.recent_ids: collections.deque = collections.deque()
        self.resumed = False
        self.legacy_checkpoint = False
        if spec.resume and (self.ckpt_path.exists() or (self.run_dir / f".{CHECKPOINT_DIRNAME}.old").exists()):
            from mbpo_ros.io.checkpoint import load_checkpoint

            tensors, arrays, meta = load_checkpoint(self.ckpt_path)
            self.mbpo.load_state(tensors, arrays, meta)
            if LOG_IDS_KEY in meta:
                self.held = IdSet.from_ranges(meta[LOG_IDS_KEY])
            else:
                self.legacy_checkpoint = True
            self.resumed = True
        self.n_received = 0  # transitions taken off the ring by this child
        self.replayed = 0  # transitions replayed from the log at start
        self.duplicates = 0  # transitions whose log id the learner already held (skipped)
        self.rejected_non_finite = 0
        self.paused = False
        self.closing = False
        self.last_checkpoint = ""
        self.error = ""  # a condition the parent reports as ERROR (e.g. a refused checkpoint)
        self.model_holdout_loss = math.nan
        self.model_holdout_nll = math.nan
        self.truncated_fraction = math.nan
        self.truncated_episodes = 0
        self.snapshot_seq = 0
        self.last_snapshot_updates = -1
        self.last_stats_t = 0.0
        # (t, sac_updates) samples at least 0.5 s apart: updates_per_s over the last ~10 s
        self.update_times: collections.deque = collections.deque(maxlen=20)

    # ---------------------------------------------------------------- messages

    def send(self, event: msg.Event) -> None:
        try:
            self.ev_conn.send(event)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError) as e:
            raise ParentGone(str(e)) from e

    def stats(self) -> dict[str, Any]:
        m, c = self.mbpo, self.cfg.mbpo
        env_steps, updates = int(m.env_steps), int(m.sac_updates)
        trainable = env_steps - schedule.first_trained_step(c)
        now = time.monotonic()
        if not self.update_times or now - self.update_times[-1][0] >= 0.5:
            self.update_times.append((now, updates))
        t0, u0 = self.update_times[0]
        ups = (updates - u0) / (now - t0) if now - t0 > 1e-3 else 0.0
        sac = m.sac_metrics() if updates else {}  # the last update's losses (a host sync, at the stats interval)
        return {
            **{f"sac_{k}": float(sac.get(k, math.nan))
               for k in ("critic_loss", "actor_loss", "alpha", "entropy", "q_mean")},
            "env_steps": env_steps,
            "sac_updates": updates,
            "model_trains": int(m.model_trains),
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
            "replayed": self.replayed,
            "duplicates_skipped": self.duplicates,
            "rejected_non_finite": self.rejected_non_finite,
            "learner_error": self.error,
        }

    def send_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_stats_t >= self.opts.stats_interval_s:
            self.last_stats_t = now
            self.send(msg.Stats(self.stats()))

    def make_snapshot(self, force: bool = False) -> msg.Snapshot | None:
        """A Snapshot if the policy changed since the last one sent (or force)."""
        updates = int(self.mbpo.sac_updates)
        if not force and updates == self.last_snapshot_updates:
            return None
        self.last_snapshot_updates = updates
        self.snapshot_seq += 1
        return msg.Snapshot(self.snapshot_seq, int(self.mbpo.env_steps), self.mbpo.policy_snapshot().to_arrays(),
                            self.stats())

    def send_snapshot(self, force: bool = False) -> None:
        snap = self.make_snapshot(force)
        if snap is not None:
            self.send(snap)
            self.last_stats_t = time.monotonic()

    # ---------------------------------------------------------------- transitions

    def check_parent(self) -> None:
        if os.getppid() != self.parent_pid:
            raise ParentGone(f"parent pid {self.parent_pid} is gone")

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

    def add(self, tr: Transition, from_log: bool = False) -> bool:
        """Add one transition to MBPO unless it is non-finite or already held. True if added.

        from_log: replayed from the transition log (durable by definition: never left out of a
        checkpoint); else it came through the ring and may be newer than the log's durable id."""
        if not (np.isfinite(tr.obs).all() and np.isfinite(tr.act).all() and math.isfinite(tr.reward)
                and np.isfinite(tr.next_obs).all()):
            self.rejected_non_finite += 1
            return False
        if tr.log_id != NO_LOG_ID:
            if not self.held.add(tr.log_id):
                self.duplicates += 1
                return False
        self.mbpo.add(tr.obs, tr.act, float(tr.reward), tr.next_obs, bool(tr.terminated))
        self.recent_ids.append(NO_LOG_ID if from_log else tr.log_id)
        if len(self.recent_ids) > 2 * self.ring.capacity + 1000:
            self.recent_ids.popleft()
        if tr.truncated:
            self.truncated_episodes += 1
        return True

    def ingest(self, tr: Transition) -> None:
        self.n_received += 1
        added = self.add(tr)
        if self.lockstep:
            if added and not self.paused:
                self.note_metrics(self.mbpo.step())
            self.send(msg.Ack(int(self.mbpo.env_steps), self.make_snapshot(), self.stats()))
            self.last_stats_t = time.monotonic()

    def replay_log(self) -> None:
        """Add every logged transition the checkpoint does not hold (the log is the source of truth)."""
        if self.log_path is None:
            return
        if self.legacy_checkpoint:
            print(f"mbpo_ros learner: {self.ckpt_path} records no log ids (written by an older mbpo_ros); "
                  "the transition log is not replayed", flush=True)
            return
        from mbpo_ros.io.transition_log import read_transitions

        data = read_transitions(self.log_path, warn_torn=False)  # the live segment has no footer yet
        ids = data["log_id"]
        for i in np.flatnonzero(ids >= 0):
            if int(ids[i]) in self.held:
                continue
            tr = Transition(data["obs"][i].astype(np.float32), data["action"][i].astype(np.float32),
                            float(data["reward"][i]), data["next_obs"][i].astype(np.float32),
                            bool(data["terminated"][i]), bool(data["truncated"][i]), int(ids[i]))
            if self.add(tr, from_log=True):
                self.replayed += 1

    def drain(self, wait: float | None = None) -> int:
        """Move every transition in the ring into MBPO; if there is none, wait up to `wait` s first."""
        recs = self.ring.take()
        if not len(recs) and wait:
            self.wait_for_work(wait)
            recs = self.ring.take()
        for rec in recs:
            self.ingest(self.codec.unpack(rec))
        now = time.monotonic()
        if len(recs) and not self.lockstep and now - self.last_ack_t >= self.opts.stats_interval_s:
            self.last_ack_t = self.last_stats_t = now  # rate-limited: the parent stays quiet
            self.send(msg.Ack(int(self.mbpo.env_steps), None, self.stats()))
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
            self.send(msg.Ack(int(self.mbpo.env_steps), None, self.stats()))

    # ---------------------------------------------------------------- commands

    def poll_commands(self) -> None:
        self.check_parent()
        try:
            while self.cmd_conn.poll(0):
                self.handle(self.cmd_conn.recv())
        except (EOFError, OSError) as e:
            raise ParentGone(str(e)) from e

    def save_checkpoint(self, durable_log_id: int | None) -> str:
        """Write the checkpoint, leaving out the newest transitions the log has not made durable yet."""
        from mbpo_ros.io.checkpoint import CheckpointError, save_checkpoint

        held, drop = self.held, 0
        if durable_log_id is not None:
            for lid in reversed(self.recent_ids):
                if lid == NO_LOG_ID or lid <= durable_log_id:
                    break
                drop += 1
            if drop:
                held = self.held.copy()
                for lid in list(self.recent_ids)[-drop:]:
                    held.discard(lid)
        tensors, arrays, meta = self.mbpo.state(drop_last_real=drop)
        meta[LOG_IDS_KEY] = held.ranges()
        try:
            path = save_checkpoint(self.ckpt_path, tensors=tensors, arrays=arrays, meta=meta)
        except CheckpointError as e:
            if "non-finite" in str(e):
                self.error = str(e)
            raise
        self.last_checkpoint = str(path)
        return self.last_checkpoint

    def handle(self, cmd: msg.Command) -> None:
        if isinstance(cmd, msg.Pause):
            self.paused = bool(cmd.paused)
            self.send_stats(force=True)
        elif isinstance(cmd, msg.CheckpointRequest):
            try:
                self.drain_until(cmd.drain_to)
                path, err = self.save_checkpoint(cmd.durable_log_id), None
            except Exception as e:  # a failed checkpoint is reported to its caller; training goes on
                path, err = "", f"{type(e).__name__}: {e}"
            self.send(msg.CheckpointDone(cmd.req_id, path, err, self.stats()))
            self.last_stats_t = time.monotonic()
        elif isinstance(cmd, msg.CloseRequest):
            path, err = "", None
            try:
                self.drain_until(cmd.drain_to)
                if cmd.checkpoint:
                    path = self.save_checkpoint(cmd.durable_log_id)
            except Exception as e:
                err = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
            self.send(msg.Closed(path, err, self.stats()))
            self.closing = True
        else:
            raise ValueError(f"unknown command {cmd!r} from the parent")

    # ---------------------------------------------------------------- training

    def note_metrics(self, metrics: dict | None) -> None:
        """Keep the figures stats() reports from what retrain()/step() returned."""
        if not metrics:
            return
        if "model_holdout_mse" in metrics:
            self.model_holdout_loss = float(metrics["model_holdout_mse"])
        if "model_holdout_nll" in metrics:
            self.model_holdout_nll = float(metrics["model_holdout_nll"])
        if "rollout_truncated_fraction" in metrics:
            self.truncated_fraction = float(metrics["rollout_truncated_fraction"])

    def async_work(self) -> bool:
        """One bounded piece of MBPO.work (core.schedule); False when nothing is due."""
        kind, metrics = self.mbpo.work(self.opts.chunk_updates)
        if kind == "retrain":
            self.note_metrics(metrics)
            self.send_stats(force=True)
        elif kind == "update":
            self.send_snapshot()
        return kind != "idle"

    def run(self) -> None:
        if self.bell_conn is not None:
            os.set_blocking(self.bell_conn.fileno(), False)
        self.replay_log()
        self.send_snapshot(force=True)
        self.send(msg.Ready(self.resumed, int(self.mbpo.env_steps), self.stats()))
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
        except ParentGone:
            return
