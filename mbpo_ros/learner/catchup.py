"""Nothing lost between machines: per-arm sequence numbers, gap detection, duplicates dropped.

Plain Python (no ROS). Two sides:

- agent: ``History`` numbers the transitions of one stream (one agent session) 0, 1, 2, ...
  without a hole, keeps the newest ``retain`` in memory and serves a gap request from them, or,
  for older ones, from its transition log (``LogFallback``: the MCAP log, by log id).
- learner: ``Receiver`` knows, per stream, which sequence numbers it holds (an ``IdSet``) and how
  far each stream has got (the newest sequence number seen, or announced by a HEAD frame). It
  accepts a transition once (``accept`` is False for a duplicate), and ``requests(now)`` lists the
  gaps to ask for, again every ``retry_s`` while they stay open (a request or its answer may be
  lost too).

The learner's replay buffer dedups by id, and its checkpoint records the ids it holds
(learner/worker.py): ``fleet_id(arm, stream, seq)`` puts a stream's 31-bit key in the high half
and the sequence number in the low half (the layout of io.transition_log.log_id), so a learner
restarted from its checkpoint seeds its Receiver from those ids and asks only for what it lost.
"""

from __future__ import annotations

import bisect
import collections
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from mbpo_ros.learner.log_ids import IdSet
from mbpo_ros.learner.wire import GapRequest

__all__ = ["stream_key", "fleet_id", "split_fleet_id", "Receiver", "History", "LogFallback", "StreamCollision"]

_SEQ_LIMIT = 1 << 32


def stream_key(arm: str, stream: int) -> int:
    """31-bit key of a stream (arm id, session): the high half of its transitions' fleet ids."""
    return zlib.crc32(f"{arm}\0{int(stream)}".encode()) & 0x7FFFFFFF


def fleet_id(arm: str, stream: int, seq: int) -> int:
    """The learner's id of transition `seq` of a stream (unique across arms and sessions)."""
    if not 0 <= int(seq) < _SEQ_LIMIT:
        raise ValueError(f"sequence number {seq} is out of range [0, 2**32)")
    return (stream_key(arm, stream) << 32) | int(seq)


def split_fleet_id(fid: int) -> tuple[int, int]:
    """(stream key, seq) of a fleet id."""
    return int(fid) >> 32, int(fid) & (_SEQ_LIMIT - 1)


class StreamCollision(ValueError):
    """Two streams share a key (about one chance in 2**31 per pair): the second one is refused."""


class Receiver:
    """The learner's side of catch-up (module docstring).

    held: the fleet ids a checkpoint holds (a restarted learner's starting point); retry_s: how long
    an open gap waits before it is asked for again; max_request: at most this many sequence numbers
    per stream per request (the agent answers in bounded bursts; the rest follows next time).
    """

    def __init__(self, held: IdSet | None = None, retry_s: float = 1.0, max_request: int = 2000):
        if retry_s <= 0 or max_request < 1:
            raise ValueError(f"retry_s = {retry_s} must be > 0 and max_request = {max_request} >= 1")
        self.retry_s, self.max_request = float(retry_s), int(max_request)
        per_key: dict[int, list[list[int]]] = collections.defaultdict(list)
        for a, b in (held.ranges() if held is not None else []):
            while a < b:  # a range never spans two keys in practice; split it if it does
                key, seq = split_fleet_id(a)
                end = min(b, (key + 1) << 32)
                per_key[key].append([seq, seq + (end - a)])
                a = end
        self._held: dict[int, IdSet] = collections.defaultdict(IdSet)
        self._held.update({k: IdSet.from_ranges(r) for k, r in per_key.items()})
        self._names: dict[int, tuple[str, int]] = {}
        self._head: dict[int, int] = {}
        self._asked: dict[int, float] = {}
        self.duplicates = 0
        self.accepted = 0

    def _key(self, arm: str, stream: int) -> int:
        key = stream_key(arm, stream)
        name = self._names.setdefault(key, (arm, int(stream)))
        if name != (arm, int(stream)):
            raise StreamCollision(f"stream {stream} of arm {arm!r} has the same key as stream {name[1]} of arm "
                                  f"{name[0]!r}; restart that agent (a new session gets a new key)")
        return key

    def note_head(self, arm: str, stream: int, next_seq: int) -> None:
        """The stream has made `next_seq` transitions (a HEAD frame)."""
        key = self._key(arm, stream)
        self._head[key] = max(self._head.get(key, 0), int(next_seq))

    def accept(self, arm: str, stream: int, seq: int) -> bool:
        """True if transition `seq` of the stream is new (deliver it), False if it is held already."""
        key = self._key(arm, stream)
        if not 0 <= int(seq) < _SEQ_LIMIT:
            raise ValueError(f"sequence number {seq} of arm {arm!r} is out of range [0, 2**32)")
        self._head[key] = max(self._head.get(key, 0), int(seq) + 1)
        if not self._held[key].add(int(seq)):
            self.duplicates += 1
            return False
        self.accepted += 1
        return True

    def forget(self, arm: str, stream: int, seq: int) -> None:
        """Undo accept(): the transition did not reach the buffer after all (asked for again)."""
        self._held[self._key(arm, stream)].discard(int(seq))
        self.accepted -= 1

    def missing(self, arm: str, stream: int) -> list[tuple[int, int]]:
        """[start, end) ranges of the stream's sequence numbers below its head that are not held."""
        key = self._key(arm, stream)
        return self._missing(key)

    def _missing(self, key: int) -> list[tuple[int, int]]:
        head, out, pos = self._head.get(key, 0), [], 0
        for a, b in self._held[key].ranges() if key in self._held else []:
            if a >= head:
                break
            if a > pos:
                out.append((pos, a))
            pos = max(pos, b)
        if pos < head:
            out.append((pos, head))
        return out

    def requests(self, now: float) -> list[GapRequest]:
        """Gap requests due at time `now` (s): each open gap at most once per retry_s."""
        out = []
        for key, (arm, stream) in self._names.items():
            gaps = self._missing(key)
            if not gaps or now - self._asked.get(key, -float("inf")) < self.retry_s:
                continue
            ranges, budget = [], self.max_request
            for a, b in gaps:
                take = min(b - a, budget)
                ranges.append((a, a + take))
                budget -= take
                if not budget:
                    break
            self._asked[key] = now
            out.append(GapRequest(arm, stream, tuple(ranges)))
        return out

    def head(self, arm: str, stream: int) -> int:
        """How many transitions the stream is known to have made (newest seen or announced)."""
        return self._head.get(self._key(arm, stream), 0)

    def streams(self) -> list[tuple[str, int]]:
        return list(self._names.values())

    def held_count(self, arm: str | None = None) -> int:
        """Transitions held (of one arm, or of every stream seen)."""
        return sum(len(self._held[k]) for k, (a, _s) in self._names.items() if arm is None or a == arm)

    def open_gaps(self) -> int:
        """Sequence numbers missing below the heads, over every stream seen."""
        return sum(b - a for k in self._names for a, b in self._missing(k))


