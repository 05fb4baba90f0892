"""Real transitions as a ROS 2 bag: ``transitions.mcap`` in CDR (ROS 2 message) encoding.

Every real transition the agent sees becomes one ``std_msgs/msg/Float64MultiArray``
message on topic ``/mbpo/transitions``, logged at the transition's ROS time stamp (ns).
The standard type means ``ros2 bag play transitions.mcap`` / ``ros2 bag info``, Foxglove
and ``mcap_ros2.reader.read_ros2_messages`` read it anywhere, with no custom package.
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
appended to after its footer, so each ``TransitionLog`` session writes a new file next
to the earlier ones::

    transitions.mcap, transitions.1.mcap, transitions.2.mcap, ...

Each is a complete, standalone MCAP once its writer is closed. ``read_transitions``
reads them in index order. A segment whose writer was killed has no footer; it is read
sequentially up to its last intact record, so the data it had flushed is kept and the
earlier segments are untouched. The writer flushes (finishes its current chunk) every
``flush_interval`` seconds and on ``flush()``, which bounds what a crash can lose.
``resume=False`` deletes the existing segments and starts afresh.

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
from pathlib import Path
from typing import Any

import numpy as np
from mcap.exceptions import McapError
from mcap.reader import NonSeekingReader
from mcap_ros2.decoder import DecoderFactory
from mcap_ros2.writer import Writer as Ros2Writer

__all__ = [
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
    """``path`` as the first segment's file: a ``.mcap`` file, or ``<dir>/transitions.mcap``."""
    p = Path(path)
    if p.suffix == ".mcap":
        return p
    return p / DEFAULT_NAME


def segment_paths(path: str | os.PathLike) -> list[Path]:
    """Existing segment files of the log at ``path`` (dir or base .mcap), in reading order."""
    base = _base_path(path)
    if not base.parent.is_dir():
        return []
    stem = base.name[: -len(".mcap")]
    found: list[tuple[int, Path]] = []
    for child in base.parent.iterdir():
        m = _SEGMENT_RE.match(child.name)
        if m and m.group("stem") == stem and child.is_file():
            found.append((int(m.group("index") or 0), child))
    return [p for _, p in sorted(found)]


def _segment_path(base: Path, index: int) -> Path:
    return base if index == 0 else base.with_name(f"{base.name[: -len('.mcap')]}.{index}.mcap")


def _segment_index(path: Path) -> int:
    m = _SEGMENT_RE.match(path.name)
    return int(m.group("index") or 0) if m else 0


# ----------------------------------------------------------------------------- writing

_FLUSH = object()
_STOP = object()


