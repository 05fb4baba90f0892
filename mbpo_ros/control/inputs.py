"""Input validation and the latest-state cache: what the controller may believe about the arm.

Every incoming message is checked here before anything uses it; a rejected one raises
`RejectedMessage` with a reason code (counted per topic by `RejectCounter`) and never reaches the
controller, the learner or the log. Checks, in order:

- shape: sizes agree, joints matched by name (`JointStateValidator`);
- values: finite and physically plausible (`Bounds`: |position| <= 100 rad, |velocity| <= 100 rad/s,
  |x|, |y|, |z| <= 100 m by default), before any float32 cast, so no cast can make an inf;
- stamps (`StampGate`): not negative, not more than `max_stamp_ahead` s ahead of the node's clock,
  not older than the newest accepted one. One bad stamp cannot lock out later good ones: a far-future
  stamp is rejected, never cached; and when only older, but advancing, stamps have arrived for
  `resync_after` s, or the clock itself went back, the gate starts a new timeline (a new `epoch`).
  A frozen stamp never starts one.

`InputCache` holds the latest accepted joint state, `/ee_pose` and `/goal`, each replaced by one
assignment (a reader never sees half a state), and `snapshot()` hands them to the controller as
one `Inputs`. A message with a repeated stamp is accepted but changes nothing: freshness (the
watchdog's `fresh_at`) only moves when a newer stamp arrives. One exception: a goal with the newest
stamp but another point is a new goal (sources that leave the stamp at zero, as `ros2 topic pub`
does, can still change it; the goal is not watched for freshness).
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: every reason code a RejectedMessage may carry (the keys of the counters on /diagnostics)
REJECT_REASONS = ("non_finite", "implausible", "wrong_size", "unknown_joint", "missing_joint", "out_of_order",
                  "negative_stamp", "future_stamp")


class RejectedMessage(ValueError):
    """An input message that must not be used. `reason` is a short code for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REJECT_REASONS:  # a new code must be added there (and so documented)
            raise TypeError(f"RejectedMessage reason {reason!r} is not one of {REJECT_REASONS}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RejectCounter:
    """Thread-safe counts of rejected messages per (topic, reason)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, topic: str, reason: str) -> int:
        with self._lock:
            key = (topic, reason)
            self._counts[key] = self._counts.get(key, 0) + 1
            return self._counts[key]

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def as_dict(self) -> dict[str, int]:
        """{"<topic>:<reason>": count} (a copy)."""
        with self._lock:
            return {f"{t}:{r}": c for (t, r), c in sorted(self._counts.items())}


@dataclass(frozen=True)
class Bounds:
    """Physical plausibility bounds of input values (checked before any cast).

    position: largest |joint position| [rad or m]; velocity: largest |joint velocity| [rad/s];
    cartesian: largest |x|, |y|, |z| of /ee_pose and /goal [m].
    """

    position: float = 100.0
    velocity: float = 100.0
    cartesian: float = 100.0

    def __post_init__(self) -> None:
        for name in ("position", "velocity", "cartesian"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"plausibility bound '{name}' = {v} must be a positive finite number")


def check_finite(values: Sequence[float] | np.ndarray, what: str, bound: float = math.inf) -> np.ndarray:
    """float64 copy of `values`; RejectedMessage "non_finite" on NaN/Inf, "implausible" beyond |bound|."""
    try:
        arr = np.array(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise RejectedMessage("non_finite", f"{what} is not a list of numbers: {exc}") from exc
    largest = float(np.max(np.abs(arr))) if arr.size else 0.0  # NaN if any is NaN
    if largest <= bound and math.isfinite(largest):
        return arr
    if not np.isfinite(arr).all():
        raise RejectedMessage("non_finite", f"{what} has a NaN or Inf value: {arr.tolist()[:20]}")
    raise RejectedMessage("implausible", f"{what} has |value| {largest:.6g} beyond the plausible bound {bound:g}")


class StampGate:
    """Stamp sanity and order for one input stream (module docstring). Not thread-safe: one caller.

    `check(stamp_ns, now)` returns True for a newer stamp (accepted), False for a repeat of the
    newest one, and raises RejectedMessage for a negative, far-future or out-of-order stamp.
    `epoch` counts timelines: it grows when the gate starts over on an older stamp.
    """

    def __init__(self, what: str, max_ahead: float = 5.0, resync_after: float = 0.25) -> None:
        self.what = what
        self.max_ahead = float(max_ahead)
        self.resync_after = float(resync_after)
        self.last_ns: int | None = None
        self.last_at: float | None = None  # clock time at which last_ns was accepted
        self.epoch = 0
        self.resyncs = 0
        self._older_since: float | None = None  # clock time of the first older stamp since the last accept
        self._older_last = 0

    def check(self, stamp_ns: int, now: float) -> bool:
        stamp_ns = int(stamp_ns)
        if stamp_ns < 0:
            raise RejectedMessage("negative_stamp", f"{self.what} stamp {stamp_ns * 1e-9:.6f} s is negative")
        if now > 0.0 and stamp_ns * 1e-9 > now + self.max_ahead:  # now == 0: simulated time not started yet
            raise RejectedMessage(
                "future_stamp", f"{self.what} stamp {stamp_ns * 1e-9:.6f} s is more than max_stamp_ahead "
                                f"{self.max_ahead:g} s ahead of the clock ({now:.6f} s)")
        if self.last_ns is None or stamp_ns > self.last_ns:
            self._accept(stamp_ns, now)
            return True
        if stamp_ns == self.last_ns:
            return False
        # older than the newest accepted stamp: a new timeline when the clock went back, or when only
        # older, still advancing, stamps have arrived for resync_after (a frozen stamp never qualifies)
        clock_back = self.last_at is not None and now < self.last_at
        if self._older_since is None or stamp_ns < self._older_last or now < self._older_since:
            self._older_since, self._older_last = now, stamp_ns
            advancing = False
        else:
            advancing = stamp_ns > self._older_last
            self._older_last = stamp_ns
        if clock_back or (advancing and now - self._older_since >= self.resync_after):
            self.epoch += 1
            self.resyncs += 1
            self._accept(stamp_ns, now)
            return True
        raise RejectedMessage(
            "out_of_order",
            f"{self.what} stamp {stamp_ns * 1e-9:.6f} s is older than the newest accepted "
            f"{self.last_ns * 1e-9:.6f} s",
        )

    def _accept(self, stamp_ns: int, now: float) -> None:
        self.last_ns = stamp_ns
        self.last_at = float(now)
        self._older_since = None


class JointStateValidator:
    """Turns a JointState's (name, position, velocity) into arm-ordered arrays.

    Matching is by joint name (JointState order is not guaranteed). Rejects (RejectedMessage):
    wrong sizes, names not covering the arm's joints (missing_joint), names the arm does not
    have (unknown_joint, unless `allow_extra_joints`), NaN/Inf (non_finite) and values beyond
    `bounds` (implausible) in the arm's joints.
    """

    def __init__(self, joint_names: Sequence[str], allow_extra_joints: bool = False,
                 bounds: Bounds | None = None) -> None:
        self.joint_names = tuple(joint_names)
        self.allow_extra_joints = bool(allow_extra_joints)
        self.bounds = bounds or Bounds()
        self._cache_key: tuple[str, ...] | None = None
        self._cache_idx: np.ndarray | None = None

    def _index(self, names: tuple[str, ...]) -> np.ndarray:
        if names == self._cache_key and self._cache_idx is not None:
            return self._cache_idx
        if len(set(names)) != len(names):
            raise RejectedMessage("wrong_size", f"JointState names repeat a joint: {list(names)[:20]}")
        where = {nm: i for i, nm in enumerate(names)}
        missing = [j for j in self.joint_names if j not in where]
        if missing:
            raise RejectedMessage("missing_joint", f"JointState names {list(names)[:20]} lack arm joint(s) {missing}")
        if not self.allow_extra_joints:
            unknown = [nm for nm in names if nm not in self.joint_names]
            if unknown:
                raise RejectedMessage(
                    "unknown_joint",
                    f"JointState names unknown joint(s) {unknown[:20]}; arm joints are {list(self.joint_names)}",
                )
        idx = np.array([where[j] for j in self.joint_names], dtype=np.int64)
        self._cache_key, self._cache_idx = names, idx
        return idx

    def validate(self, names: Sequence[str], position: Sequence[float],
                 velocity: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Return (q [n], qd [n]) in arm joint order, or raise RejectedMessage."""
        names = tuple(names)
        m = len(names)
        if len(position) != m:
            raise RejectedMessage("wrong_size", f"JointState has {m} names but {len(position)} positions")
        if len(velocity) != m:
            raise RejectedMessage("wrong_size", f"JointState has {m} names but {len(velocity)} velocities")
        idx = self._index(names)
        q = check_finite(np.asarray(position, dtype=np.float64)[idx], "JointState position", self.bounds.position)
        qd = check_finite(np.asarray(velocity, dtype=np.float64)[idx], "JointState velocity", self.bounds.velocity)
        return q, qd


@dataclass(frozen=True)
class ArmState:
    """One accepted joint state, in arm joint order.

    q, qd: [n] (finite, within the plausibility bounds); stamp_ns: header stamp (>= 0);
    fresh_at: clock time (s) at which this stamp arrived; seq: count of accepted new stamps
    (grows by one per new state); epoch: the stamp gate's timeline (stamps only compare within one).
    """

    q: np.ndarray
    qd: np.ndarray
    stamp_ns: int
    fresh_at: float
    seq: int
    epoch: int


@dataclass(frozen=True)
class Stamped3:
    """An accepted /goal or /ee_pose position: value [3] (m), stamp, arrival, seq, epoch as ArmState."""

    value: np.ndarray
    stamp_ns: int
    fresh_at: float
    seq: int
    epoch: int


class ResetStatus(enum.Enum):
    """Where the node's call of the reset service stands (simulated arms)."""

    NOT_CALLED = "not_called"
    UNAVAILABLE = "unavailable"  # the service is not offered (yet)
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Inputs:
    """Everything the controller reads in one step.

    state, ee, goal: the latest accepted messages (None before the first).
    wall: a monotonic clock (s) for deadlines that must pass while simulated time stands still.
    reset: (request id, status) of the reset call the controller asked for with `Command.call_reset`.
    """

    state: ArmState | None
    ee: Stamped3 | None
    goal: Stamped3 | None
    wall: float = 0.0
    reset: tuple[int, ResetStatus] = (0, ResetStatus.NOT_CALLED)


class InputCache:
    """Validates incoming messages and keeps the latest accepted ones (module docstring).

    Callers: one thread per method at a time (the node's executor); `snapshot()` from any thread.
    Each `on_*` method returns True when the message brought a newer stamp, False for a repeat,
    and raises RejectedMessage (already counted in `rejects`) when it must not be used.
    """

    def __init__(self, joint_names: Sequence[str], allow_extra_joints: bool = False, bounds: Bounds | None = None,
                 max_stamp_ahead: float = 5.0, resync_after: float = 0.25,
                 topics: tuple[str, str, str] = ("joint_states", "ee_pose", "goal"),
                 forward_kinematics: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.bounds = bounds or Bounds()
        #: q [n] -> end-effector position [3]: when given, every accepted joint state also sets the
        #: end-effector position (same stamp) and /ee_pose messages are not needed
        self.forward_kinematics = forward_kinematics
        self.topics = topics
        self.validator = JointStateValidator(joint_names, allow_extra_joints, self.bounds)
        self.gates = {t: StampGate(t, max_stamp_ahead, resync_after) for t in topics}
        self.rejects = RejectCounter()
        self.state: ArmState | None = None
        self.ee: Stamped3 | None = None
        self.goal: Stamped3 | None = None
        self._seq = {t: 0 for t in topics}
        self._pair_lock = threading.Lock()  # state and its forward-kinematics ee are read and replaced together

    def set_resync_after(self, seconds: float) -> None:
        """Follow a live change of state_timeout (the out-of-order run that starts a new timeline)."""
        for g in self.gates.values():
            g.resync_after = float(seconds)

    def _gate(self, topic: str, stamp_ns: int, now: float) -> bool:
        try:
            return self.gates[topic].check(stamp_ns, now)
        except RejectedMessage as exc:
            self.rejects.add(topic, exc.reason)
            raise

    def on_joint_state(self, names: Sequence[str], position: Sequence[float], velocity: Sequence[float],
                       stamp_ns: int, now: float) -> bool:
        topic = self.topics[0]
        try:
            q, qd = self.validator.validate(names, position, velocity)
        except RejectedMessage as exc:
            self.rejects.add(topic, exc.reason)
            raise
        if not self._gate(topic, stamp_ns, now):
            return False
        self._seq[topic] += 1
        state = ArmState(q, qd, int(stamp_ns), float(now), self._seq[topic], self.gates[topic].epoch)
        if self.forward_kinematics is None:
            self.state = state
            return True
        # the pair is replaced at once: a snapshot taken meanwhile (the control thread) gets the previous
        # state with its own end-effector position, never a new state with the old one
        ee = Stamped3(np.asarray(self.forward_kinematics(q), dtype=np.float64), int(stamp_ns), float(now),
                      state.seq, state.epoch)
        with self._pair_lock:
            self.state, self.ee = state, ee
        return True

    def _on_vec3(self, topic: str, xyz: Sequence[float], stamp_ns: int, now: float,
                 cached: Stamped3 | None = None) -> Stamped3 | None:
        """A validated point; None for a repeated stamp, unless `cached` is given and the point differs."""
        try:
            v = check_finite(xyz, topic, self.bounds.cartesian)
        except RejectedMessage as exc:
            self.rejects.add(topic, exc.reason)
            raise
        if not self._gate(topic, stamp_ns, now) and (cached is None or np.array_equal(v, cached.value)):
            return None
        self._seq[topic] += 1
        return Stamped3(v, int(stamp_ns), float(now), self._seq[topic], self.gates[topic].epoch)

    def on_ee_pose(self, xyz: Sequence[float], stamp_ns: int, now: float) -> bool:
        v = self._on_vec3(self.topics[1], xyz, stamp_ns, now)
        if v is not None:
            self.ee = v
        return v is not None

    def on_goal(self, xyz: Sequence[float], stamp_ns: int, now: float) -> bool:
        v = self._on_vec3(self.topics[2], xyz, stamp_ns, now, cached=self.goal)
        if v is not None:
            self.goal = v
        return v is not None

    def snapshot(self, wall: float = 0.0, reset: tuple[int, ResetStatus] = (0, ResetStatus.NOT_CALLED)) -> Inputs:
        with self._pair_lock:
            state, ee = self.state, self.ee
        return Inputs(state, ee, self.goal, wall, reset)
