"""io/rosbag2.py: metadata.yaml in rosbag2's format (checked against the fields rosbag2's metadata_io
reads for version 8), segment summaries of closed and killed MCAP files."""

from __future__ import annotations

import yaml
from mcap.writer import Writer

from mbpo_ros.io.rosbag2 import (
    BAG_VERSION,
    RELIABLE_VOLATILE_QOS,
    SegmentInfo,
    TopicInfo,
    qos_profiles_text,
    read_metadata,
    segment_info,
    write_metadata,
)

# What rosbag2_storage's YAML decoder reads for a version-8 bag (rosbag2_storage/yaml.hpp, jazzy):
BAG_KEYS = {"version", "storage_identifier", "duration", "starting_time", "message_count",
            "topics_with_message_count", "compression_format", "compression_mode", "relative_file_paths",
            "files", "custom_data", "ros_distro"}
TOPIC_KEYS = {"name", "type", "serialization_format", "offered_qos_profiles", "type_description_hash"}
QOS_KEYS = {"history", "depth", "reliability", "durability", "deadline", "lifespan", "liveliness",
            "liveliness_lease_duration", "avoid_ros_namespace_conventions"}


def _mcap(path, stamps, finish=True):
    f = open(path, "wb")  # noqa: SIM115 - left open on purpose for the killed-writer case
    w = Writer(f, chunk_size=64)
    w.start(profile="ros2", library="test")
    sid = w.register_schema("std_msgs/msg/Empty", "ros2msg", b"")
    cid = w.register_channel("/t", "cdr", sid, metadata={"offered_qos_profiles": RELIABLE_VOLATILE_QOS})
    for i, t in enumerate(stamps):
        w.add_message(cid, log_time=t, publish_time=t, sequence=i, data=b"\x00\x01\x00\x00")
    if finish:
        w.finish()
    else:
        w.flush()
    f.close()


def test_metadata_has_rosbag2s_fields_and_round_trips(tmp_path):
    _mcap(tmp_path / "bag_0.mcap", [100, 200, 300])
    _mcap(tmp_path / "bag_1.mcap", [1000, 1500])
    segs = [segment_info(tmp_path / "bag_0.mcap"), segment_info(tmp_path / "bag_1.mcap")]
    assert segs == [SegmentInfo("bag_0.mcap", 3, 100, 300), SegmentInfo("bag_1.mcap", 2, 1000, 1500)]
    write_metadata(tmp_path, segs, [TopicInfo("/t", "std_msgs/msg/Empty")], custom_data={"obs_dim": 21})
    doc = yaml.safe_load((tmp_path / "metadata.yaml").read_text())
    info = doc["rosbag2_bagfile_information"]
    assert set(info) == BAG_KEYS and info["version"] == BAG_VERSION == 8
    assert info["storage_identifier"] == "mcap" and info["message_count"] == 5
    assert info["starting_time"] == {"nanoseconds_since_epoch": 100} and info["duration"] == {"nanoseconds": 1400}
    assert info["relative_file_paths"] == ["bag_0.mcap", "bag_1.mcap"]
    assert [f["message_count"] for f in info["files"]] == [3, 2]
    (topic,) = info["topics_with_message_count"]
    assert topic["message_count"] == 5 and set(topic["topic_metadata"]) == TOPIC_KEYS
    qos = yaml.safe_load(topic["topic_metadata"]["offered_qos_profiles"])  # a YAML string, as rosbag2 < v9
    assert isinstance(qos, list) and set(qos[0]) == QOS_KEYS
    assert (qos[0]["history"], qos[0]["reliability"], qos[0]["durability"]) == (1, 1, 2)  # keep-last, reliable, volatile
    assert info["custom_data"] == {"obs_dim": "21"}
    assert read_metadata(tmp_path)["relative_file_paths"] == ["bag_0.mcap", "bag_1.mcap"]
    assert not list(tmp_path.glob(".*.tmp")), "written atomically, nothing left behind"


def test_segment_of_a_killed_writer_is_counted_up_to_its_tail(tmp_path):
    _mcap(tmp_path / "torn.mcap", [5, 6, 7, 8], finish=False)
    assert segment_info(tmp_path / "torn.mcap") == SegmentInfo("torn.mcap", 4, 5, 8)


def test_transient_local_qos_text():
    qos = yaml.safe_load(qos_profiles_text(depth=1, transient_local=True))[0]
    assert (qos["depth"], qos["durability"]) == (1, 1)