class TransitionLog:
    """Non-blocking logger of real transitions into MCAP segment files (see module doc).

    path:           directory (the log is ``<dir>/transitions.mcap``...) or a ``.mcap`` base path.
    obs_dim:        observation length.
    act_dim:        action length.
    resume:         keep earlier segments and add a new one (default); False deletes them first.
    queue_size:     transitions buffered between ``append`` and the writer thread.
    flush_interval: seconds between automatic flushes of the writer (bounds crash loss).
    chunk_size:     MCAP chunk size in bytes (a chunk is also closed on every flush).
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
    ) -> None:
        if obs_dim <= 0 or act_dim <= 0:
            raise ValueError(f"obs_dim and act_dim must be positive, got obs_dim={obs_dim}, act_dim={act_dim}")
        if queue_size <= 0:
            raise ValueError(f"queue_size must be positive, got {queue_size}")
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self.base_path = _base_path(path)
        self.base_path.parent.mkdir(parents=True, exist_ok=True)
        existing = segment_paths(self.base_path)
        if not resume:
            for p in existing:
                p.unlink()
            existing = []
        index = _segment_index(existing[-1]) + 1 if existing else 0
        self.path = _segment_path(self.base_path, index)  # this session's segment (created on first write)
        self.flush_interval = float(flush_interval)
        self.chunk_size = int(chunk_size)

        sizes = [self.obs_dim, self.act_dim, 1, self.obs_dim, 1, 1, 1, 1]
        self._width = sum(sizes)
        self._dims = [{"label": f, "size": n, "stride": n} for f, n in zip(FIELDS, sizes)]
        self._schema_text = float64_multiarray_schema()

        self._queue: queue.Queue[Any] = queue.Queue(maxsize=int(queue_size))
        self._drop_lock = threading.Lock()
        self.dropped = 0  # transitions lost because the queue was full or the writer failed
        self.written = 0  # transitions the writer thread has encoded into the file
        self._error: BaseException | None = None
        self._closed = False
        self._file: Any = None
        self._writer: Ros2Writer | None = None
        self._schema: Any = None
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
    ) -> bool:
        """Queue one transition (never blocks). Returns False if it was dropped.

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
            return False
        try:
            self._queue.put_nowait((vec, stamp_ns))
        except queue.Full:
            self._count_drop()
            return False
        return True

    def _count_drop(self) -> None:
        with self._drop_lock:
            self.dropped += 1
            first = self.dropped == 1
        if first:
            reason = f"writer failed: {self._error!r}" if self._error is not None else "queue full"
            log.warning("transition log %s is dropping transitions (%s)", self.path, reason)

    def flush(self, timeout: float = 30.0) -> None:
        """Block until everything appended so far is written to the file (and fsynced)."""
        if self._closed:
            return
        done = threading.Event()
        self._queue.put((_FLUSH, done), timeout=timeout)
        if not done.wait(timeout):
            raise TimeoutError(f"transition log writer did not flush within {timeout} s")
        self._raise_if_failed()

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, finish the MCAP (footer, summary) and stop the writer thread."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._queue.put(_STOP, timeout=timeout)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"transition log writer did not finish within {timeout} s")
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"transition log writer for {self.path} failed: {self._error!r}") from self._error

    @property
    def error(self) -> BaseException | None:
        """The exception that stopped the writer thread, if any."""
        return self._error

    def __enter__(self) -> TransitionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writer thread

    def _open(self) -> None:
        self._file = open(self.path, "wb")
        self._writer = Ros2Writer(self._file, chunk_size=self.chunk_size)
        self._schema = self._writer.register_msgdef(MSG_TYPE, self._schema_text)
        self._writer.add_metadata("mbpo_ros.transitions", {
            "obs_dim": str(self.obs_dim),
            "act_dim": str(self.act_dim),
            "fields": ",".join(FIELDS),
            "segment": str(_segment_index(self.path)),
        })

    def _write(self, vec: np.ndarray, stamp_ns: int) -> None:
        if self._writer is None:
            self._open()
        msg = {"layout": {"dim": self._dims, "data_offset": 0}, "data": vec.tolist()}
        self._writer.write_message(TOPIC, self._schema, msg, log_time=stamp_ns, publish_time=stamp_ns,
                                   sequence=self.written)
        self.written += 1

    def _flush_file(self, fsync: bool) -> None:
        if self._writer is None:
            return
        # mcap_ros2's Writer wraps an mcap.writer.Writer, whose public flush() closes the open chunk.
        self._writer._writer.flush()
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())

    def _run(self) -> None:
        last_flush = time.monotonic()
        dirty = False
        try:
            while True:
                try:
                    item = self._queue.get(timeout=max(self.flush_interval, 0.01))
                except queue.Empty:
                    item = None
                if item is _STOP:
                    break
                if isinstance(item, tuple) and item[0] is _FLUSH:
                    self._flush_file(fsync=True)
                    dirty = False
                    last_flush = time.monotonic()
                    item[1].set()
                    continue
                if item is not None:
                    self._write(*item)
                    dirty = True
                if dirty and time.monotonic() - last_flush >= self.flush_interval:
                    self._flush_file(fsync=False)
                    dirty = False
                    last_flush = time.monotonic()
        except BaseException as e:  # kept and re-raised to the owner by flush()/close()
            self._error = e
            log.error("transition log writer for %s failed: %r", self.path, e)
            self._drain_after_failure()
        finally:
            if self._writer is not None and self._error is None:
                try:
                    self._writer.finish()
                    self._file.flush()
                    os.fsync(self._file.fileno())
                except Exception as e:  # reported through close()
                    self._error = e
            if self._file is not None:
                self._file.close()

    def _drain_after_failure(self) -> None:
        """After a writer failure, release flush() waiters and count what can no longer be written."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, tuple) and item[0] is _FLUSH:
                item[1].set()
            elif item is not _STOP:
                self._count_drop()


# ----------------------------------------------------------------------------- reading

_TRUNCATION_ERRORS = (McapError, EOFError, struct.error, ValueError)


def _iter_segment(path: Path) -> Iterator[tuple[Any, int]]:
    """(decoded Float64MultiArray, log_time_ns) of one segment, tolerating a torn tail."""
    with open(path, "rb") as f:
        reader = NonSeekingReader(f, decoder_factories=[DecoderFactory()])
        it = reader.iter_decoded_messages(topics=[TOPIC], log_time_order=False)
        while True:
            try:
                _schema, _channel, message, msg = next(it)
            except StopIteration:
                return
            except _TRUNCATION_ERRORS as e:
                log.warning("%s ends early (%s: %s); its writer did not close it. Reading what it holds.",
                            path, type(e).__name__, e)
                return
            yield msg, message.log_time


def read_transitions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every transition of the log at ``path`` (dir, base .mcap, or one segment file).

    Returns stacked arrays (N transitions, in write order, segments in index order):
    obs [N, obs_dim], action [N, act_dim], reward [N], next_obs [N, obs_dim],
    terminated [N] bool, truncated [N] bool, episode [N] int64, step [N] int64,
    stamp_ns [N] int64. With no transitions, every array has length 0.
    """
    p = Path(path)
    base = _base_path(p)
    if p.suffix == ".mcap" and p.is_file() and _segment_index(p) != 0:
        paths = [p]  # one named segment
    else:
        paths = segment_paths(base)
    rows: list[np.ndarray] = []
    stamps: list[int] = []
    sizes: list[int] | None = None
    for seg in paths:
        for msg, log_time in _iter_segment(seg):
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
    if sizes is None:
        empty = np.zeros((0, 0))
        return {"obs": empty, "action": empty, "reward": np.zeros(0), "next_obs": empty,
                "terminated": np.zeros(0, bool), "truncated": np.zeros(0, bool),
                "episode": np.zeros(0, np.int64), "step": np.zeros(0, np.int64),
                "stamp_ns": np.zeros(0, np.int64)}
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
    }
