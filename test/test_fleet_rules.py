"""The fleet protocol without ROS: wire frames (versioned, checksummed) and catch-up (learner/catchup.py).

Property: whatever the network does to frames (loss, duplication, reordering, in both directions, gap
requests and their answers included) and whenever the learner restarts from its last checkpoint, once
the network behaves the learner holds every transition of every arm exactly once.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mbpo_ros.learner import wire
from mbpo_ros.learner.catchup import History, Receiver, fleet_id, split_fleet_id, stream_key
from mbpo_ros.learner.log_ids import IdSet

OBS, ACT = 3, 2
WIDTH = wire.record_length(OBS, ACT)


def _record(arm_index: int, seq: int) -> np.ndarray:
    """A record whose values say which arm and transition it is."""
    r = np.full(WIDTH, float(seq), np.float32)
    r[0] = arm_index
    return r


# ----------------------------------------------------------------------------- wire


def test_transition_frame_round_trip():
    recs = np.stack([_record(1, s) for s in range(5, 9)])
    out = wire.decode(wire.encode_transitions("/arm1", 123, 5, recs, OBS, ACT))
    assert isinstance(out, wire.TransitionBatch)
    assert (out.arm, out.stream, list(out.seqs)) == ("/arm1", 123, [5, 6, 7, 8])
    np.testing.assert_array_equal(out.records, recs)
    obs, act, reward, next_obs, term, trunc = out.unpack(0)
    assert obs.shape == (OBS,) and act.shape == (ACT,) and next_obs.shape == (OBS,) and reward == 5.0


def test_snapshot_frame_round_trip_and_checksum():
    from mbpo_ros.core.policy import PolicySnapshot

    rng = np.random.default_rng(0)
    snap = PolicySnapshot([rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((8, 4)).astype(np.float32)],
                          [np.zeros(8, np.float32), np.zeros(4, np.float32)], -5.0, 2.0, 17)
    ident = {"task": {"name": "reach", "obs_dim": 4}, "robot": {"joint_names": ["a", "b"]}}
    data = wire.encode_snapshot(3, "run-x", 900, ident, snap.to_arrays())
    out = wire.decode(data)
    assert isinstance(out, wire.SnapshotFrame)
    assert (out.version, out.learner, out.env_steps, out.identity) == (3, "run-x", 900, ident)
    back = PolicySnapshot.from_arrays(out.arrays)
    x = rng.standard_normal(4).astype(np.float32)
    np.testing.assert_array_equal(back.act(x, deterministic=True), snap.act(x, deterministic=True))
    damaged = bytearray(data)
    damaged[-3] ^= 0xFF
    with pytest.raises(wire.WireError, match="CRC-32"):
        wire.decode(bytes(damaged))


def test_frames_refused_with_a_reason():
    good = wire.encode_head("/arm1", 1, 10, {"task": None})
    with pytest.raises(wire.WireError, match="magic"):
        wire.decode(b"XXXX" + good[4:])
    newer = bytearray(good)
    newer[4] = wire.WIRE_VERSION + 1
    with pytest.raises(wire.WireError, match="newer than this mbpo_ros reads"):
        wire.decode(bytes(newer))
    with pytest.raises(wire.WireError, match="shorter"):
        wire.decode(b"MBPF")
    with pytest.raises(ValueError, match="arm id"):
        wire.encode_head("", 1, 0, {})


@given(st.binary(max_size=200))
def test_garbage_is_a_wire_error_never_a_crash(data):
    try:
        wire.decode(data)
    except wire.WireError:
        pass


@given(st.text(min_size=1, max_size=20), st.integers(0, 2**63 - 1), st.integers(0, 2**32 - 1))
def test_fleet_id_round_trip(arm, stream, seq):
    fid = fleet_id(arm, stream, seq)
    assert split_fleet_id(fid) == (stream_key(arm, stream), seq)
    assert 0 <= fid < 2**63


# ----------------------------------------------------------------------------- catch-up


def test_history_serves_old_transitions_from_the_log_by_log_id():
    """Beyond the retained window the log serves, by the log id each transition got (a dropped one is skipped)."""
    log = {}

    def fallback(ids):
        return {i: log[i] for i in ids if i in log}

    h = History("/arm1", 7, WIDTH, retain=4, fallback=fallback)
    next_log = 100
    for s in range(12):
        if s == 3:  # the log dropped this one (queue full): no log id
            h.append(_record(1, s), -1)
            continue
        log[next_log] = _record(1, s)
        h.append(_record(1, s), next_log)
        next_log += 1
    runs = h.serve([(0, 12)])
    got = [int(r[1]) for _f, recs in runs for r in recs]
    assert got == [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11]
    assert h.unavailable == 1
    assert [f for f, _r in runs] == [0, 4]


def test_receiver_seeded_from_checkpoint_ids_asks_only_for_the_rest():
    held = IdSet()
    for s in [*range(0, 50), *range(60, 70)]:
        held.add(fleet_id("/arm1", 5, s))
    rx = Receiver(held, retry_s=1.0)
    rx.note_head("/arm1", 5, 80)
    assert rx.missing("/arm1", 5) == [(50, 60), (70, 80)]
    assert not rx.accept("/arm1", 5, 10)  # held before the restart: a duplicate
    reqs = rx.requests(0.0)
    assert [(r.arm, r.stream, r.ranges) for r in reqs] == [("/arm1", 5, ((50, 60), (70, 80)))]
    assert rx.requests(0.5) == []  # not again before retry_s
    assert len(rx.requests(1.0)) == 1


class Net:
    """Frames in flight, in either direction; the test's random choices decide their fate."""

    def __init__(self):
        self.to_learner: list[bytes] = []
        self.to_agents: list[bytes] = []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.lists(st.integers(0, 60), min_size=2, max_size=2),
       retain=st.integers(1, 80), steps=st.integers(0, 400))
