"""RemoteLink: an agent's side of a remote learner_node, without ROS (frames in, frames out).

The control thread only calls ``submit`` (keeps the record in the stream's ``History``: an array
write under an uncontended lock) and ``policy`` (an attribute read): it never waits for the network.
The node's executor thread calls the rest:

- ``frames_out(now)``: the transitions not sent yet as TRANSITIONS frames (batched), and a HEAD
  frame (stream, next sequence number, the arm/task identity) every ``head_period`` s, so a learner
  that starts late, restarts or was cut off learns what it misses;
- ``on_gaps(data)``: a GAPS frame for this stream -> the TRANSITIONS frames that answer it, from
  the retained history or the MCAP transition log;
- ``on_snapshot(data, now)``: a SNAPSHOT frame -> installed when it is for this arm and task and new
  (another learner run, or a newer version), refused with a reason otherwise;
- ``status(now)``: the policy's age (WARN past ``policy_age_warn`` s; before the first snapshot the
  age counts from the start, while the agent explores), refusals, what was sent and served.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from mbpo_ros.learner import wire
from mbpo_ros.learner.catchup import History, LogFallback
from mbpo_ros.learner.fleet import identity_differences

__all__ = ["RemoteLink"]


class RemoteLink:
    """See the module docstring. identity: {"task": ArmTask.settings(), "robot": robot_identity(...)}."""

    def __init__(self, arm: str, identity: dict[str, Any], obs_dim: int, act_dim: int, retain: int = 100_000,
                 policy_age_warn: float = 30.0, log_path: Any = None, head_period: float = 1.0, batch: int = 200,
                 stream: int | None = None, now: float | None = None):
        self.arm, self.identity = arm, identity
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.stream = secrets.randbits(63) if stream is None else int(stream)
        self.history = History(arm, self.stream, wire.record_length(obs_dim, act_dim), retain,
                               LogFallback(log_path) if log_path is not None else None)
        self.policy_age_warn, self.head_period, self.batch = float(policy_age_warn), float(head_period), int(batch)
        self._lock = threading.Lock()
        self._sent = 0  # sequence numbers below this were published once
        self._last_head = -1e9
        self.started = time.monotonic() if now is None else float(now)
        self.snapshot = None
        self.installed: tuple[str, int] | None = None  # (learner run, version)
        self.installed_at: float | None = None
        self.installs = 0
        self.last_lag_s = float("nan")
        self.refused = 0
        self.refusal = ""
        self.bad_frames = 0
        self.bytes_sent = 0

    # ------------------------------------------------------------------ control thread

    def submit(self, obs, act, reward: float, next_obs, terminated: bool, truncated: bool, log_id: int = -1) -> int:
        """Keep one transition for the learner; returns its sequence number. Never blocks on the network."""
        rec = wire.pack_record(obs, act, reward, next_obs, terminated, truncated)
        with self._lock:
            return self.history.append(rec, log_id)

    def policy(self):
        """The newest installed policy (None before the first: the controller explores)."""
        return self.snapshot

    # ------------------------------------------------------------------ executor thread

    def frames_out(self, now: float) -> list[bytes]:
        out = []
        with self._lock:
            head = self.history.next_seq
            runs = self.history.serve([(self._sent, head)], batch=self.batch) if head > self._sent else []
            self._sent = head
            self.history.served -= sum(len(r) for _f, r in runs)  # first sends are not catch-up
        for first, recs in runs:
            out.append(wire.encode_transitions(self.arm, self.stream, first, recs, self.obs_dim, self.act_dim))
        if now - self._last_head >= self.head_period:
            self._last_head = now
            out.append(wire.encode_head(self.arm, self.stream, head, self.identity))
        self.bytes_sent += sum(len(f) for f in out)
        return out

    def on_gaps(self, data: bytes) -> list[bytes]:
        try:
            g = wire.decode(data)
        except wire.WireError:
            self.bad_frames += 1
            return []
        if not isinstance(g, wire.GapRequest) or g.arm != self.arm or g.stream != self.stream:
            return []  # another arm's (every agent hears every request)
        with self._lock:
            runs = self.history.serve(g.ranges, batch=self.batch)
        out = [wire.encode_transitions(self.arm, self.stream, first, recs, self.obs_dim, self.act_dim)
               for first, recs in runs]
        self.bytes_sent += sum(len(f) for f in out)
        return out

    def on_snapshot(self, data: bytes, now: float, wall: float | None = None) -> str | None:
        """Install or refuse a SNAPSHOT frame. Returns a line to log (an install or a refusal), or None."""
        from mbpo_ros.core.policy import PolicySnapshot

        try:
            s = wire.decode(data)
            if not isinstance(s, wire.SnapshotFrame):
                raise wire.WireError("not a policy snapshot")
            diffs = identity_differences(self.identity, s.identity)
            if diffs:
                raise wire.WireError(f"it was trained for another arm/task: {'; '.join(diffs)}")
            key = (s.learner, s.version)
            if key == self.installed:
                return None
            snap = PolicySnapshot.from_arrays(s.arrays)
            if (snap.obs_dim, snap.act_dim) != (self.obs_dim, self.act_dim):
                raise wire.WireError(f"its policy maps {snap.obs_dim} -> {snap.act_dim}, this arm needs "
                                     f"{self.obs_dim} -> {self.act_dim}")
        except (wire.WireError, ValueError, KeyError) as exc:
            self.refused += 1
            line = f"refused a policy snapshot: {exc}"
            new = line != self.refusal
            self.refusal = line
            return line if new else None
        self.snapshot, self.installed, self.installed_at = snap, key, float(now)
        self.installs += 1
        self.refusal = ""
        if s.stamp > 0:
            self.last_lag_s = (time.time() if wall is None else wall) - s.stamp
        first = self.installs == 1
        return (f"installed policy {s.version} of learner {s.learner} ({s.env_steps} fleet transitions)"
                if first else None)

    def policy_age(self, now: float) -> float:
        return now - (self.installed_at if self.installed_at is not None else self.started)

    def status(self, now: float) -> tuple[str, str, dict[str, Any]]:
        age = self.policy_age(now)
        values = {"arm": self.arm, "stream": self.stream, "next_seq": self.history.next_seq,
                  "policy_age_s": f"{age:.1f}", "policy_version": self.installed[1] if self.installed else "",
                  "policy_learner": self.installed[0] if self.installed else "", "installs": self.installs,
                  "policy_lag_s": f"{self.last_lag_s:.4f}", "refused_snapshots": self.refused,
                  "served": self.history.served, "unavailable": self.history.unavailable,
                  "bytes_sent": self.bytes_sent, "bytes_per_s": f"{self.bytes_sent / max(now - self.started, 1e-3):.1f}"}
        if self.refusal:
            return "WARN", self.refusal[:200], values
        if age > self.policy_age_warn:
            what = "no policy from the learner yet" if self.snapshot is None else "no new policy from the learner"
            return "WARN", f"{what} for {age:.0f} s (policy_age_warn {self.policy_age_warn:g} s)", values
        if self.history.unavailable:
            return "WARN", f"{self.history.unavailable} transitions the learner asked for are gone", values
        return "OK", "remote learner" + (f", policy {self.installed[1]}" if self.installed else ", exploring"), values
