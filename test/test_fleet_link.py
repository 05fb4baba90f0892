"""The agent's side of a remote learner without ROS (learner/remote.py): snapshots installed or refused,
the policy's age on /diagnostics, transitions sent once and gaps served; the learner's refusal of another arm."""

from __future__ import annotations

import numpy as np
import pytest

from mbpo_ros.core.identity import robot_identity
from mbpo_ros.core.policy import PolicySnapshot
from mbpo_ros.core.reach import ReachConfig, ReachTask
from mbpo_ros.learner import wire
from mbpo_ros.learner.fleet import FleetLearner, identity_differences
from mbpo_ros.learner.remote import RemoteLink

JOINTS = ["j1", "j2", "j3"]


def _identity(joints=JOINTS, rate=20.0, success_threshold=0.03):
    task = ReachTask(ReachConfig(control_rate=rate, success_threshold=success_threshold, home_pose=(0.0,) * len(joints)),
                     n_joints=len(joints))
    robot = robot_identity(joints, [-1.0] * len(joints), [1.0] * len(joints), [2.0] * len(joints), "velocity", rate)
    return task, {"task": task.settings(), "robot": robot}


def _snapshot_frame(task, identity, version=5, learner="L1", stamp=0.0):
    rng = np.random.default_rng(version)
    snap = PolicySnapshot([rng.standard_normal((task.obs_dim, 8)).astype(np.float32),
                           rng.standard_normal((8, 2 * task.act_dim)).astype(np.float32)],
                          [np.zeros(8, np.float32), np.zeros(2 * task.act_dim, np.float32)], -5.0, 2.0, version)
    return wire.encode_snapshot(version, learner, 100, identity, snap.to_arrays(), stamp=stamp)


def test_snapshot_for_this_arm_is_installed_once():
    task, ident = _identity()
    link = RemoteLink("/arm1/agent_node", ident, task.obs_dim, task.act_dim, now=0.0)
    assert link.policy() is None  # before the first snapshot the controller explores
    line = link.on_snapshot(_snapshot_frame(task, ident), now=1.0)
    assert line is not None and "installed policy 5" in line
    assert link.policy() is not None and link.installs == 1
    assert link.on_snapshot(_snapshot_frame(task, ident), now=2.0) is None  # the same snapshot again
    link.on_snapshot(_snapshot_frame(task, ident, version=9), now=3.0)
    assert link.installs == 2 and link.installed == ("L1", 9)


@pytest.mark.parametrize(("other", "says"), [
    (dict(joints=["j1", "j3", "j2"]), "joint order differs"),
    (dict(rate=50.0), "control_rate"),
    (dict(success_threshold=0.05), "task setting success_threshold 0.05 (expected 0.03)"),
])
def test_snapshot_for_another_arm_or_task_is_refused(other, says):
    task, ident = _identity()
    other_task, other_ident = _identity(**other)
    link = RemoteLink("/arm1/agent_node", ident, task.obs_dim, task.act_dim, now=0.0)
    line = link.on_snapshot(_snapshot_frame(other_task, other_ident), now=1.0)
    assert line is not None and line.startswith("refused a policy snapshot") and says in line
    assert link.policy() is None and link.refused == 1
    level, message, _values = link.status(2.0)
    assert level == "WARN" and says in message


def test_damaged_snapshot_is_refused_and_the_last_policy_kept():
    task, ident = _identity()
    link = RemoteLink("/arm1/agent_node", ident, task.obs_dim, task.act_dim, now=0.0)
    link.on_snapshot(_snapshot_frame(task, ident, version=1), now=1.0)
    data = bytearray(_snapshot_frame(task, ident, version=2))
    data[-1] ^= 0x55
    assert "CRC-32" in link.on_snapshot(bytes(data), now=2.0)
    assert link.installed == ("L1", 1)


def test_policy_age_warns_past_the_threshold():
    task, ident = _identity()
    link = RemoteLink("/arm1/agent_node", ident, task.obs_dim, task.act_dim, policy_age_warn=10.0, now=0.0)
    assert link.status(5.0)[0] == "OK"
    level, msg, values = link.status(11.0)  # no learner at all: exploring for 11 s
    assert level == "WARN" and "no policy from the learner yet" in msg
    link.on_snapshot(_snapshot_frame(task, ident), now=12.0)
    assert link.status(20.0)[0] == "OK" and link.status(20.0)[2]["policy_age_s"] == "8.0"
    level, msg, _ = link.status(30.0)  # the learner went quiet: the last policy stays, WARN
    assert level == "WARN" and "no new policy" in msg and link.policy() is not None


