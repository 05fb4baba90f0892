"""TransitionLog: ROS 2 CDR MCAP segments, exact read-back, restarts, killed writers, drops."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
from ament_index_python.packages import get_package_share_directory
from conftest import fill_disk
from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from mbpo_ros.io import transition_log as tl
from mbpo_ros.io.transition_log import TransitionLog, read_transitions, segment_paths

OBS, ACT = 7, 3


def _transitions(n, seed=0, episode_len=25, t0=1_700_000_000_000_000_000):
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n + 1, OBS))
    return {
        "obs": obs[:-1],
        "action": rng.uniform(-1, 1, (n, ACT)),
        "reward": rng.standard_normal(n) * 1e3,
        "next_obs": obs[1:],
        "terminated": rng.random(n) < 0.1,
        "truncated": (np.arange(n) % episode_len) == episode_len - 1,
        "episode": np.arange(n) // episode_len + seed * 1000,
        "step": np.arange(n) % episode_len,
        "stamp_ns": t0 + np.arange(n, dtype=np.int64) * 10_000_000 + 123,
    }


def _write(log, tr, lo=0, hi=None):
    hi = len(tr["reward"]) if hi is None else hi
    for i in range(lo, hi):
        lid = log.append(tr["obs"][i], tr["action"][i], tr["reward"][i], tr["next_obs"][i],
                         bool(tr["terminated"][i]), bool(tr["truncated"][i]), int(tr["episode"][i]),
                         int(tr["step"][i]), int(tr["stamp_ns"][i]))
        assert lid >= 0


def _concat(*parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _slice(tr, lo, hi):
    return {k: v[lo:hi] for k, v in tr.items()}


def _assert_equal(got, want):
    assert set(got) == set(want) | {"log_id", "segment"}
    assert len(np.unique(got["log_id"])) == len(got["log_id"]), "log ids are unique"
    for k in want:
        assert got[k].shape == want[k].shape, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)  # exact: float64 all the way
    assert got["terminated"].dtype == bool and got["episode"].dtype == np.int64


def test_write_and_read_back_exactly(tmp_path):
    tr = _transitions(300)
    with TransitionLog(tmp_path, OBS, ACT) as log:
        _write(log, tr)
    assert log.dropped == 0 and log.written == 300
    path = tmp_path / "transitions" / "transitions.mcap"  # the log is a rosbag2 directory
    assert segment_paths(tmp_path) == [path]
    _assert_equal(read_transitions(tmp_path), tr)
    _assert_equal(read_transitions(path), tr)

    # Independently, with mcap-ros2-support's own high-level reader.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the module warns on import
        from mcap_ros2.reader import read_ros2_messages

        msgs = list(read_ros2_messages(str(path)))
    assert len(msgs) == 300
    m = msgs[5]
    assert m.channel.topic == "/mbpo/transitions" and m.channel.message_encoding == "cdr"
    assert m.schema.name == "std_msgs/msg/Float64MultiArray" and m.schema.encoding == "ros2msg"
    assert [(d.label, d.size, d.stride) for d in m.ros_msg.layout.dim] == [
        ("obs", OBS, OBS), ("action", ACT, ACT), ("reward", 1, 1), ("next_obs", OBS, OBS),
        ("terminated", 1, 1), ("truncated", 1, 1), ("episode", 1, 1), ("step", 1, 1)]
    assert m.ros_msg.layout.data_offset == 0
    assert m.log_time_ns == tr["stamp_ns"][5]
    expected = np.concatenate([tr["obs"][5], tr["action"][5], [tr["reward"][5]], tr["next_obs"][5],
                               [float(tr["terminated"][5]), float(tr["truncated"][5]),
                                tr["episode"][5], tr["step"][5]]])
    assert list(m.ros_msg.data) == expected.tolist()

    # The schema is the exact std_msgs text with its dependencies, in ros2msg concatenated form.
    # Found through the ament index over every AMENT_PREFIX_PATH entry: in a colcon workspace the first
    # entry is this package's own install prefix, which holds no std_msgs.
    share = os.path.join(get_package_share_directory("std_msgs"), "msg")
    texts = {n: open(os.path.join(share, n + ".msg")).read()
             for n in ("Float64MultiArray", "MultiArrayLayout", "MultiArrayDimension")}
    sep = "=" * 80
    assert m.schema.data.decode() == (
        texts["Float64MultiArray"] + f"{sep}\nMSG: std_msgs/msg/MultiArrayLayout\n" + texts["MultiArrayLayout"]
        + f"{sep}\nMSG: std_msgs/msg/MultiArrayDimension\n" + texts["MultiArrayDimension"])
    assert texts == tl._EMBEDDED_MSGS  # the fallback copy is exact

    # A closed segment is a complete MCAP: a seeking reader finds its summary.
    with open(path, "rb") as f:
        summary = make_reader(f, decoder_factories=[DecoderFactory()]).get_summary()
    assert summary.statistics.message_count == 300
    assert summary.statistics.message_start_time == tr["stamp_ns"][0]


def test_restart_appends_new_segment(tmp_path):
    a, b, c = _transitions(60, seed=1), _transitions(40, seed=2), _transitions(10, seed=3)
    with TransitionLog(tmp_path / "run" / "transitions.mcap", OBS, ACT) as log:
        _write(log, a)
    TransitionLog(tmp_path / "run", OBS, ACT).close()  # a session that logs nothing leaves no file
    with TransitionLog(tmp_path / "run", OBS, ACT, resume=True) as log:
        _write(log, b)
    with TransitionLog(tmp_path / "run", OBS, ACT) as log:
        _write(log, c)
    assert [p.name for p in segment_paths(tmp_path / "run")] == [
        "transitions.mcap", "transitions.1.mcap", "transitions.2.mcap"]
    _assert_equal(read_transitions(tmp_path / "run"), _concat(a, b, c))
    _assert_equal(read_transitions(tmp_path / "run" / "transitions" / "transitions.1.mcap"), b)  # one segment

    with TransitionLog(tmp_path / "run", OBS, ACT, resume=False) as log:
        _write(log, c)
    assert [p.name for p in segment_paths(tmp_path / "run")] == ["transitions.mcap"]
    _assert_equal(read_transitions(tmp_path / "run"), c)


_KILLED = textwrap.dedent(
    """
    import sys, time, numpy as np
    sys.path.insert(0, sys.argv[2])
    from test_io_transition_log import _transitions, _write
    from mbpo_ros.io.transition_log import TransitionLog
    tr = _transitions(200, seed=7)
    log = TransitionLog(sys.argv[1], 7, 3, flush_interval=1000.0)
    _write(log, tr, 0, 120)
    log.flush()
    print("flushed", flush=True)
    _write(log, tr, 120, 200)  # queued / in an open chunk: may be lost, must not break anything
    time.sleep(60)
    """
)


def test_killed_writer_keeps_earlier_data(tmp_path, kill_after_first_line):
    first, later = _transitions(80, seed=5), _transitions(30, seed=6)
    with TransitionLog(tmp_path, OBS, ACT) as log:
        _write(log, first)
    assert kill_after_first_line(_KILLED, tmp_path, os.path.dirname(__file__), delay=0.2) == "flushed"
    killed_segment = tmp_path / "transitions" / "transitions.1.mcap"
    assert killed_segment.stat().st_size > 0
    with open(killed_segment, "rb") as f, pytest.raises(McapError):  # no footer: not a complete MCAP
        make_reader(f).get_summary()

    crashed = _transitions(200, seed=7)
    got = read_transitions(tmp_path)
    n = len(got["reward"])
    assert 80 + 120 <= n <= 80 + 200
    _assert_equal(got, _concat(first, _slice(crashed, 0, n - 80)))

    # A torn tail (a write cut short) is tolerated the same way.
    raw = killed_segment.read_bytes()
    killed_segment.write_bytes(raw[: len(raw) - 37])
    assert len(read_transitions(tmp_path)["reward"]) == n  # the cut lands after the flushed chunk

    # The next session starts a new segment and nothing earlier is lost.
    killed_segment.write_bytes(raw)
    with TransitionLog(tmp_path, OBS, ACT) as log:
        _write(log, later)
    assert [p.name for p in segment_paths(tmp_path)] == [
        "transitions.mcap", "transitions.1.mcap", "transitions.2.mcap"]
    _assert_equal(read_transitions(tmp_path), _concat(first, _slice(crashed, 0, n - 80), later))


def test_periodic_flush_makes_data_readable_before_close(tmp_path):
    tr = _transitions(20)
    log = TransitionLog(tmp_path, OBS, ACT, flush_interval=0.05)
    try:
        _write(log, tr)
        deadline = time.monotonic() + 10.0
        n = 0
        while time.monotonic() < deadline:
            n = len(read_transitions(tmp_path)["reward"])
            if n == 20:
                break
            time.sleep(0.05)
        assert n == 20
    finally:
        log.close()
    _assert_equal(read_transitions(tmp_path), tr)


def test_full_queue_drops_and_counts(tmp_path):
    big = 4000  # encoding a message is ~1000x slower than queueing it
    log = TransitionLog(tmp_path, big, 2, queue_size=2)
    obs = np.zeros(big)
    ids = [log.append(obs + i, [0, 0], float(i), obs, False, False, 0, i, i) for i in range(150)]
    accepted = [lid >= 0 for lid in ids]
    log.close()
    assert log.dropped > 0
    assert log.dropped == accepted.count(False)
    assert log.written == accepted.count(True) == 150 - log.dropped
    got = read_transitions(tmp_path)
    np.testing.assert_array_equal(got["step"], [i for i, ok in enumerate(accepted) if ok])
    np.testing.assert_array_equal(got["log_id"], [lid for lid in ids if lid >= 0])
    np.testing.assert_array_equal(got["obs"][:, 0], got["reward"])


def test_bad_input_rejected(tmp_path):
    log = TransitionLog(tmp_path, OBS, ACT)
    with pytest.raises(ValueError, match="action has 2 values, expected 3"):
        log.append(np.zeros(OBS), np.zeros(2), 0.0, np.zeros(OBS), False, False, 0, 0, 0)
    with pytest.raises(ValueError, match="next_obs has 8 values, expected 7"):
        log.append(np.zeros(OBS), np.zeros(ACT), 0.0, np.zeros(8), False, False, 0, 0, 0)
    with pytest.raises(ValueError, match="reward has 2 values, expected 1"):
        log.append(np.zeros(OBS), np.zeros(ACT), [1.0, 2.0], np.zeros(OBS), False, False, 0, 0, 0)
    with pytest.raises(ValueError, match="stamp_ns = -1"):
        log.append(np.zeros(OBS), np.zeros(ACT), 0.0, np.zeros(OBS), False, False, 0, 0, -1)
    assert log.append(np.zeros(OBS), np.zeros(ACT), np.array([0.25]), np.zeros(OBS), False, False, 0, 0, 0) == 0
    log.close()
    assert read_transitions(tmp_path)["reward"].tolist() == [0.25]
    with pytest.raises(RuntimeError, match="after close"):
        log.append(np.zeros(OBS), np.zeros(ACT), 0.0, np.zeros(OBS), False, False, 0, 0, 0)
    with pytest.raises(ValueError, match="positive"):
        TransitionLog(tmp_path, 0, ACT)
    empty = read_transitions(tmp_path / "nothing")
    assert empty["reward"].shape == (0,) and empty["obs"].shape[0] == 0


def test_exit_without_close_still_finishes_the_file(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from mbpo_ros.io.transition_log import TransitionLog\n"
        "log = TransitionLog(sys.argv[1], 2, 1)\n"
        "for i in range(50):\n"
        "    log.append([i, i], [0.5], 1.0, [i + 1, i + 1], False, False, 0, i, 1000 + i)\n"
    )  # the interpreter exits normally without log.close()
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    with open(tmp_path / "transitions" / "transitions.mcap", "rb") as f:
        assert make_reader(f).get_summary().statistics.message_count == 50  # footer written
    np.testing.assert_array_equal(read_transitions(tmp_path)["step"], np.arange(50))


_FILE_SIZE_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys, numpy as np
    from mbpo_ros.io.transition_log import TransitionLog
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))  # files past 64 KiB fail
    log = TransitionLog(sys.argv[1], 7, 3, chunk_size=4096, max_segment_transitions=0, retry_interval=0.05)
    ids = [log.append(np.full(7, i), np.zeros(3), 0.0, np.zeros(7), False, False, 0, i, i) for i in range(2000)]
    log.flush()
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))  # space returns
    import time
    time.sleep(0.3)
    ids += [log.append(np.full(7, i), np.zeros(3), 0.0, np.zeros(7), False, False, 0, i, i) for i in range(2000, 2100)]
    log.flush()
    st = log.status()
    print(st.level, log.lost, log.dropped, log.written, log.recoveries, sum(i >= 0 for i in ids))
    log.close()
    print("closed")
    """
)


