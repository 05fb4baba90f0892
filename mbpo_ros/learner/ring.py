"""The shared-memory transition ring between the control process and the learner child.

``submit()`` on the control thread must make no system call that wakes another task (a queue's
feeder thread or a pipe write did, and on a loaded machine the control thread then lost its CPU for
milliseconds: submit p99 4-8 ms against 0.06 ms with the ring), so transitions travel as fixed-size
float32 records in shared memory that the child polls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Transition", "RecordCodec", "Ring", "NO_LOG_ID"]

#: log_id of a transition that is not in the transition log
NO_LOG_ID = -1


@dataclass(frozen=True)
class Transition:
    """One real transition as the learner receives it.

    obs, next_obs: [obs_dim] float32; act: [act_dim] float32 in [-1, 1]; reward: float;
    terminated/truncated: bool; log_id: the transition log's id of this record
    (io.transition_log.log_id(session, sequence)), or NO_LOG_ID when it was not logged.
    """

    obs: np.ndarray
    act: np.ndarray
    reward: float
    next_obs: np.ndarray
    terminated: bool
    truncated: bool
    log_id: int = NO_LOG_ID


class RecordCodec:
    """A Transition as one fixed-size float32 record of the ring.

    Layout: [obs (obs_dim), act (act_dim), reward, next_obs (obs_dim), terminated, truncated,
    log_id (2 slots: the int64's bytes)]. The replay buffer stores float32, so nothing is lost.
    """

    def __init__(self, obs_dim: int, act_dim: int):
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.length = 2 * self.obs_dim + self.act_dim + 5

    def pack(self, tr: Transition) -> np.ndarray:
        o, a = self.obs_dim, self.act_dim
        rec = np.empty(self.length, dtype=np.float32)
        rec[:o] = tr.obs
        rec[o : o + a] = tr.act
        rec[o + a] = tr.reward
        rec[o + a + 1 : 2 * o + a + 1] = tr.next_obs
        rec[-4] = 1.0 if tr.terminated else 0.0
        rec[-3] = 1.0 if tr.truncated else 0.0
        rec[-2:] = np.array([tr.log_id], dtype=np.int64).view(np.float32)  # bytes, not a value
        return rec

    def unpack(self, rec: np.ndarray) -> Transition:
        o, a = self.obs_dim, self.act_dim
        return Transition(
            rec[:o].copy(), rec[o : o + a].copy(), float(rec[o + a]), rec[o + a + 1 : 2 * o + a + 1].copy(),
            bool(rec[-4]), bool(rec[-3]), int(rec[-2:].copy().view(np.int64)[0]),
        )


class Ring:
    """Single-producer, single-consumer ring of float32 records in shared memory.

    data: [capacity, length] float32 (multiprocessing RawArray); counters [written, consumed]
    (int64). Both sides hold a multiprocessing Lock while they touch it: uncontended it costs no
    system call, and it orders the memory accesses on every CPU. The writer (the control thread)
    never blocks: if the reader holds the lock, try_put writes nothing and the caller keeps the
    records for the next call. Nothing wakes the reader: it polls, so a submit never hands the CPU
    to another process.
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

    def pending_unlocked(self) -> list[np.ndarray]:
        """Records written and not taken, read WITHOUT the lock: only once the reader is dead (its
        lock may have died with it), to hand them to the next reader's ring."""
        w, r = int(self.ctr[0]), int(self.ctr[1])
        return [self.data[i % self.capacity].copy() for i in range(r, w)]
