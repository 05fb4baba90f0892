"""LearningSession: the transition log and the supervised learner, kept consistent.

The log is the source of truth (issue 11, "Nothing lost"); the learner is rebuilt from it:

- ``record()`` appends a transition to the log first and hands it to the learner with the log id
  the log gave it, so a (re)started learner replays from the log exactly what it does not hold.
- ``checkpoint()`` flushes the log, then asks the learner for a checkpoint that holds only
  transitions the log has written (``durable_log_id``), so a crash can never leave a checkpoint
  holding a transition that the log lost.
- On start the learner loads ``run_dir/checkpoint`` and replays every logged transition the
  checkpoint does not hold; a crashed learner is restarted the same way (the log is flushed first).
- Periodic checkpoints run on their own thread at ``checkpoint_period`` after the previous one was
  written: the newest checkpoint is never older than the period plus the one bounded piece of work
  the learner is doing when asked (a retrain, bounded by ``mbpo.max_model_train_seconds``, or
  ``chunk_updates`` SAC updates) plus the write itself.
- ``close()`` never raises: final checkpoint (flush first), then the log's footer; it returns
  what happened, including whether the learner was dead (for the node's exit code).

Plain Python (no ROS): agent_node wires it; tests drive it directly.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mbpo_ros.io.transition_log import NOT_LOGGED, LogStatus, TransitionLog
from mbpo_ros.learner.supervisor import ERROR, OK, LearnerHealth, RestartPolicy, TrainerProcess
from mbpo_ros.learner.worker import WorkerOptions

__all__ = ["LearningSession", "CloseResult", "LOG_NAME"]

#: the transition log's base name inside the run directory
LOG_NAME = "transitions.mcap"


@dataclass(frozen=True)
class CloseResult:
    """What close() did: the final checkpoint's path ('' if none), the error text, whether the learner
    was dead (gave up, or down / not closed in order) and the log's last status."""

    checkpoint: str
    error: str
    learner_dead: bool
    log: LogStatus | None


@dataclass
class _Periodic:
    last_ok: float = field(default_factory=time.monotonic)
    last_error: str = ""
    written: int = 0


