"""Real transitions as a ROS 2 bag: the rosbag2 directory ``<run_dir>/transitions/`` (``metadata.yaml``
plus MCAP segments in CDR, ROS 2 message, encoding).

Every real transition the agent sees becomes one ``std_msgs/msg/Float64MultiArray``
message on topic ``/mbpo/transitions``, logged at the transition's ROS time stamp (ns).
The standard type and the bag directory mean ``ros2 bag info runs/<run>/transitions`` and
``ros2 bag play runs/<run>/transitions`` cover the whole log (every session and segment), and
Foxglove and ``mcap_ros2.reader.read_ros2_messages`` read each segment anywhere, with no custom
package. ``metadata.yaml`` is rosbag2's (io/rosbag2.py; rewritten when a segment opens or closes
and on ``flush()``), with the topic's offered QoS (reliable, volatile), which each segment's
channel carries too (``offered_qos_profiles``, as rosbag2's MCAP storage writes it). Messages are
written with mcap's public ``Writer`` API; the CDR bytes are laid out here (``_cdr_prefix``).
``layout.dim`` labels the segments of ``data`` (size = segment length, stride = size,
``data_offset`` = 0)::

    obs [obs_dim] | action [act_dim] | reward [1] | next_obs [obs_dim]
    | terminated [1] | truncated [1] | episode [1] | step [1]

(booleans as 0.0/1.0; episode and step are integers, exact in float64 up to 2**53).
The schema registered is the exact ``.msg`` text of Float64MultiArray followed by its
dependencies MultiArrayLayout and MultiArrayDimension, in ROS 2's concatenated
``ros2msg`` form (80 ``=`` then ``MSG: std_msgs/msg/<Type>``); the text is read from the
installed std_msgs (ament index), falling back to an identical embedded copy.

Restarts and crashes - the log is a sequence of segment files. An MCAP file cannot be
appended to after its footer, so each ``TransitionLog`` session writes new files next
to the earlier ones::

    transitions/transitions.mcap, transitions/transitions.1.mcap, ..., transitions/metadata.yaml

Loose ``<run_dir>/transitions*.mcap`` segments of an older mbpo_ros are still read (first), and a
log continued in the bag numbers its segments after them.

A session starts a new segment, and so do ``max_segment_transitions`` transitions
(rotation) and a recovery after a failed write. Each is a complete, standalone MCAP
once its writer is closed. ``read_transitions`` reads them in index order. A segment
whose writer was killed has no footer; it is read sequentially up to its last intact
record, so the data it had flushed is kept and the earlier segments are untouched.
``resume=False`` deletes the existing segments and starts afresh.

Identity - ``append`` returns the transition's log id, ``log_id(session, sequence)``:
the session is the index of the session's first segment (stored in the channel's
metadata, ``mbpo_ros.session``), the sequence counts the session's transitions (the
MCAP message ``sequence``). Ids are unique in a log and grow in write order;
``read_transitions`` returns them (``log_id``) with the segment index, the episode,
the step and the stamp, so a learner can replay exactly the records it does not hold.

Loss on a crash is bounded: the writer hands its open chunk to the OS after at most
``flush_every`` transitions (default 100) or ``flush_interval`` seconds (default 1 s),
whichever comes first, and on ``flush()`` (which also fsyncs and returns
``durable_log_id``). A killed process therefore loses at most those plus what was still
queued for the writer thread (normally nothing: it keeps up); a power cut can lose what
the OS had not written since the last ``flush()`` or segment end (both fsync).

Full disk / I/O errors - the writer never stops for good: it counts the transitions of
the failed chunk as ``lost``, reports ERROR in ``status()`` while the disk refuses
writes (appends meanwhile are dropped and counted), retries every ``retry_interval``
seconds in a new segment, and reports WARN (with the counts) once it writes again.
``flush()`` and ``close()`` never raise for it.

Writes never block the control loop: ``append`` checks sizes, packs one float64 vector
and puts it on a bounded queue (``put_nowait``); a writer thread encodes and writes.
When the queue is full the transition is dropped and counted in ``dropped``.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import re
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mcap.exceptions import McapError
from mcap.reader import NonSeekingReader
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import LIBRARY_IDENTIFIER as MCAP_LIBRARY
from mcap.writer import CompressionType
from mcap.writer import Writer as McapWriter
from mcap_ros2.decoder import DecoderFactory

from mbpo_ros.io.rosbag2 import (
    METADATA_FILE,
    RELIABLE_VOLATILE_QOS,
    SegmentInfo,
    TopicInfo,
    segment_info,
    write_metadata,
)

__all__ = [
    "NOT_LOGGED",
    "LogStatus",
    "log_id",
    "TOPIC",
    "MSG_TYPE",
    "FIELDS",
    "TransitionLog",
    "read_transitions",
    "segment_paths",
    "float64_multiarray_schema",
]

log = logging.getLogger(__name__)

TOPIC = "/mbpo/transitions"
MSG_TYPE = "std_msgs/msg/Float64MultiArray"
FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated", "episode", "step")
DEFAULT_NAME = "transitions.mcap"
_SEPARATOR = "=" * 80

# Exact copies of the Jazzy std_msgs .msg files, used when the ament index has no std_msgs.
_EMBEDDED_MSGS = {
    "Float64MultiArray": """\
