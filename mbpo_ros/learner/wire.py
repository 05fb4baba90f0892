"""The fleet wire format: what agents and a remote learner_node send each other over DDS.

Standard messages only (the pip install path has no message generation): every fleet message is
one ``std_msgs/msg/UInt8MultiArray`` whose ``data`` is a versioned frame::

    magic b"MBPF" | version u16 | kind u8 | reserved u8 | header length u32 | header (UTF-8 JSON)
    | crc32 of the body u32 | body

(little endian). A receiver refuses a frame with another magic, a newer version, a header that
is not JSON or a body whose CRC-32 does not match (``WireError``, one line). Kinds:

- ``TRANSITIONS`` (agent -> learner): ``arm``, ``stream``, ``first_seq``, ``obs_dim``,
  ``act_dim``, ``count``; body: ``count`` float32 records ``[obs, act, reward, next_obs,
  terminated, truncated]`` with sequence numbers ``first_seq, first_seq + 1, ...``. A stream is
  one agent session (a random 63-bit number drawn at its start); sequence numbers count the
  stream's transitions from 0 without a hole, so the learner sees every gap.
- ``HEAD`` (agent -> learner, periodic): ``arm``, ``stream``, ``next_seq`` (how many the stream
  has made) and ``identity`` (the arm and task, core/identity.py): a learner that started late or
  was cut off learns what it is missing even when no new transition comes.
- ``GAPS`` (learner -> agents): ``arm``, ``stream``, ``ranges`` ([start, end) of missing sequence
  numbers); the agent answers with ``TRANSITIONS`` frames.
- ``SNAPSHOT`` (learner -> agents, reliable + transient local): ``version`` (increasing per
  learner run), ``learner`` (the run's id), ``env_steps``, ``identity`` (the arm/task the policy
  was trained for), ``stamp`` (publish time, wall clock), ``sha256`` of the body, ``arrays`` ([name, dtype, shape] of
  ``PolicySnapshot.to_arrays()``); body: the arrays' bytes in that order.

Plain Python + NumPy: no rclpy (the nodes put the bytes into the message).
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "WIRE_VERSION", "MSG_TYPE", "WireError", "Kind", "TransitionBatch", "Head", "GapRequest", "SnapshotFrame",
    "record_length", "encode_transitions", "encode_head", "encode_gaps", "encode_snapshot", "decode",
]

MAGIC = b"MBPF"
#: version of the frame layout and of the headers; a receiver refuses newer versions
WIRE_VERSION = 1
#: the ROS message type every fleet topic carries
MSG_TYPE = "std_msgs/msg/UInt8MultiArray"
_PREFIX = struct.Struct("<4sHBBI")
_CRC = struct.Struct("<I")
_MAX_HEADER = 1 << 20


class WireError(ValueError):
    """A frame this version cannot read (the message says why, in one line)."""


class Kind:
    TRANSITIONS = 1
    HEAD = 2
    GAPS = 3
    SNAPSHOT = 4


def record_length(obs_dim: int, act_dim: int) -> int:
    """float32 values per transition record: obs, act, reward, next_obs, terminated, truncated."""
    return 2 * int(obs_dim) + int(act_dim) + 3


@dataclass(frozen=True)
class TransitionBatch:
    """Transitions ``first_seq ..`` of one stream. records: [count, record_length] float32."""

    arm: str
    stream: int
    first_seq: int
    obs_dim: int
    act_dim: int
    records: np.ndarray

    @property
    def seqs(self) -> range:
        return range(self.first_seq, self.first_seq + len(self.records))

    def unpack(self, i: int) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, bool, bool]:
        """(obs, act, reward, next_obs, terminated, truncated) of record i."""
        o, a, r = self.obs_dim, self.act_dim, self.records[i]
        return (r[:o], r[o:o + a], float(r[o + a]), r[o + a + 1:2 * o + a + 1], bool(r[-2]), bool(r[-1]))


@dataclass(frozen=True)
class Head:
    arm: str
    stream: int
    next_seq: int
    identity: dict[str, Any]


@dataclass(frozen=True)
class GapRequest:
    arm: str
    stream: int
    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class SnapshotFrame:
    version: int
    learner: str
    env_steps: int
    identity: dict[str, Any]
    arrays: dict[str, np.ndarray]
    stamp: float = 0.0


def pack_record(obs, act, reward: float, next_obs, terminated: bool, truncated: bool) -> np.ndarray:
    """One transition as a float32 record (the layout of TRANSITIONS bodies)."""
    return np.concatenate([np.asarray(obs, np.float32).reshape(-1), np.asarray(act, np.float32).reshape(-1),
                           np.array([reward], np.float32), np.asarray(next_obs, np.float32).reshape(-1),
                           np.array([1.0 if terminated else 0.0, 1.0 if truncated else 0.0], np.float32)])


def _frame(kind: int, header: dict[str, Any], body: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((_PREFIX.pack(MAGIC, WIRE_VERSION, kind, 0, len(head)), head,
                     _CRC.pack(zlib.crc32(body)), body))


def _check_arm(arm: str) -> str:
    if not isinstance(arm, str) or not arm:
        raise ValueError(f"arm id must be a non-empty string, got {arm!r}")
    return arm


def encode_transitions(arm: str, stream: int, first_seq: int, records: np.ndarray, obs_dim: int,
                       act_dim: int) -> bytes:
    """records: [n, record_length(obs_dim, act_dim)] float32 (pack_record rows), seqs first_seq .. + n."""
    recs = np.ascontiguousarray(records, dtype=np.float32)
    if recs.ndim != 2 or recs.shape[1] != record_length(obs_dim, act_dim):
        raise ValueError(f"records have shape {recs.shape}, expected [n, {record_length(obs_dim, act_dim)}]")
    return _frame(Kind.TRANSITIONS, {"arm": _check_arm(arm), "stream": int(stream), "first_seq": int(first_seq),
                                     "obs_dim": int(obs_dim), "act_dim": int(act_dim), "count": len(recs)},
                  recs.tobytes())


def encode_head(arm: str, stream: int, next_seq: int, identity: dict[str, Any]) -> bytes:
    return _frame(Kind.HEAD, {"arm": _check_arm(arm), "stream": int(stream), "next_seq": int(next_seq),
                              "identity": identity})


def encode_gaps(arm: str, stream: int, ranges) -> bytes:
    return _frame(Kind.GAPS, {"arm": _check_arm(arm), "stream": int(stream),
                              "ranges": [[int(a), int(b)] for a, b in ranges]})


def encode_snapshot(version: int, learner: str, env_steps: int, identity: dict[str, Any],
                    arrays: dict[str, np.ndarray], stamp: float = 0.0) -> bytes:
    """arrays: PolicySnapshot.to_arrays(); the header carries the body's SHA-256 and the publish time
    (``stamp``, wall-clock s since the epoch: the receiver's install lag, on machines with synced clocks)."""
    names, chunks = [], []
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        names.append([str(name), a.dtype.str, list(a.shape)])
        chunks.append(a.tobytes())
    body = b"".join(chunks)
    return _frame(Kind.SNAPSHOT, {"version": int(version), "learner": str(learner), "env_steps": int(env_steps),
                                  "identity": identity, "stamp": float(stamp),
                                  "sha256": hashlib.sha256(body).hexdigest(),
                                  "arrays": names}, body)


def _field(h: dict, key: str, typ: type) -> Any:
    v = h.get(key)
    if not isinstance(v, typ) or isinstance(v, bool) and typ is int:
        raise WireError(f"frame header field {key!r} is {v!r}, expected {typ.__name__}")
    return v


def decode(data: bytes | bytearray | memoryview) -> TransitionBatch | Head | GapRequest | SnapshotFrame:
    """One frame -> its typed content. Raises WireError naming what is wrong."""
    buf = memoryview(bytes(data)) if not isinstance(data, bytes) else memoryview(data)
    if len(buf) < _PREFIX.size + _CRC.size:
        raise WireError(f"fleet frame of {len(buf)} bytes is shorter than its {_PREFIX.size + _CRC.size}-byte prefix")
    magic, version, kind, _res, hlen = _PREFIX.unpack_from(buf, 0)
    if magic != MAGIC:
        raise WireError(f"not an mbpo_ros fleet frame (magic {bytes(magic)!r}, expected {MAGIC!r})")
    if version > WIRE_VERSION:
        raise WireError(f"fleet frame version {version} is newer than this mbpo_ros reads ({WIRE_VERSION}): "
                        "update mbpo_ros on this machine")
    end = _PREFIX.size + hlen
    if hlen > _MAX_HEADER or end + _CRC.size > len(buf):
        raise WireError(f"fleet frame header of {hlen} bytes does not fit the {len(buf)}-byte frame")
    try:
        h = json.loads(bytes(buf[_PREFIX.size:end]))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WireError(f"fleet frame header is not JSON: {e}") from None
    if not isinstance(h, dict):
        raise WireError("fleet frame header is not a JSON object")
    (crc,) = _CRC.unpack_from(buf, end)
    body = buf[end + _CRC.size:]
    if zlib.crc32(body) != crc:
        raise WireError(f"fleet frame body fails its CRC-32 ({len(body)} bytes): damaged in transit")
    if kind == Kind.TRANSITIONS:
        o, a, n = _field(h, "obs_dim", int), _field(h, "act_dim", int), _field(h, "count", int)
        width = record_length(o, a)
        if o <= 0 or a <= 0 or n < 0 or len(body) != 4 * width * n:
            raise WireError(f"transition frame body is {len(body)} bytes, {n} records of {width} float32 need "
                            f"{4 * width * n}")
        recs = np.frombuffer(body, dtype=np.float32).reshape(n, width)
        return TransitionBatch(_field(h, "arm", str), _field(h, "stream", int), _field(h, "first_seq", int), o, a,
                               recs)
    if kind == Kind.HEAD:
        return Head(_field(h, "arm", str), _field(h, "stream", int), _field(h, "next_seq", int),
                    _field(h, "identity", dict))
    if kind == Kind.GAPS:
        ranges = _field(h, "ranges", list)
        try:
            rr = tuple((int(a), int(b)) for a, b in ranges)
        except (TypeError, ValueError):
            raise WireError(f"gap request ranges {ranges!r} are not [start, end) pairs") from None
        return GapRequest(_field(h, "arm", str), _field(h, "stream", int), rr)
    if kind == Kind.SNAPSHOT:
        if hashlib.sha256(body).hexdigest() != h.get("sha256"):
            raise WireError("policy snapshot fails its SHA-256 checksum: damaged in transit")
        arrays, off = {}, 0
        try:
            for name, dtype, shape in _field(h, "arrays", list):
                dt = np.dtype(dtype)
                if dt.kind not in "fiu":
                    raise WireError(f"policy array {name!r} has dtype {dtype!r}; only numbers are accepted")
                size = dt.itemsize * int(np.prod(shape, dtype=np.int64))
                if off + size > len(body):
                    raise WireError(f"policy array {name!r} runs past the end of the snapshot body")
                arrays[str(name)] = np.frombuffer(body[off:off + size], dtype=dt).reshape(shape).copy()
                off += size
        except WireError:
            raise
        except (TypeError, ValueError) as e:
            raise WireError(f"policy snapshot array list is malformed: {e}") from None
        if off != len(body):
            raise WireError(f"policy snapshot body has {len(body) - off} bytes beyond its arrays")
        return SnapshotFrame(_field(h, "version", int), _field(h, "learner", str), _field(h, "env_steps", int),
                             _field(h, "identity", dict), arrays, float(h.get("stamp") or 0.0))
    raise WireError(f"fleet frame kind {kind} is unknown to wire version {WIRE_VERSION}")