class LearningSession:
    """A run directory's transition log + supervised learner (see the module docstring).

    run_dir: holds ``checkpoint/`` and ``transitions*.mcap``. log_transitions: False = no log (the
    learner then cannot replay anything after a crash). checkpoint_period: seconds, 0 = off.
    log_options: keyword arguments of TransitionLog (flush_every, flush_interval, max_segment_transitions,
    ...). The rest is TrainerProcess's.
    """

    def __init__(
        self,
        run_dir: str | Path,
        obs_dim: int,
        act_dim: int,
        cfg: Any,
        task_name: str,
        task_kwargs: dict[str, Any] | None = None,
        *,
        lockstep: bool = False,
        queue_size: int = 10000,
        log_transitions: bool = True,
        checkpoint_period: float = 0.0,
        checkpoint_timeout: float = 120.0,
        options: WorkerOptions | None = None,
        restart: RestartPolicy | None = None,
        log_options: dict[str, Any] | None = None,
    ):
        if checkpoint_period < 0:
            raise ValueError(f"checkpoint_period = {checkpoint_period} must be >= 0 seconds (0 = off)")
        self.run_dir = Path(run_dir)
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.checkpoint_period = float(checkpoint_period)
        self.checkpoint_timeout = float(checkpoint_timeout)
        self.log: TransitionLog | None = None
        self._log_transitions = bool(log_transitions)
        self._log_options = dict(log_options or {})
        self.trainer = TrainerProcess(
            obs_dim, act_dim, cfg, task_name, self.run_dir, resume=True, queue_size=queue_size, lockstep=lockstep,
            options=options, task_kwargs=task_kwargs,
            log_path=self.run_dir / LOG_NAME if log_transitions else None, restart=restart, flush_log=self._flush_log,
        )
        self._periodic = _Periodic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ckpt_lock = threading.Lock()  # one checkpoint request at a time
        self.last_checkpoint = ""

    # ---------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Open the log (a new session segment), start the learner (checkpoint + log replay), start
        the periodic checkpoints. Raises like TrainerProcess.start()."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self._log_transitions:
            self.log = TransitionLog(self.run_dir / LOG_NAME, self.obs_dim, self.act_dim, resume=True,
                                     **self._log_options)
        try:
            self.trainer.start()
        except BaseException:
            if self.log is not None:
                self.log.close()
            raise
        self._periodic.last_ok = time.monotonic()
        if self.checkpoint_period > 0:
            self._thread = threading.Thread(target=self._periodic_loop, name="mbpo-periodic-checkpoint",
                                            daemon=True)
            self._thread.start()

    def close(self, checkpoint: bool = True, timeout: float = 120.0) -> CloseResult:
        """Stop periodic checkpoints, final checkpoint (log flushed first), close the log. Never raises."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        durable = self._flush_log()
        error = ""
        with self._ckpt_lock:
            self.trainer.close(checkpoint=checkpoint, timeout=timeout, durable_log_id=durable)
        st = self.trainer.stats()
        if st.get("error"):
            error = str(st["error"])
        elif st.get("last_checkpoint"):
            self.last_checkpoint = str(st["last_checkpoint"])
        status = None
        if self.log is not None:
            self.log.close()
            status = self.log.status()
        return CloseResult(self.last_checkpoint if not error else "", error, self.trainer.dead, status)

    # ---------------------------------------------------------------- control side

    def record(self, obs, act, reward, next_obs, terminated: bool, truncated: bool, episode: int, step: int,
               stamp_ns: int) -> bool:
        """Log the transition, then hand it to the learner with its log id. Never blocks.

        Returns whether the learner took it (a dropped one is still in the log if the log took it)."""
        lid = NOT_LOGGED
        if self.log is not None:
            lid = self.log.append(obs, act, reward, next_obs, terminated, truncated, episode, step, stamp_ns)
        return self.trainer.submit(obs, act, reward, next_obs, terminated, truncated, log_id=lid)

    def checkpoint(self, timeout: float | None = None) -> str:
        """Flush the log, then a learner checkpoint of what the log holds; returns its path.

        Raises RuntimeError / TimeoutError like TrainerProcess.request_checkpoint."""
        with self._ckpt_lock:
            durable = self._flush_log()
            path = self.trainer.request_checkpoint(
                timeout=self.checkpoint_timeout if timeout is None else timeout, durable_log_id=durable)
        self.last_checkpoint = path
        self._periodic.last_ok = time.monotonic()
        self._periodic.last_error = ""
        return path

    def health(self) -> LearnerHealth:
        """The learner's health, ERROR also when the last periodic checkpoint failed."""
        h = self.trainer.health()
        if h.level == OK and self._periodic.last_error:
            return LearnerHealth(ERROR, f"periodic checkpoint failed: {self._periodic.last_error}", h.dead)
        return h

    def log_status(self) -> LogStatus | None:
        return None if self.log is None else self.log.status()

    def checkpoint_age(self) -> float:
        """Seconds since the last checkpoint was written (or since start)."""
        return time.monotonic() - self._periodic.last_ok

    # ---------------------------------------------------------------- internals

    def _flush_log(self) -> int | None:
        """Make the log durable; the newest durable log id (None without a log)."""
        if self.log is None:
            return None
        return self.log.flush()

    def _periodic_loop(self) -> None:
        while True:
            due = self._periodic.last_ok + self.checkpoint_period
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            if self.trainer.health().level != OK and self.trainer.stats()["state"] != "running":
                self._stop.wait(min(1.0, self.checkpoint_period))  # the learner is down: retry soon
                continue
            try:
                self.checkpoint()
                self._periodic.written += 1
            except (RuntimeError, TimeoutError) as e:
                self._periodic.last_error = str(e)
                self._stop.wait(min(5.0, self.checkpoint_period))