def test_every_transition_delivered_exactly_once(seed, n, retain, steps):
    """Two arms, lossy/duplicating/reordering network, learner restarts from its last checkpoint."""
    rnd = random.Random(seed)
    arms = ["/arm1", "/arm2"]
    logs = [dict() for _ in arms]  # each agent's transition log, by log id
    hist = [History(a, 1000 + i, WIDTH, retain=retain,
                    fallback=lambda ids, log=logs[i]: {x: log[x] for x in ids if x in log}) for i, a in enumerate(arms)]
    made = [0, 0]
    net = Net()
    buffer: list[int] = []  # the learner's replay buffer (fleet ids), what it trained on
    ckpt: list[int] = []  # what the last checkpoint holds
    rx = Receiver(retry_s=1.0, max_request=7)
    now = 0.0

    def agent_step(i):
        s = made[i]
        log_id = 10_000 + s
        logs[i][log_id] = _record(i, s)
        hist[i].append(_record(i, s), log_id)
        made[i] += 1
        net.to_learner.append(wire.encode_transitions(arms[i], hist[i].stream, s, _record(i, s)[None], OBS, ACT))

    def head(i):
        net.to_learner.append(wire.encode_head(arms[i], hist[i].stream, hist[i].next_seq, {}))

    def learner_receive(frame):
        m = wire.decode(frame)
        if isinstance(m, wire.Head):
            rx.note_head(m.arm, m.stream, m.next_seq)
            return
        for k, s in enumerate(m.seqs):
            if rx.accept(m.arm, m.stream, s):
                assert int(m.records[k][1]) == s and int(m.records[k][0]) == arms.index(m.arm)
                buffer.append(fleet_id(m.arm, m.stream, s))

    def learner_tick():
        for r in rx.requests(now):
            net.to_agents.append(wire.encode_gaps(r.arm, r.stream, r.ranges))

    def agent_receive(frame):
        g = wire.decode(frame)
        i = arms.index(g.arm)
        for first, recs in hist[i].serve(g.ranges, batch=5):
            net.to_learner.append(wire.encode_transitions(g.arm, g.stream, first, recs, OBS, ACT))

    for _ in range(steps):
        now += 0.25
        op = rnd.random()
        queue = net.to_learner if rnd.random() < 0.7 or not net.to_agents else net.to_agents
        if op < 0.25:
            i = rnd.randrange(2)
            if made[i] < n[i]:
                agent_step(i)
        elif op < 0.30:
            head(rnd.randrange(2))
        elif op < 0.35:
            learner_tick()
        elif op < 0.40 and queue:
            queue.pop(rnd.randrange(len(queue)))  # lost
        elif op < 0.45 and queue:
            queue.append(queue[rnd.randrange(len(queue))])  # duplicated
        elif op < 0.48:
            ckpt = list(buffer)  # a checkpoint
        elif op < 0.50:
            buffer = list(ckpt)  # the learner restarts from its checkpoint; what was in flight to it is gone
            held = IdSet()
            for fid in ckpt:
                held.add(fid)
            rx = Receiver(held, retry_s=1.0, max_request=7)
            net.to_learner.clear()
        elif queue:  # deliver one, in any order
            frame = queue.pop(rnd.randrange(len(queue)))
            (learner_receive if queue is net.to_learner else agent_receive)(frame)

    # the network behaves from now on: the rest of the run, heads, requests and answers get through
    for i in range(2):
        while made[i] < n[i]:
            agent_step(i)
    for _ in range(200):
        now += 1.0
        head(0)
        head(1)
        while net.to_learner or net.to_agents:
            while net.to_learner:
                learner_receive(net.to_learner.pop(0))
            learner_tick()
            while net.to_agents:
                agent_receive(net.to_agents.pop(0))
        if rx.open_gaps() == 0 and all(rx.held_count(a) == n[i] for i, a in enumerate(arms)):
            break
    expected = sorted(fleet_id(a, hist[i].stream, s) for i, a in enumerate(arms) for s in range(n[i]))
    assert sorted(buffer) == expected  # every transition of every arm, exactly once