# This was originally provided as an example message.
# It is deprecated as of Foxy
# It is recommended to create your own semantically meaningful message.
# However if you would like to continue using this please use the equivalent in example_msgs.

# Please look at the MultiArrayLayout message definition for
# documentation on all multiarrays.

MultiArrayLayout  layout        # specification of data layout
float64[]         data          # array of data
""",
    "MultiArrayLayout": """\
# This was originally provided as an example message.
# It is deprecated as of Foxy
# It is recommended to create your own semantically meaningful message.
# However if you would like to continue using this please use the equivalent in example_msgs.

# The multiarray declares a generic multi-dimensional array of a
# particular data type.  Dimensions are ordered from outer most
# to inner most.
#
# Accessors should ALWAYS be written in terms of dimension stride
# and specified outer-most dimension first.
#
# multiarray(i,j,k) = data[data_offset + dim_stride[1]*i + dim_stride[2]*j + k]
#
# A standard, 3-channel 640x480 image with interleaved color channels
# would be specified as:
#
# dim[0].label  = "height"
# dim[0].size   = 480
# dim[0].stride = 3*640*480 = 921600  (note dim[0] stride is just size of image)
# dim[1].label  = "width"
# dim[1].size   = 640
# dim[1].stride = 3*640 = 1920
# dim[2].label  = "channel"
# dim[2].size   = 3
# dim[2].stride = 3
#
# multiarray(i,j,k) refers to the ith row, jth column, and kth channel.

MultiArrayDimension[] dim # Array of dimension properties
uint32 data_offset        # padding bytes at front of data
""",
    "MultiArrayDimension": """\
# This was originally provided as an example message.
# It is deprecated as of Foxy
# It is recommended to create your own semantically meaningful message.
# However if you would like to continue using this please use the equivalent in example_msgs.

