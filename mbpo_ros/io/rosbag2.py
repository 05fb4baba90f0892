"""rosbag2 bag directories without ROS: ``metadata.yaml`` next to MCAP segment files.

``ros2 bag info DIR`` and ``ros2 bag play DIR`` take a bag *directory*: a ``metadata.yaml``
(key ``rosbag2_bagfile_information``) that lists the storage files in order, the topics with
their type, serialization format and offered QoS, the message counts and the time span. This
module writes and reads that file in the format of rosbag2's ``metadata_io`` (version 8, which
Jazzy reads and writes; QoS as rosbag2 >= 4 stores it: a YAML string of the profile list), using
only PyYAML and the public ``mcap.reader`` API.

- :func:`segment_info` summarises one MCAP file (from its summary section, or by reading it
  through when its writer was killed before the footer);
- :func:`write_metadata` writes ``metadata.yaml`` atomically (temp file, rename);
- :func:`read_metadata` reads it back (the listed files, in order, and the custom data);
- :data:`RELIABLE_VOLATILE_QOS` is the offered QoS recorded for a topic (keep-last, reliable,
  volatile, default deadline/lifespan/lease), the profile ``ros2 bag play`` then publishes with.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["METADATA_FILE", "BAG_VERSION", "SegmentInfo", "TopicInfo", "qos_profiles_text",
           "RELIABLE_VOLATILE_QOS", "segment_info", "write_metadata", "read_metadata"]

METADATA_FILE = "metadata.yaml"
#: rosbag2_storage BagMetadata version written (Jazzy reads versions up to 9).
BAG_VERSION = 8

# rmw enums as rosbag2 < v9 stores them (integers): history KEEP_LAST = 1, reliability RELIABLE = 1,
# durability TRANSIENT_LOCAL = 1 / VOLATILE = 2, liveliness AUTOMATIC = 1.
_HISTORY_KEEP_LAST = 1
_RELIABLE = 1
_TRANSIENT_LOCAL, _VOLATILE = 1, 2
_LIVELINESS_AUTOMATIC = 1


def qos_profiles_text(depth: int = 10, reliable: bool = True, transient_local: bool = False) -> str:
    """``offered_qos_profiles`` as rosbag2 writes it for versions 4 to 8: a YAML list, as a string."""
    zero = {"sec": 0, "nsec": 0}  # RMW_DURATION_UNSPECIFIED: the rmw default
    profile = {
        "history": _HISTORY_KEEP_LAST,
        "depth": int(depth),
        "reliability": _RELIABLE if reliable else 2,
        "durability": _TRANSIENT_LOCAL if transient_local else _VOLATILE,
        "deadline": dict(zero),
        "lifespan": dict(zero),
        "liveliness": _LIVELINESS_AUTOMATIC,
        "liveliness_lease_duration": dict(zero),
        "avoid_ros_namespace_conventions": False,
    }
    return yaml.safe_dump([profile], sort_keys=False, default_flow_style=False).rstrip("\n")


RELIABLE_VOLATILE_QOS = qos_profiles_text()


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag: name, type (``pkg/msg/Type``), serialization format, offered QoS text."""

    name: str
    type: str
    serialization_format: str = "cdr"
    offered_qos_profiles: str = RELIABLE_VOLATILE_QOS


@dataclass(frozen=True)
class SegmentInfo:
    """One storage file of a bag: path relative to the bag directory, messages, first/last log time."""

    path: str
    message_count: int
    start_ns: int
    end_ns: int


def segment_info(path: str | os.PathLike, relative_to: str | os.PathLike | None = None) -> SegmentInfo:
    """Counts and time span of one MCAP file; a file without a summary (killed writer) is read through
    up to its last intact record."""
    from mcap.exceptions import McapError
    from mcap.reader import NonSeekingReader, make_reader

    p = Path(path)
    rel = str(p.relative_to(relative_to)) if relative_to is not None else p.name
    with open(p, "rb") as f:
        try:
            summary = make_reader(f).get_summary()
        except (McapError, EOFError, ValueError):
            summary = None
        stats = summary.statistics if summary is not None else None
        if stats is not None:
            n = int(stats.message_count)
            return SegmentInfo(rel, n, int(stats.message_start_time) if n else 0,
                               int(stats.message_end_time) if n else 0)
        f.seek(0)
        n, lo, hi = 0, 0, 0
        try:
            for _schema, _channel, message in NonSeekingReader(f).iter_messages(log_time_order=False):
                lo = message.log_time if n == 0 else min(lo, message.log_time)
                hi = max(hi, message.log_time)
                n += 1
        except (McapError, EOFError, ValueError):
            pass  # the torn tail of a killed writer: what came before it counts
        return SegmentInfo(rel, n, lo, hi)


def write_metadata(bag_dir: str | os.PathLike, segments: Sequence[SegmentInfo], topics: Sequence[TopicInfo],
                   topic_counts: Mapping[str, int] | None = None,
                   custom_data: Mapping[str, str] | None = None) -> Path:
    """Write ``bag_dir/metadata.yaml`` (atomically) for ``segments`` in playback order.

    topic_counts: messages per topic name; default: every message belongs to the first topic.
    custom_data: string pairs stored under ``custom_data`` (rosbag2 keeps and shows them).
    """
    bag = Path(bag_dir)
    total = sum(s.message_count for s in segments)
    counted = [s for s in segments if s.message_count]
    start = min((s.start_ns for s in counted), default=0)
    end = max((s.end_ns for s in counted), default=0)
    counts = dict(topic_counts) if topic_counts is not None else {topics[0].name: total} if topics else {}
    info: dict[str, Any] = {
        "version": BAG_VERSION,
        "storage_identifier": "mcap",
        "duration": {"nanoseconds": int(end - start)},
        "starting_time": {"nanoseconds_since_epoch": int(start)},
        "message_count": int(total),
        "topics_with_message_count": [
            {"topic_metadata": {"name": t.name, "type": t.type, "serialization_format": t.serialization_format,
                                "offered_qos_profiles": t.offered_qos_profiles, "type_description_hash": ""},
             "message_count": int(counts.get(t.name, 0))}
            for t in topics
        ],
        "compression_format": "",
        "compression_mode": "",
        "relative_file_paths": [s.path for s in segments],
        "files": [
            {"path": s.path, "starting_time": {"nanoseconds_since_epoch": int(s.start_ns)},
             "duration": {"nanoseconds": int(s.end_ns - s.start_ns)}, "message_count": int(s.message_count)}
            for s in segments
        ],
        "custom_data": {str(k): str(v) for k, v in (custom_data or {}).items()},
        "ros_distro": os.environ.get("ROS_DISTRO", ""),
    }
    text = yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False, default_flow_style=False)
    out = bag / METADATA_FILE
    tmp = bag / f".{METADATA_FILE}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out


def read_metadata(bag_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``rosbag2_bagfile_information`` mapping of ``bag_dir/metadata.yaml``; ValueError naming the
    file when it is missing that key or not YAML."""
    path = Path(bag_dir) / METADATA_FILE
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from exc
    info = doc.get("rosbag2_bagfile_information") if isinstance(doc, dict) else None
    if not isinstance(info, dict) or not isinstance(info.get("relative_file_paths"), list):
        raise ValueError(f"{path} is not rosbag2 metadata (no rosbag2_bagfile_information.relative_file_paths)")
    return info