def test_file_size_limit_is_counted_and_the_writer_goes_on_in_a_new_segment(tmp_path):
    """RLIMIT_FSIZE (EFBIG at 64 KiB per file): an OS-level write failure, not a mock. The writer
    counts what it lost, writes on in a new segment, and neither flush() nor close() raises."""
    out = subprocess.run([sys.executable, "-c", _FILE_SIZE_LIMIT, str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and len(lines) == 2 and lines[1] == "closed", out.stdout + out.stderr
    level, lost, dropped, written, recoveries, accepted = lines[0].split()
    lost, dropped, written, recoveries, accepted = map(int, (lost, dropped, written, recoveries, accepted))
    assert level == "WARN" and lost > 0 and recoveries >= 1
    assert accepted + dropped == 2100 and written + lost == accepted
    got = read_transitions(tmp_path)
    assert len(segment_paths(tmp_path)) >= 2, "the writer must go on in a new segment"
    assert len(got["step"]) == written, "every transition the writer kept is readable"
    assert np.all(np.diff(got["step"]) > 0) and np.all(np.diff(got["log_id"]) > 0)


def test_log_works_without_ament_prefix_path(tmp_path, monkeypatch):
    """`mbpo-ros train` run outside make has no AMENT_PREFIX_PATH: the embedded schema text is used."""
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    log = TransitionLog(tmp_path / "transitions.mcap", obs_dim=3, act_dim=2, resume=False)
    log.append(np.zeros(3), np.ones(2), 0.5, np.ones(3), False, False, 0, 0, 1_000)
    log.close()
    got = read_transitions(tmp_path / "transitions.mcap")
    assert got["reward"].tolist() == [0.5]


def test_full_disk_error_then_recovery_in_a_new_segment(small_disk):
    """Regression (issue 11): on a full disk the writer stopped for good and close() raised. Now it
    reports ERROR, counts what it lost, writes again in a new segment when space returns, and
    neither flush() nor close() raises."""
    log = TransitionLog(small_disk / "run", OBS, ACT, flush_every=10, retry_interval=0.05)
    tr = _transitions(300, seed=3)
    _write(log, tr, 0, 100)
    log.flush()
    assert log.status().level == "OK" and log.written == 100
    fill_disk(small_disk / "filler")
    ids = [log.append(tr["obs"][i], tr["action"][i], tr["reward"][i], tr["next_obs"][i], False, False, 0,
                      int(tr["step"][i]), int(tr["stamp_ns"][i])) for i in range(100, 200)]
    log.flush()
    st = log.status()
    assert st.level == "ERROR" and "cannot write" in st.message, st
    assert log.lost + log.dropped > 0
    (small_disk / "filler").unlink()  # space returns
    deadline = time.monotonic() + 10
    while log.status().level == "ERROR" and time.monotonic() < deadline:
        log.flush()
        time.sleep(0.05)
    assert log.status().level == "WARN" and log.recoveries >= 1
    ids += [log.append(tr["obs"][i], tr["action"][i], tr["reward"][i], tr["next_obs"][i], False, False, 0,
                       int(tr["step"][i]), int(tr["stamp_ns"][i])) for i in range(200, 300)]
    log.close()  # never raises
    accepted = 100 + sum(i >= 0 for i in ids)
    assert log.written + log.lost == accepted and accepted + log.dropped == 300
    got = read_transitions(small_disk / "run")
    assert len(got["step"]) == log.written, "every transition the writer kept is on disk and readable"
    assert got["step"][-1] == tr["step"][299], "the writer logs again after the disk had space"
    assert len(segment_paths(small_disk / "run")) >= 2


def test_the_log_is_one_rosbag2_directory_that_covers_every_session(tmp_path, kill_after_first_line):
    """Regression (issue 15): loose .mcap files, `ros2 bag play` takes one path. The log is a bag directory:
    metadata.yaml (rosbag2's format) lists every segment in order, with counts, time span and the QoS."""
    import inspect

    import yaml

    tr = _transitions(90)
    with TransitionLog(tmp_path / "run", OBS, ACT) as log:
        _write(log, tr, 0, 40)
    # a session killed mid-way (after a flush: metadata.yaml was rewritten then)
    assert kill_after_first_line(_KILLED, tmp_path / "run", os.path.dirname(__file__), delay=0.2) == "flushed"
    with TransitionLog(tmp_path / "run", OBS, ACT) as log:
        _write(log, tr, 40, 90)
    bag = tmp_path / "run" / "transitions"
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    got = read_transitions(tmp_path / "run")
    assert read_transitions(bag)["obs"].shape == got["obs"].shape  # the bag directory is a log path too
    assert info["relative_file_paths"] == [p.name for p in segment_paths(bag)] == [
        "transitions.mcap", "transitions.1.mcap", "transitions.2.mcap"]
    assert [f["message_count"] for f in info["files"]] == [int((got["segment"] == i).sum()) for i in range(3)]
    assert info["message_count"] == len(got["obs"]) and info["storage_identifier"] == "mcap"
    (topic,) = info["topics_with_message_count"]
    assert topic["topic_metadata"]["name"] == tl.TOPIC and topic["topic_metadata"]["type"] == tl.MSG_TYPE
    assert yaml.safe_load(topic["topic_metadata"]["offered_qos_profiles"])[0]["reliability"] == 1  # reliable
    assert info["starting_time"]["nanoseconds_since_epoch"] == int(got["stamp_ns"].min())
    # the same QoS on each segment's channel, where rosbag2's MCAP storage looks for it
    with open(bag / "transitions.mcap", "rb") as f:
        (channel,) = make_reader(f).get_summary().channels.values()
    assert channel.metadata["offered_qos_profiles"] == topic["topic_metadata"]["offered_qos_profiles"]
    # written through mcap's public API only
    source = inspect.getsource(tl)
    assert "._writer._writer" not in source and "_channel_ids" not in source


def test_loose_segments_of_an_older_version_are_read_and_continued(tmp_path):
    """Runs written before the bag directory keep their loose transitions*.mcap: read first, and the bag
    numbers its segments after them (log ids stay unique)."""
    tr = _transitions(60)
    with TransitionLog(tmp_path / "old", OBS, ACT) as log:
        _write(log, tr, 0, 30)
    (tmp_path / "run").mkdir()
    (tmp_path / "old" / "transitions" / "transitions.mcap").rename(tmp_path / "run" / "transitions.mcap")
    with TransitionLog(tmp_path / "run", OBS, ACT) as log:
        _write(log, tr, 30, 60)
    got = read_transitions(tmp_path / "run" / "transitions.mcap")
    _assert_equal(got, tr)
    assert len(set(got["log_id"].tolist())) == 60
    assert [p.name for p in segment_paths(tmp_path / "run")] == ["transitions.mcap", "transitions.1.mcap"]
