"""FleetLearner: the decisions of learner_node without ROS (frames in, frames out).

One learner for one or more arms: every arm's transitions go into one supervised TrainerProcess
(learner/supervisor.py: the same child, worker and MBPO core as agent_node's local learner), which
trains one shared policy. The replay buffer stores transitions, not trajectories (MBPO branches
its model rollouts from single real states), so the arms' episodes never run into each other:
each transition keeps its own obs/next_obs/terminated, whichever arm it came from, and carries its
fleet id (catchup.fleet_id: the arm's stream and sequence number).

- identity: the learner trains for the arm and task of its checkpoint, or else of the first arm that
  announces itself (HEAD frame); an arm whose arm or task differs is refused (its frames are dropped,
  ``refused`` says which and why), because one policy cannot serve two different arms.
- catch-up: a ``catchup.Receiver`` seeded from the checkpoint's ids; ``gap_frames(now)`` are the
  requests to publish. A transition the trainer's queue cannot take is forgotten again, so it is
  asked for once more. After a restart of the trainer child (the supervisor replaces a crashed
  child from its checkpoint), the Receiver is seeded again from that checkpoint: what the dead
  child held and had not checkpointed is asked for again.
- snapshots: ``snapshot_frame()`` encodes the trainer's newest policy with the learner's identity
  once per new policy (``version`` = its SAC updates; ``learner`` = this run's id).
"""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path
from typing import Any

from mbpo_ros.learner import wire
from mbpo_ros.learner.catchup import Receiver, StreamCollision, fleet_id
from mbpo_ros.learner.log_ids import IdSet

__all__ = ["FleetLearner", "identity_differences"]

LOG_IDS_KEY = "log_ids"