string label   # label of given dimension
uint32 size    # size of given dimension (in type units)
uint32 stride  # stride of given dimension
""",
}


def _msg_text(name: str) -> str:
    """The .msg text of std_msgs/msg/<name>: from the ament index, else the embedded copy."""
    candidates: list[Path] = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            candidates.append(Path(get_package_share_directory("std_msgs")) / "msg" / f"{name}.msg")
        except (PackageNotFoundError, ValueError, LookupError, OSError):
            pass  # AMENT_PREFIX_PATH unset (OSError) or without std_msgs: try the next source
    except ImportError:
        pass  # no ament_index_python: the embedded text is exact for Jazzy
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "std_msgs" / "msg" / f"{name}.msg")
    for path in candidates:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return _EMBEDDED_MSGS[name]


def float64_multiarray_schema() -> str:
    """The full ros2msg schema of std_msgs/msg/Float64MultiArray, dependencies included."""
    parts = [_msg_text("Float64MultiArray")]
    for dep in ("MultiArrayLayout", "MultiArrayDimension"):
        text = parts[-1]
        sep = "" if text.endswith("\n") else "\n"
        parts.append(f"{sep}{_SEPARATOR}\nMSG: std_msgs/msg/{dep}\n{_msg_text(dep)}")
    return "".join(parts)


# ----------------------------------------------------------------------------- paths

_SEGMENT_RE = re.compile(r"^(?P<stem>.+?)(?:\.(?P<index>\d+))?\.mcap$")


def _base_path(path: str | os.PathLike) -> Path:
    """``path`` as the log's base name: a ``.mcap`` file, ``<dir>/transitions.mcap`` for a run
    directory, or ``<parent>/<bag>.mcap`` for a bag directory (one holding metadata.yaml)."""
    p = Path(path)
    if p.suffix == ".mcap":
        return p
    if (p / METADATA_FILE).is_file():
        return p.parent / f"{p.name}.mcap"
    return p / DEFAULT_NAME


def _bag_dir(base: Path) -> Path:
    """The rosbag2 directory of the log with base ``<dir>/transitions.mcap``: ``<dir>/transitions/``."""
    return base.with_suffix("")


def _segments_named(base: Path) -> list[tuple[int, Path]]:
    """(index, path) of the files ``<stem>.mcap``, ``<stem>.<i>.mcap`` beside ``base``."""
    if not base.parent.is_dir():
        return []
    stem = base.name[: -len(".mcap")]
    found: list[tuple[int, Path]] = []
    for child in base.parent.iterdir():
        m = _SEGMENT_RE.match(child.name)
        if m and m.group("stem") == stem and child.is_file():
            found.append((int(m.group("index") or 0), child))
    return found


def segment_paths(path: str | os.PathLike) -> list[Path]:
    """Existing segment files of the log at ``path`` (run dir, bag dir or base .mcap), in reading order:
    the bag directory's segments, after loose ones an older mbpo_ros wrote beside it (their indices
    come first: a log continued in the bag numbers its segments after them)."""
    base = _base_path(path)
    bag = _bag_dir(base)
    found = _segments_named(base) + _segments_named(bag / base.name)
    return [p for _, p in sorted(found, key=lambda t: (t[0], t[1].parent == bag))]


def _segment_path(base: Path, index: int) -> Path:
    """Where segment ``index`` of the log with base ``base`` is written: in its bag directory."""
    name = base.name if index == 0 else f"{base.name[: -len('.mcap')]}.{index}.mcap"
    return _bag_dir(base) / name


def _segment_index(path: Path) -> int:
    m = _SEGMENT_RE.match(path.name)
    return int(m.group("index") or 0) if m else 0


# ----------------------------------------------------------------------------- writing


def _cdr_prefix(dims: list[tuple[str, int, int]], n: int) -> bytes:
    """The bytes of a CDR (little-endian, ROS 2) std_msgs/msg/Float64MultiArray with layout ``dims``
    (label, size, stride), data_offset 0 and ``n`` values, up to the first value: every message of a
    log shares them, then ``n`` little-endian float64 follow. Alignment is relative to the byte after
    the 4-byte encapsulation header, as CDR has it; mcap-ros2-support's decoder reads it back."""
    out = bytearray(b"\x00\x01\x00\x00")  # CDR_LE encapsulation

    def align(k: int) -> None:
        out.extend(b"\x00" * ((-(len(out) - 4)) % k))

    align(4)
    out += struct.pack("<I", len(dims))  # layout.dim: sequence<MultiArrayDimension>
    for label, size, stride in dims:
        text = label.encode() + b"\x00"
        align(4)
        out += struct.pack("<I", len(text)) + text  # string label
        align(4)
        out += struct.pack("<II", size, stride)  # uint32 size, uint32 stride
    align(4)
    out += struct.pack("<I", 0)  # layout.data_offset
    out += struct.pack("<I", n)  # data: sequence<float64> length
    align(8)
    return bytes(out)


_FLUSH = object()
_STOP = object()

#: what ``append`` returns for a transition it did not take
NOT_LOGGED = -1
#: channel / metadata key of a segment's session
SESSION_KEY = "mbpo_ros.session"