class History:
    """The agent's side of catch-up for one stream (module docstring).

    record_length: floats per record (wire.record_length); retain: newest records kept in memory;
    fallback: ``(log ids) -> {log id: record}`` for older ones (LogFallback), or None. ``append``
    takes each record's transition-log id (io.transition_log: NOT_LOGGED = -1 when the log did not
    take it), kept as a few (seq, offset) breakpoints: one while the log drops nothing.
    """

    def __init__(self, arm: str, stream: int, record_length: int, retain: int = 100_000,
                 fallback: Callable[[Sequence[int]], dict[int, np.ndarray]] | None = None):
        if retain < 1:
            raise ValueError(f"retain = {retain} must be >= 1")
        self.arm, self.stream, self.retain = arm, int(stream), int(retain)
        self._buf = np.zeros((self.retain, int(record_length)), dtype=np.float32)
        self.next_seq = 0
        self.fallback = fallback
        self._bp_seq: list[int] = []  # seq where a run of log ids starts
        self._bp_off: list[int | None] = []  # log id - seq over that run (None: not logged)
        self.served = 0
        self.unavailable = 0  # requested sequence numbers neither memory nor the log had

    def append(self, record: np.ndarray, log_id: int = -1) -> int:
        """Keep one record (and its transition-log id); returns its sequence number."""
        seq = self.next_seq
        off = None if log_id < 0 else int(log_id) - seq
        if not self._bp_off or self._bp_off[-1] != off:
            self._bp_seq.append(seq)
            self._bp_off.append(off)
        self._buf[seq % self.retain] = record
        self.next_seq = seq + 1
        return seq

    def oldest_retained(self) -> int:
        return max(0, self.next_seq - self.retain)

    def log_id(self, seq: int) -> int | None:
        """The transition-log id of `seq`, or None when the log did not take it."""
        i = bisect.bisect_right(self._bp_seq, int(seq)) - 1
        off = self._bp_off[i] if i >= 0 else None
        return None if off is None else int(seq) + off

    def serve(self, ranges: Iterable[tuple[int, int]], batch: int = 200) -> list[tuple[int, np.ndarray]]:
        """Answer a gap request: [(first_seq, records [n, length])] runs of at most `batch` records.

        Sequence numbers not made yet are ignored; ones neither retained nor in the fallback are
        counted in ``unavailable`` (lost for good: the learner keeps asking, the diagnostics say so).
        """
        want = sorted({s for a, b in ranges for s in range(max(0, int(a)), min(int(b), self.next_seq))})
        lo = self.oldest_retained()
        old = [s for s in want if s < lo]
        found: dict[int, np.ndarray] = {}
        if old and self.fallback is not None:
            ids = {s: self.log_id(s) for s in old}
            by_id = self.fallback([i for i in ids.values() if i is not None])
            found = {s: by_id[i] for s, i in ids.items() if i is not None and i in by_id}
        out: list[tuple[int, np.ndarray]] = []
        run: list[np.ndarray] = []
        first = prev = -2
        for s in want:
            rec = self._buf[s % self.retain] if s >= lo else found.get(s)
            if rec is None:
                self.unavailable += 1
                continue
            if s != prev + 1 or len(run) >= batch:
                if run:
                    out.append((first, np.stack(run)))
                run, first = [], s
            run.append(rec)
            prev = s
        if run:
            out.append((first, np.stack(run)))
        self.served += sum(len(r) for _f, r in out)
        return out


class LogFallback:
    """Serve old transitions from the agent's MCAP transition log, by log id (io.transition_log).

    Reads the log once per call (a gap older than the in-memory history is rare: a learner that was
    away for longer than ``retain`` transitions)."""

    def __init__(self, log_path: str | Path):
        self.path = Path(log_path)

    def __call__(self, log_ids: Sequence[int]) -> dict[int, np.ndarray]:
        from mbpo_ros.io.transition_log import read_transitions
        from mbpo_ros.learner.wire import pack_record

        want = {int(x) for x in log_ids}
        data = read_transitions(self.path)
        out = {}
        for i, lid in enumerate(data["log_id"]):
            if int(lid) in want:
                out[int(lid)] = pack_record(data["obs"][i], data["action"][i], float(data["reward"][i]),
                                            data["next_obs"][i], bool(data["terminated"][i]),
                                            bool(data["truncated"][i]))
        return out