def identity_differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Every way `actual` (an arm's {"task", "robot"}) differs from `expected`, one phrase each."""
    from mbpo_ros.core.identity import robot_differences

    out = []
    et, at = expected.get("task") or {}, actual.get("task") or {}
    for key in ("name", "obs_dim", "act_dim", "n_joints"):
        if et.get(key) != at.get(key):
            out.append(f"task {key} {at.get(key)!r} (expected {et.get(key)!r})")
    ec, ac = et.get("config") or {}, at.get("config") or {}
    for key in sorted(set(ec) | set(ac)):
        if ec.get(key) != ac.get(key):
            out.append(f"task setting {key} {ac.get(key)!r} (expected {ec.get(key)!r})")
    er, ar = expected.get("robot"), actual.get("robot")
    if er and ar:
        out += robot_differences(er, ar)
    elif bool(er) != bool(ar):
        out.append("one side does not say which arm it is")
    return out


class FleetLearner:
    """See the module docstring. cfg: core Config; run_dir: checkpoints go to run_dir/checkpoint.

    make_trainer: ``(obs_dim, act_dim, task_name, task_kwargs, resume) -> TrainerProcess`` (started);
    the node passes one that builds it with its options. log: info/warning/error callables.
    """

    def __init__(self, run_dir: str | Path, make_trainer: Any, retry_s: float = 1.0, max_request: int = 2000,
                 log: Any = None, learner_id: str = ""):
        self.run_dir = Path(run_dir)
        self.make_trainer = make_trainer
        self.retry_s, self.max_request = float(retry_s), int(max_request)
        self.log = log
        self.learner_id = learner_id or uuid.uuid4().hex[:12]
        self.trainer = None
        self.identity: dict[str, Any] | None = None
        self.refused: dict[str, str] = {}  # arm -> why its frames are dropped
        self.arms: dict[str, dict[str, Any]] = {}  # arm -> {"stream", "head", "frames", "bytes"}
        self.bad_frames = 0
        self.last_bad_frame = ""
        self.forgotten = 0  # accepted transitions the trainer queue refused (asked for again)
        self.snapshots_sent = 0
        self._last_snapshot = None
        self._restarts_seen = 0
        self.rx = Receiver(retry_s=self.retry_s, max_request=self.max_request)
        ckpt = self.run_dir / "checkpoint"
        if ckpt.exists() or (self.run_dir / ".checkpoint.old").exists():
            from mbpo_ros.io.checkpoint import load_identity

            ident = load_identity(ckpt)
            if ident.get("task"):
                self._start(ident, resume=True)

    # ------------------------------------------------------------------ life cycle

    def _held_from_checkpoint(self) -> IdSet:
        from mbpo_ros.io.checkpoint import load_meta

        try:
            ranges = load_meta(self.run_dir / "checkpoint").get(LOG_IDS_KEY) or []
        except FileNotFoundError:
            return IdSet()
        return IdSet.from_ranges(ranges)

    def _start(self, identity: dict[str, Any], resume: bool) -> None:
        from mbpo_ros.core.arm_task import task_from_settings

        task = task_from_settings(identity["task"])
        self.trainer = self.make_trainer(task.obs_dim, task.act_dim, task.name,
                                         {"cfg": task.cfg, "n_joints": task.n_joints, "robot": identity.get("robot")},
                                         resume)
        self.identity = {"task": task.settings(), "robot": identity.get("robot")}
        self.obs_dim, self.act_dim = task.obs_dim, task.act_dim
        held = self._held_from_checkpoint() if resume else IdSet()
        self.rx = Receiver(held, self.retry_s, self.max_request)
        self._restarts_seen = int(self.trainer.stats().get("restarts", 0))
        self._info(f"training {task.name} ({task.obs_dim} -> {task.act_dim}) for arm "
                   f"{(identity.get('robot') or {}).get('joint_names')}; resumed with {len(held)} transitions "
                   "from its checkpoint" if resume else f"training {task.name} from scratch")

    def _info(self, text: str) -> None:
        if self.log is not None:
            self.log.info(text)

    def _warn(self, text: str) -> None:
        if self.log is not None:
            self.log.warning(text)

    def close(self, checkpoint: bool = True, timeout: float = 120.0) -> None:
        if self.trainer is not None:
            self.trainer.close(checkpoint=checkpoint, timeout=timeout)

    # ------------------------------------------------------------------ frames in

    def on_frame(self, data: bytes) -> None:
        """One frame from an agent (TRANSITIONS or HEAD); anything else is counted and dropped."""
        try:
            m = wire.decode(data)
        except wire.WireError as exc:
            self._bad(str(exc))
            return
        if isinstance(m, wire.Head):
            self._on_head(m)
        elif isinstance(m, wire.TransitionBatch):
            self._on_transitions(m, len(data))

    def _bad(self, why: str) -> None:
        self.bad_frames += 1
        if why != self.last_bad_frame:
            self._warn(f"dropped a fleet frame: {why}")
        self.last_bad_frame = why

    def _arm(self, arm: str, stream: int) -> dict[str, Any]:
        a = self.arms.setdefault(arm, {"stream": stream, "head": 0, "frames": 0, "bytes": 0, "t0": time.monotonic()})
        if a["stream"] != stream:
            a.update(stream=stream, head=0)  # the agent restarted: a new session
        return a

    def _on_head(self, m: wire.Head) -> None:
        if self.identity is None:
            if not m.identity.get("task"):
                self._bad(f"arm {m.arm!r} announces no task identity")
                return
            self._start(m.identity, resume=False)
        diffs = identity_differences(self.identity, m.identity)
        if diffs:
            why = "; ".join(diffs)
            if self.refused.get(m.arm) != why:
                self._warn(f"refusing arm {m.arm!r}: it is not the arm/task this learner trains for: {why}")
            self.refused[m.arm] = why
            return
        self.refused.pop(m.arm, None)
        self._arm(m.arm, m.stream)["head"] = m.next_seq
        try:
            self.rx.note_head(m.arm, m.stream, m.next_seq)
        except StreamCollision as exc:
            self._bad(str(exc))

    def _on_transitions(self, m: wire.TransitionBatch, nbytes: int) -> None:
        if m.arm in self.refused:
            return
        if self.trainer is None or m.arm not in self.arms:
            return  # not announced yet: its HEAD comes within a second, and with it the gap request
        if (m.obs_dim, m.act_dim) != (self.obs_dim, self.act_dim):
            self._bad(f"arm {m.arm!r} sends {m.obs_dim}/{m.act_dim} observation/action sizes, the learner "
                      f"trains {self.obs_dim}/{self.act_dim}")
            return
        a = self._arm(m.arm, m.stream)
        a["frames"] += 1
        a["bytes"] += nbytes
        for i, seq in enumerate(m.seqs):
            try:
                new = self.rx.accept(m.arm, m.stream, seq)
            except (StreamCollision, ValueError) as exc:
                self._bad(str(exc))
                return
            if not new:
                continue
            obs, act, reward, next_obs, term, trunc = m.unpack(i)
            if not self.trainer.submit(obs, act, reward, next_obs, term, trunc,
                                       log_id=fleet_id(m.arm, m.stream, seq)):
                self.rx.forget(m.arm, m.stream, seq)
                self.forgotten += 1

    # ------------------------------------------------------------------ frames out

    def gap_frames(self, now: float) -> list[bytes]:
        """Gap requests due now (publish them); also notices a restarted trainer child."""
        if self.trainer is not None:
            restarts = int(self.trainer.stats().get("restarts", 0))
            if restarts != self._restarts_seen:  # the new child holds what its checkpoint held
                self._restarts_seen = restarts
                old = self.rx
                self.rx = Receiver(self._held_from_checkpoint(), self.retry_s, self.max_request)
                for arm, stream in old.streams():  # what the arms made is still known: ask for all it lost
                    self.rx.note_head(arm, stream, old.head(arm, stream))
                self._warn("the trainer child was restarted from its checkpoint: asking the arms again for "
                           "what it had not checkpointed")
        return [wire.encode_gaps(r.arm, r.stream, r.ranges) for r in self.rx.requests(now)]

    def snapshot_frame(self) -> bytes | None:
        """The newest policy as a SNAPSHOT frame, once per new policy (None: nothing new)."""
        snap = None if self.trainer is None else self.trainer.latest_snapshot()
        if snap is None or snap is self._last_snapshot:
            return None
        self._last_snapshot = snap
        self.snapshots_sent += 1
        env_steps = int(self.trainer.stats().get("env_steps", 0))
        return wire.encode_snapshot(int(snap.version), self.learner_id, env_steps, self.identity, snap.to_arrays(),
                                    stamp=time.time())

    # ------------------------------------------------------------------ records

    def checkpoint(self, timeout: float = 120.0) -> str:
        if self.trainer is None:
            raise RuntimeError("no arm has announced itself yet: nothing to checkpoint")
        return self.trainer.request_checkpoint(timeout=timeout)

    def status(self) -> tuple[str, str, dict[str, Any]]:
        """(level, message, values) for /diagnostics."""
        values: dict[str, Any] = {"learner_id": self.learner_id, "arms": len(self.arms),
                                  "held": self.rx.held_count(), "open_gaps": self.rx.open_gaps(),
                                  "duplicates_dropped": self.rx.duplicates, "bad_frames": self.bad_frames,
                                  "snapshots_sent": self.snapshots_sent, "requeued": self.forgotten}
        now = time.monotonic()
        for arm, a in sorted(self.arms.items()):
            values[f"{arm}.held"] = self.rx.held_count(arm)
            values[f"{arm}.head"] = a["head"]
            values[f"{arm}.bytes_per_s"] = f"{a['bytes'] / max(now - a['t0'], 1e-3):.1f}"
        for arm, why in self.refused.items():
            values[f"{arm}.refused"] = why[:200]
        if self.trainer is None:
            return "WARN", "waiting for an arm to announce itself", values
        st = self.trainer.stats()
        for key in ("env_steps", "real_buffer", "sac_updates", "updates_per_s", "model_holdout_loss", "achieved_utd",
                    "duplicates_skipped", "queue_dropped", "last_checkpoint", "restarts"):
            v = st.get(key, "")
            values[key] = f"{v:.4g}" if isinstance(v, float) and not math.isnan(v) else v
        health = self.trainer.health()
        if health.level != "OK":
            return "ERROR", health.message[:200], values
        if self.refused:
            return "WARN", f"refusing {len(self.refused)} arm(s) of another arm/task", values
        return "OK", f"{len(self.arms)} arm(s), {values['held']} transitions", values