def test_transitions_sent_once_with_heads_and_gaps_served():
    task, ident = _identity()
    link = RemoteLink("/arm1/agent_node", ident, task.obs_dim, task.act_dim, head_period=1.0, now=0.0)
    obs = np.zeros(task.obs_dim)
    for i in range(5):
        assert link.submit(obs + i, np.zeros(task.act_dim), float(i), obs, False, False) == i
    frames = [wire.decode(f) for f in link.frames_out(0.0)]
    batches = [f for f in frames if isinstance(f, wire.TransitionBatch)]
    heads = [f for f in frames if isinstance(f, wire.Head)]
    assert [list(b.seqs) for b in batches] == [[0, 1, 2, 3, 4]] and heads[0].next_seq == 5
    assert heads[0].identity == ident
    assert link.frames_out(0.5) == []  # nothing new, no head due
    served = link.on_gaps(wire.encode_gaps("/arm1/agent_node", link.stream, [(1, 3)]))
    assert [list(wire.decode(f).seqs) for f in served] == [[1, 2]]
    assert link.on_gaps(wire.encode_gaps("/arm2/agent_node", link.stream, [(1, 3)])) == []  # another arm's


class _Trainer:
    """Records what the learner submits (the learner's own trainer is the TrainerProcess of the graph tests)."""

    def __init__(self):
        self.ids = []

    def submit(self, *args, log_id):
        self.ids.append(log_id)
        return True

    def stats(self):
        return {"restarts": 0}


def test_learner_refuses_an_arm_of_another_kind(tmp_path):
    task, ident = _identity()
    _t, other = _identity(joints=["a", "b", "c"])
    trainers = []
    fl = FleetLearner(tmp_path, lambda *a: trainers.append(_Trainer()) or trainers[-1])
    fl.on_frame(wire.encode_head("/arm1/agent_node", 1, 0, ident))
    fl.on_frame(wire.encode_head("/arm2/agent_node", 2, 0, other))
    rec = wire.pack_record(np.zeros(task.obs_dim), np.zeros(task.act_dim), 0.0, np.zeros(task.obs_dim), False, False)
    for arm, stream in (("/arm1/agent_node", 1), ("/arm2/agent_node", 2)):
        fl.on_frame(wire.encode_transitions(arm, stream, 0, rec[None], task.obs_dim, task.act_dim))
    assert len(trainers) == 1 and len(trainers[0].ids) == 1  # only /arm1's transition reached the buffer
    assert "['a', 'b', 'c']" in fl.refused["/arm2/agent_node"]
    assert identity_differences(ident, other)
    fl.on_frame(b"garbage")
    assert fl.bad_frames == 1


@pytest.mark.parametrize(("arg", "says"), [
    ("fleet_topic:=mbpo_fleet", "must be absolute"),
    ("gap_retry:=0.0", "gap_retry"),
])
def test_learner_node_refuses_bad_parameters_in_one_line(ros_domain, tmp_path, arg, says):
    import subprocess
    import sys

    from mbpo_ros import graph

    proc = subprocess.run([sys.executable, "-m", "mbpo_ros.nodes.learner_node", "--ros-args", "-p",
                           f"run_dir:={tmp_path}", "-p", arg], capture_output=True, text=True, timeout=60,
                          env=graph.local_env())
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("learner_node:") and says in lines[0], proc.stderr


def test_learner_asks_again_for_what_a_crashed_trainer_child_had_not_checkpointed(tmp_path):
    """The supervisor restarts a dead child from its checkpoint: the Receiver is seeded again from it."""
    from mbpo_ros.io.checkpoint import save_checkpoint
    from mbpo_ros.learner.catchup import fleet_id
    from mbpo_ros.learner.log_ids import IdSet

    task, ident = _identity()
    trainer = _Trainer()
    restarts = {"n": 0}
    trainer.stats = lambda: {"restarts": restarts["n"]}
    fl = FleetLearner(tmp_path, lambda *a: trainer, retry_s=1.0)
    arm, stream = "/arm1/agent_node", 7
    fl.on_frame(wire.encode_head(arm, stream, 0, ident))
    rec = wire.pack_record(np.zeros(task.obs_dim), np.zeros(task.act_dim), 0.0, np.zeros(task.obs_dim), False, False)
    fl.on_frame(wire.encode_transitions(arm, stream, 0, np.stack([rec] * 10), task.obs_dim, task.act_dim))
    assert len(trainer.ids) == 10 and fl.gap_frames(0.0) == []
    held = IdSet()
    for s in range(6):  # the child's last checkpoint held 0..5; it died holding 0..9
        held.add(fleet_id(arm, stream, s))
    save_checkpoint(tmp_path / "checkpoint", arrays={"x": np.zeros(1)}, meta={"log_ids": held.ranges()})
    restarts["n"] = 1
    asked = [wire.decode(f) for f in fl.gap_frames(5.0)]
    assert [(g.arm, g.stream, g.ranges) for g in asked] == [(arm, stream, ((6, 10),))]