def log_id(session: int, sequence: int) -> int:
    """The id of a logged transition: its session (index of the session's first segment) and its
    sequence number in that session. Unique within a log and increasing in write order."""
    if not (0 <= session < 2**31 and 0 <= sequence < 2**32):
        raise ValueError(f"log id out of range: session {session}, sequence {sequence}")
    return (int(session) << 32) | int(sequence)


@dataclass(frozen=True)
class LogStatus:
    """The writer's health for /diagnostics.

    level: "OK"; "WARN" once transitions were lost or dropped but the writer works again;
    "ERROR" while it cannot write (a full disk, an I/O error). lost: transitions that reached
    the writer but not the disk; dropped: appends refused (queue full, or the writer failing).
    """

    level: str
    message: str
    written: int
    lost: int
    dropped: int
    recoveries: int
    segment: str


class TransitionLog:
    """Non-blocking logger of real transitions into MCAP segment files (see module doc).

    path:           run directory (the log is the bag ``<dir>/transitions/``), the bag directory, or a
                    ``.mcap`` base path ``<dir>/<name>.mcap`` (the bag ``<dir>/<name>/``).
    obs_dim:        observation length.
    act_dim:        action length.
    resume:         keep earlier segments and add a new one (default); False deletes them first.
    queue_size:     transitions buffered between ``append`` and the writer thread.
    flush_interval: at most this many seconds between two flushes to the OS (bounds crash loss).
    flush_every:    at most this many transitions between two flushes (bounds crash loss).
    chunk_size:     most bytes in one MCAP chunk (a chunk is closed on every flush).
    max_segment_transitions: a new segment file after this many transitions (0 = one per session).
    retry_interval: seconds between two attempts to write again after a write failed.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        obs_dim: int,
        act_dim: int,
        resume: bool = True,
        queue_size: int = 10_000,
        flush_interval: float = 1.0,
        chunk_size: int = 256 * 1024,
        flush_every: int = 100,
        max_segment_transitions: int = 100_000,
        retry_interval: float = 1.0,
    ) -> None:
        if obs_dim <= 0 or act_dim <= 0:
            raise ValueError(f"obs_dim and act_dim must be positive, got obs_dim={obs_dim}, act_dim={act_dim}")
        if queue_size <= 0:
            raise ValueError(f"queue_size must be positive, got {queue_size}")
        if flush_every <= 0 or not flush_interval > 0:
            raise ValueError(f"flush_every ({flush_every}) and flush_interval ({flush_interval} s) must be positive")
        if max_segment_transitions < 0:
            raise ValueError(f"max_segment_transitions must be >= 0 (0 = no rotation), got {max_segment_transitions}")
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self.base_path = _base_path(path)
        self.bag_dir = _bag_dir(self.base_path)
        self.bag_dir.mkdir(parents=True, exist_ok=True)
        existing = segment_paths(self.base_path)
        if not resume:
            for p in existing:
                p.unlink()
            (self.bag_dir / METADATA_FILE).unlink(missing_ok=True)
            existing = []
        self._infos: dict[str, SegmentInfo] = {}  # closed bag segments (file name -> summary), for metadata.yaml
        self._first_ns = self._last_ns = 0
        self.session = _segment_index(existing[-1]) + 1 if existing else 0
        self._segment = self.session  # index of the segment being written (created on first write)
        self.path = _segment_path(self.base_path, self._segment)
        self.flush_interval = float(flush_interval)
        self.flush_every = int(flush_every)
        self.chunk_size = int(chunk_size)
        self.max_segment_transitions = int(max_segment_transitions)
        self.retry_interval = float(retry_interval)

        sizes = [self.obs_dim, self.act_dim, 1, self.obs_dim, 1, 1, 1, 1]
        self._width = sum(sizes)
        self._cdr_prefix = _cdr_prefix([(f, n, n) for f, n in zip(FIELDS, sizes)], self._width)
        self._schema_text = float64_multiarray_schema()

        self._queue: queue.Queue[Any] = queue.Queue(maxsize=int(queue_size))
        self._drop_lock = threading.Lock()
        self._next_seq = 0  # producer side: sequence number of the next accepted transition
        self.dropped = 0  # appends refused: the queue was full or the writer was failing
        self.lost = 0  # transitions the writer took but could not put on disk (write failures)
        self.written = 0  # transitions the writer thread has encoded into a file
        self.recoveries = 0  # times the writer wrote again after a failure (each in a new segment)
        self._durable_id = NOT_LOGGED  # newest log id written to the OS (survives a kill of this process)
        self._unflushed: list[int] = []  # sequence numbers in the open chunk
        self._unflushed_bytes = 0  # about the open chunk's size
        self._in_segment = 0
        self._error: BaseException | None = None  # set while the writer cannot write
        self._last_error: BaseException | None = None
        self._retry_at = 0.0
        self._closed = False
        self._file: Any = None
        self._writer: McapWriter | None = None
        self._channel = 0
        self._thread = threading.Thread(target=self._run, name="transition-log-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # finish the file on a normal interpreter exit without close()

    # ------------------------------------------------------------------ producer side

    def _vector(self, name: str, value: Any, n: int) -> np.ndarray:
        a = np.asarray(value, dtype=np.float64).reshape(-1)
        if a.size != n:
            raise ValueError(f"{name} has {a.size} values, expected {n}")
        return a

    def append(
        self,
        obs: Any,
        action: Any,
        reward: float,
        next_obs: Any,
        terminated: bool,
        truncated: bool,
        episode: int,
        step: int,
        stamp_ns: int,
    ) -> int:
        """Queue one transition (never blocks). Returns its log id (>= 0), or NOT_LOGGED (-1) if it
        was dropped (queue full, or the writer cannot write: counted in ``dropped``).

        obs, next_obs: [obs_dim]; action: [act_dim]; reward: scalar; stamp_ns: ROS time (ns),
        used as the MCAP log time. Raises ValueError for wrong sizes, RuntimeError after close().
        """
        if self._closed:
            raise RuntimeError("TransitionLog.append() after close()")
        stamp_ns = int(stamp_ns)
        if not 0 <= stamp_ns < 2**64:
            raise ValueError(f"stamp_ns = {stamp_ns} is not a ROS time in nanoseconds (0 <= t < 2**64)")
        vec = np.concatenate([
            self._vector("obs", obs, self.obs_dim),
            self._vector("action", action, self.act_dim),
            self._vector("reward", reward, 1),
            self._vector("next_obs", next_obs, self.obs_dim),
            (1.0 if terminated else 0.0, 1.0 if truncated else 0.0, float(episode), float(step)),
        ])
        if self._error is not None:
            self._count_drop()
            return NOT_LOGGED
        seq = self._next_seq
        try:
            self._queue.put_nowait((vec, stamp_ns, seq))
        except queue.Full:
            self._count_drop()
            return NOT_LOGGED
        self._next_seq = seq + 1
        return log_id(self.session, seq)

    def _count_drop(self) -> None:
        with self._drop_lock:
            self.dropped += 1
            first = self.dropped == 1
        if first:
            reason = f"writer failing: {self._error!r}" if self._error is not None else "queue full"
            log.warning("transition log %s is dropping transitions (%s)", self.path, reason)

    @property
    def durable_log_id(self) -> int:
        """The newest log id the writer has handed to the OS (NOT_LOGGED before the first): a kill of
        this process does not lose it. Ids of this session up to it are on disk unless counted lost."""
        return self._durable_id

    def flush(self, timeout: float = 30.0) -> int:
        """Write everything appended so far to the OS (fsynced) and return ``durable_log_id``.

        Never raises for a failing writer (``status()`` reports it); on timeout it returns the
        durable id reached so far."""
        if self._closed or not self._thread.is_alive():
            return self._durable_id
        done = threading.Event()
        try:
            self._queue.put((_FLUSH, done), timeout=timeout)
        except queue.Full:
            return self._durable_id
        done.wait(timeout)
        return self._durable_id

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, finish the MCAP (footer, summary) and stop the writer thread.

        Never raises: a failure is logged and stays in ``status()`` / ``error``."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.error("transition log %s: writer did not take the stop request within %s s", self.path, timeout)
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("transition log %s: writer did not finish within %s s", self.path, timeout)
        elif self._last_error is not None:
            log.error("transition log %s: %d transitions lost, %d dropped; last writer error: %r",
                      self.path, self.lost, self.dropped, self._last_error)

    @property
    def error(self) -> BaseException | None:
        """The exception that keeps the writer from writing now (None while it writes)."""
        return self._error

    def status(self) -> LogStatus:
        err, last = self._error, self._last_error
        if err is not None:
            level, message = "ERROR", f"cannot write {self.path.name}: {err}; retrying every {self.retry_interval:g} s"
        elif self.lost or self.dropped:
            level, message = "WARN", f"{self.lost} transitions lost, {self.dropped} dropped" + (
                f" (last error: {last})" if last is not None else "")
        else:
            level, message = "OK", f"writing {self.path.name}"
        return LogStatus(level, message, self.written, self.lost, self.dropped, self.recoveries, str(self.path))

    def __enter__(self) -> TransitionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writer thread

    def _open(self) -> None:
        self.path = _segment_path(self.base_path, self._segment)
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by _finish_segment / _fail
        # Chunks are closed only by _flush_file (at chunk_size bytes, flush_every transitions or
        # flush_interval), so the writer knows exactly which transitions reached the OS.
        self._writer = McapWriter(self._file, chunk_size=1 << 62, compression=CompressionType.ZSTD)
        self._writer.start(profile="ros2", library=f"mbpo_ros transition_log ({MCAP_LIBRARY})")
        schema_id = self._writer.register_schema(MSG_TYPE, SchemaEncoding.ROS2, self._schema_text.encode())
        # the channel carries the session (log ids) and, as rosbag2's MCAP storage writes it, the offered QoS
        self._channel = self._writer.register_channel(
            topic=TOPIC, message_encoding=MessageEncoding.CDR, schema_id=schema_id,
            metadata={SESSION_KEY: str(self.session), "offered_qos_profiles": RELIABLE_VOLATILE_QOS})
        self._writer.add_metadata("mbpo_ros.transitions", {
            "obs_dim": str(self.obs_dim),
            "act_dim": str(self.act_dim),
            "fields": ",".join(FIELDS),
            "segment": str(self._segment),
            SESSION_KEY: str(self.session),
        })
        self._in_segment = 0
        self._write_bag_metadata()

    def _write(self, vec: np.ndarray, stamp_ns: int, seq: int) -> None:
        if self._writer is None:
            self._open()
        self._unflushed.append(seq)  # lost with the chunk if this write or the chunk's flush fails
        self._unflushed_bytes += 8 * vec.size + 200
        self._writer.add_message(self._channel, log_time=stamp_ns, publish_time=stamp_ns, sequence=seq,
                                 data=self._cdr_prefix + vec.astype("<f8").tobytes())
        if self._in_segment == 0:
            self._first_ns = stamp_ns
        self._last_ns = stamp_ns
        self.written += 1
        self._in_segment += 1

    def _flush_file(self, fsync: bool) -> None:
        if self._writer is None:
            return
        self._writer.flush()  # closes the open chunk (mcap's public API)
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())
            self._write_bag_metadata()
        if self._unflushed:
            self._durable_id = log_id(self.session, self._unflushed[-1])
            self._unflushed = []
        self._unflushed_bytes = 0

    def _finish_segment(self) -> None:
        """Footer, summary, fsync and close of the current segment; the next write opens a new one."""
        if self._writer is None:
            return
        self._writer.finish()
        self._file.flush()
        os.fsync(self._file.fileno())
        if self._unflushed:
            self._durable_id = log_id(self.session, self._unflushed[-1])
            self._unflushed = []
        self._file.close()
        self._file = self._writer = None
        self._infos[self.path.name] = SegmentInfo(self.path.name, self._in_segment, self._first_ns, self._last_ns)
        self._write_bag_metadata()

    def _write_bag_metadata(self) -> None:
        """``metadata.yaml`` of the bag directory (rosbag2's format, io/rosbag2.py): every segment in it,
        the open one with what was written so far, so ``ros2 bag info/play <bag>`` covers the whole log."""
        segs = []
        for p in segment_paths(self.base_path):
            if p.parent != self.bag_dir:
                continue  # a loose segment of an older mbpo_ros, beside the bag: read_transitions reads it
            if self._writer is not None and p == self.path:
                segs.append(SegmentInfo(p.name, self._in_segment, self._first_ns, self._last_ns))
                continue
            if p.name not in self._infos:  # an earlier session's or a failed segment: summarised once
                self._infos[p.name] = segment_info(p)
            segs.append(self._infos[p.name])
        write_metadata(self.bag_dir, segs, [TopicInfo(TOPIC, MSG_TYPE)], custom_data={
            "mbpo_ros.obs_dim": self.obs_dim, "mbpo_ros.act_dim": self.act_dim,
            "mbpo_ros.fields": ",".join(FIELDS)})

    def _fail(self, e: BaseException) -> None:
        """A write failed (disk full, I/O error): count what is lost, drop the segment, retry later."""
        lost = len(self._unflushed)
        self.lost += lost
        self.written = max(0, self.written - lost) if lost else self.written
        self._unflushed = []
        self._unflushed_bytes = 0
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # its buffer cannot be written either: those records are counted lost already
        self._file = self._writer = None
        self._segment += 1  # the failed segment keeps what reached the disk; never append to it again
        self._error = self._last_error = e
        self._retry_at = time.monotonic() + self.retry_interval
        log.error("transition log writer for %s failed (%r): %d transitions lost; retrying in a new segment "
                  "every %g s", self.path, e, lost, self.retry_interval)

    def _try_recover(self) -> None:
        """Open the next segment and write its header; stay failing if the disk still refuses."""
        if time.monotonic() < self._retry_at:
            return
        try:
            self._open()
            self._flush_file(fsync=True)
        except OSError as e:
            self._retry_at = time.monotonic() + self.retry_interval
            if self._file is not None:
                try:
                    self._file.close()
                except OSError:
                    pass  # nothing of value in it
            self._file = self._writer = None
            try:
                self.path.unlink()
            except OSError:
                pass  # the empty segment stays; a reader skips a file without messages
            self._error = e
            return
        self._error = None
        self.recoveries += 1
        log.warning("transition log writes again, now to %s (%d transitions lost so far)", self.path, self.lost)

    def _run(self) -> None:
        last_flush = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=min(self.flush_interval, self.retry_interval, 0.5))
            except queue.Empty:
                item = None
            if self._error is not None:
                self._try_recover()
            stop = item is _STOP
            is_flush = isinstance(item, tuple) and item[0] is _FLUSH
            try:
                if self._error is None:
                    if item is not None and not stop and not is_flush:
                        self._write(*item)
                        if self.max_segment_transitions and self._in_segment >= self.max_segment_transitions:
                            self._finish_segment()
                            self._segment += 1
                            last_flush = time.monotonic()
                    due = (len(self._unflushed) >= self.flush_every or self._unflushed_bytes >= self.chunk_size
                           or (self._unflushed and time.monotonic() - last_flush >= self.flush_interval))
                    if is_flush or stop or due:
                        self._flush_file(fsync=is_flush)
                        last_flush = time.monotonic()
                    if stop:
                        self._finish_segment()
                elif item is not None and not stop and not is_flush:
                    self.lost += 1  # taken off the queue while the disk refuses writes
            except Exception as e:  # noqa: BLE001 - OSError (disk full) or an encoder error: count, retry
                self._fail(e)
            if is_flush:
                item[1].set()
            if stop:
                break
        if self._file is not None:  # stopped while failing: close what is open, quietly
            try:
                self._file.close()
            except OSError:
                pass  # counted lost already


# ----------------------------------------------------------------------------- reading

_TRUNCATION_ERRORS = (McapError, EOFError, struct.error, ValueError)


def _iter_segment(path: Path, warn_torn: bool = True) -> Iterator[tuple[Any, int, int]]:
    """(decoded Float64MultiArray, log_time_ns, log id) of one segment, tolerating a torn tail.

    The log id's session comes from the channel's metadata; segments written before sessions
    were recorded had one segment per session, so their session is their index."""
    fallback_session = _segment_index(path)
    with open(path, "rb") as f:
        reader = NonSeekingReader(f, decoder_factories=[DecoderFactory()])
        it = reader.iter_decoded_messages(topics=[TOPIC], log_time_order=False)
        while True:
            try:
                _schema, channel, message, msg = next(it)
            except StopIteration:
                return
            except _TRUNCATION_ERRORS as e:
                if warn_torn:
                    log.warning("%s ends early (%s: %s); its writer did not close it. Reading what it holds.",
                                path, type(e).__name__, e)
                return
            session = int(channel.metadata.get(SESSION_KEY, fallback_session))
            yield msg, message.log_time, log_id(session, int(message.sequence))


def read_transitions(path: str | os.PathLike, warn_torn: bool = True) -> dict[str, np.ndarray]:
    """Read every transition of the log at ``path`` (dir, base .mcap, or one segment file).

    Returns stacked arrays (N transitions, in write order, segments in index order):
    obs [N, obs_dim], action [N, act_dim], reward [N], next_obs [N, obs_dim],
    terminated [N] bool, truncated [N] bool, episode [N] int64, step [N] int64,
    stamp_ns [N] int64, log_id [N] int64 (what ``append`` returned), segment [N] int64
    (the file's index). With no transitions, every array has length 0. warn_torn: log a warning for
    a segment without footer (False for a log whose writer is still running).
    """
    p = Path(path)
    base = _base_path(p)
    if p.suffix == ".mcap" and p.is_file() and _segment_index(p) != 0:
        paths = [p]  # one named segment
    else:
        paths = segment_paths(base)
    rows: list[np.ndarray] = []
    stamps: list[int] = []
    ids: list[int] = []
    segs: list[int] = []
    sizes: list[int] | None = None
    for seg in paths:
        seg_index = _segment_index(seg)
        for msg, log_time, lid in _iter_segment(seg, warn_torn):
            labels = [d.label for d in msg.layout.dim]
            seg_sizes = [int(d.size) for d in msg.layout.dim]
            if labels != list(FIELDS):
                raise ValueError(f"{seg}: message layout labels {labels} are not {list(FIELDS)}")
            if sizes is None:
                sizes = seg_sizes
            elif seg_sizes != sizes:
                raise ValueError(f"{seg}: segment sizes {seg_sizes} differ from earlier transitions' {sizes}")
            data = np.asarray(msg.data, dtype=np.float64)
            if data.size != sum(sizes) + int(msg.layout.data_offset):
                raise ValueError(f"{seg}: message has {data.size} values, its layout says {sum(sizes)}")
            rows.append(data[int(msg.layout.data_offset):])
            stamps.append(int(log_time))
            ids.append(lid)
            segs.append(seg_index)
    if sizes is None:
        empty = np.zeros((0, 0))
        return {"obs": empty, "action": empty, "reward": np.zeros(0), "next_obs": empty,
                "terminated": np.zeros(0, bool), "truncated": np.zeros(0, bool),
                "episode": np.zeros(0, np.int64), "step": np.zeros(0, np.int64),
                "stamp_ns": np.zeros(0, np.int64), "log_id": np.zeros(0, np.int64),
                "segment": np.zeros(0, np.int64)}
    table = np.stack(rows)
    bounds = np.cumsum([0, *sizes])
    cols = {f: table[:, bounds[i]:bounds[i + 1]] for i, f in enumerate(FIELDS)}
    return {
        "obs": cols["obs"],
        "action": cols["action"],
        "reward": cols["reward"][:, 0],
        "next_obs": cols["next_obs"],
        "terminated": cols["terminated"][:, 0] != 0.0,
        "truncated": cols["truncated"][:, 0] != 0.0,
        "episode": cols["episode"][:, 0].astype(np.int64),
        "step": cols["step"][:, 0].astype(np.int64),
        "stamp_ns": np.asarray(stamps, dtype=np.int64),
        "log_id": np.asarray(ids, dtype=np.int64),
        "segment": np.asarray(segs, dtype=np.int64),
    }
