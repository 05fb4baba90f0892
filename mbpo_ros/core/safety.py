"""Safety logic of the agent: pure NumPy, no ROS, unit-tested on its own.

The agent node wires these parts; everything that decides what reaches the arm lives here:

- `JointLimits`: position and velocity limits of the arm, per joint.
- `CommandShaper`: clips a command to the joint limits and rate-limits its change per step
  (velocity or position commands, the two ros2_control forward-command interfaces).
- `Watchdog`: "no valid state for `timeout` seconds" detection.
- `EStop`: latched emergency stop (engage latches, only an explicit release clears it).
- `JointStateValidator` / `StampOrder` / `check_finite`: input validation; a rejected message
  raises `RejectedMessage` with a reason code (counted by `RejectCounter`) and never reaches
  the learner.
- `PeriodStats`: achieved control rate and period jitter of the control loop.

Times are plain float seconds from whatever clock the caller uses (ROS time in the node), so
the logic runs the same in wall-clock and simulated time.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STOP_ACTIONS = ("hold", "zero")
COMMAND_INTERFACES = ("velocity", "position")


@dataclass(frozen=True)
class JointLimits:
    """Per-joint limits of the arm.

    names: joint names, in command order (n joints).
    lower, upper: position limits [n] (rad or m).
    velocity: velocity limits [n] (rad/s or m/s), > 0.
    """

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0:
            raise ValueError("joint_names is empty: the arm needs at least one joint")
        if len(set(self.names)) != n:
            raise ValueError(f"joint_names has duplicates: {list(self.names)}")
        for field in ("lower", "upper", "velocity"):
            arr = np.asarray(getattr(self, field), dtype=np.float64).reshape(-1)
            if arr.shape[0] != n:
                raise ValueError(f"joint limit '{field}' has {arr.shape[0]} values, the arm has {n} joints")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"joint limit '{field}' has a NaN or Inf value: {arr.tolist()}")
            arr.setflags(write=False)
            object.__setattr__(self, field, arr)
        bad = np.nonzero(self.lower >= self.upper)[0]
        if bad.size:
            j = int(bad[0])
            raise ValueError(
                f"joint '{self.names[j]}': lower position limit {self.lower[j]} is not below "
                f"the upper limit {self.upper[j]}"
            )
        bad = np.nonzero(self.velocity <= 0)[0]
        if bad.size:
            j = int(bad[0])
            raise ValueError(f"joint '{self.names[j]}': velocity limit {self.velocity[j]} must be > 0")

    @property
    def n(self) -> int:
        """Number of joints."""
        return len(self.names)


class CommandShaper:
    """Makes any requested command safe for the arm before it is published.

    Velocity commands (`interface="velocity"`), in this order:
      1. clip |v| <= velocity limit;
      2. rate-limit |v - v_prev| <= max_velocity_step (v_prev = the last command sent);
      3. position guard: scale down, down to zero, any velocity that would carry a joint past
         its position limit minus `position_margin` within one step (`q + v*dt`). The guard
         comes last so it wins over the rate limit: near a limit, stopping beats smoothness.
    Position commands (`interface="position"`):
      1. clip the target into [lower + margin, upper - margin];
      2. limit the step from the previous target (or from the measured position when there is
         none) to velocity limit * dt per joint.

    `stop(mode, q)` gives the command used while stale or e-stopped: "zero" sends zeros
    (velocity interface: the arm stops), "hold" repeats the last command sent (position
    interface: the arm stays at its last target). It is not rate-limited.
    """

    def __init__(
        self,
        limits: JointLimits,
        interface: str = "velocity",
        position_margin: float = 0.05,
        max_velocity_step: float = 0.5,
    ) -> None:
        if interface not in COMMAND_INTERFACES:
            raise ValueError(f"command_interface '{interface}' is not one of {list(COMMAND_INTERFACES)}")
        self.limits = limits
        self.interface = interface
        self.position_margin = float(position_margin)
        self.max_velocity_step = float(max_velocity_step)
        span = limits.upper - limits.lower
        if np.any(2 * self.position_margin >= span):
            raise ValueError(
                f"position_margin {self.position_margin} leaves no room inside the joint range "
                f"(smallest range {float(span.min()):.3f})"
            )
        if self.max_velocity_step <= 0:
            raise ValueError(f"max_velocity_step = {self.max_velocity_step} must be > 0")
        self._last: np.ndarray | None = None

    @property
    def last(self) -> np.ndarray | None:
        """The last command returned by `shape` or `stop` ([n]), or None before the first."""
        return None if self._last is None else self._last.copy()

    def reset(self, last: np.ndarray | None = None) -> None:
        """Forget (or set) the previous command that the rate limit starts from."""
        self._last = None if last is None else self._checked(last, "reset command").copy()

    def _checked(self, values: np.ndarray | Sequence[float], what: str) -> np.ndarray:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        if arr.shape[0] != self.limits.n:
            raise ValueError(f"{what} has {arr.shape[0]} values, arm has {self.limits.n} joints")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what} has a NaN or Inf value: {arr.tolist()}")
        return arr

    def shape(self, command: np.ndarray, q: np.ndarray, dt: float) -> np.ndarray:
        """Return the safe version of `command` ([n]) given measured positions `q` ([n]).

        dt: control period in seconds (> 0). Raises ValueError on NaN/Inf or wrong sizes.
        """
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"control period dt = {dt} must be a positive number of seconds")
        cmd = self._checked(command, "command")
        q = self._checked(q, "joint positions")
        lim = self.limits
        lo = lim.lower + self.position_margin
        hi = lim.upper - self.position_margin
        if self.interface == "velocity":
            v = np.clip(cmd, -lim.velocity, lim.velocity)
            if self._last is not None:
                dv = np.clip(v - self._last, -self.max_velocity_step, self.max_velocity_step)
                v = self._last + dv
            v_max = np.maximum(0.0, (hi - q) / dt)
            v_min = np.minimum(0.0, (lo - q) / dt)
            out = np.clip(v, v_min, v_max)
        else:
            target = np.clip(cmd, lo, hi)
            prev = self._last if self._last is not None else np.clip(q, lo, hi)
            step = lim.velocity * dt
            out = np.clip(prev + np.clip(target - prev, -step, step), lo, hi)
        self._last = out
        return out.copy()

    def stop(self, mode: str, q: np.ndarray | None = None) -> np.ndarray | None:
        """Command while stale or e-stopped: "zero" -> zeros, "hold" -> the last command sent.

        With "hold" and nothing sent yet: zeros for velocity, the measured `q` for position, and
        None (send nothing: no position target is known to be safe) when `q` is unknown too.
        """
        if mode not in STOP_ACTIONS:
            raise ValueError(f"stop action '{mode}' is not one of {list(STOP_ACTIONS)}")
        n = self.limits.n
        if mode == "zero":
            out = np.zeros(n)
        elif self._last is not None:
            out = self._last.copy()
        elif self.interface == "position":
            if q is None:
                return None
            out = self._checked(q, "joint positions").copy()
        else:
            out = np.zeros(n)
        self._last = out
        return out.copy()


def check_stop_action(name: str, mode: str, interface: str) -> None:
    """Refuse a stop action that would move the arm: "zero" on a position interface means 0 rad."""
    if mode not in STOP_ACTIONS:
        raise ValueError(f"{name} = '{mode}' is not one of {list(STOP_ACTIONS)}")
    if mode == "zero" and interface == "position":
        raise ValueError(
            f"{name} = 'zero' with command_interface 'position' would command every joint to 0; "
            "use 'hold' with position commands"
        )


class Watchdog:
    """Stale-state detection: stale when no valid state arrived for more than `timeout` s.

    Stale before the first `feed`. `check(now)` also counts stale episodes (`trips`) so the
    caller can log once per transition.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = float(timeout)
        if not self.timeout > 0:
            raise ValueError(f"state_timeout = {timeout} must be > 0 seconds")
        self._last_feed: float | None = None
        self._stale = True
        self.trips = 0

    def feed(self, now: float) -> None:
        """A valid state arrived at time `now` (seconds)."""
        self._last_feed = float(now)

    def age(self, now: float) -> float:
        """Seconds since the last valid state (inf before the first)."""
        return math.inf if self._last_feed is None else float(now) - self._last_feed

    def check(self, now: float) -> bool:
        """True while stale. Counts a trip on each fresh -> stale transition."""
        stale = self.age(now) > self.timeout
        if stale and not self._stale and self._last_feed is not None:
            self.trips += 1
        self._stale = stale
        return stale

    @property
    def stale(self) -> bool:
        """Result of the last `check`."""
        return self._stale


class EStop:
    """Latched emergency stop: `engage` latches until `release`. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engaged = False
        self.reason = ""
        self.count = 0

    def engage(self, reason: str = "requested") -> bool:
        """Latch the e-stop; returns True when it was not engaged before."""
        with self._lock:
            was = self._engaged
            self._engaged = True
            self.reason = reason
            if not was:
                self.count += 1
            return not was

    def release(self) -> bool:
        """Release the latch; returns True when it was engaged."""
        with self._lock:
            was = self._engaged
            self._engaged = False
            self.reason = ""
            return was

    @property
    def engaged(self) -> bool:
        return self._engaged


class RejectedMessage(ValueError):
    """An input message that must not be used. `reason` is a short code for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


REJECT_REASONS = ("non_finite", "wrong_size", "unknown_joint", "missing_joint", "out_of_order")


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
        """{"<topic>/<reason>": count} (a copy)."""
        with self._lock:
            return {f"{t}:{r}": c for (t, r), c in sorted(self._counts.items())}


def check_finite(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    """float64 copy of `values`, or RejectedMessage("non_finite") naming `what`."""
    arr = np.array(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise RejectedMessage("non_finite", f"{what} has a NaN or Inf value: {arr.tolist()}")
    return arr


class StampOrder:
    """Rejects a message whose stamp is older than the newest accepted one ("out_of_order")."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.last_ns: int | None = None

    def check(self, stamp_ns: int) -> bool:
        """Raise RejectedMessage if older; return True if strictly newer, False if equal."""
        if self.last_ns is not None and stamp_ns < self.last_ns:
            raise RejectedMessage(
                "out_of_order",
                f"{self.what} stamp {stamp_ns * 1e-9:.6f} s is older than the cached "
                f"{self.last_ns * 1e-9:.6f} s",
            )
        return self.last_ns is None or stamp_ns > self.last_ns

    def accept(self, stamp_ns: int) -> None:
        self.last_ns = int(stamp_ns)


class JointStateValidator:
    """Turns a JointState's (name, position, velocity, stamp) into arm-ordered arrays.

    Matching is by joint name (JointState order is not guaranteed). Rejects (RejectedMessage):
    wrong sizes, names not covering the arm's joints (missing_joint), names the arm does not
    have (unknown_joint, unless `allow_extra_joints`), NaN/Inf in the arm's joints, and stamps
    older than the last accepted one.
    """

    def __init__(self, joint_names: Sequence[str], allow_extra_joints: bool = False) -> None:
        self.joint_names = tuple(joint_names)
        self.allow_extra_joints = bool(allow_extra_joints)
        self.order = StampOrder("joint_states")
        self._cache_key: tuple[str, ...] | None = None
        self._cache_idx: np.ndarray | None = None

    def _index(self, names: tuple[str, ...]) -> np.ndarray:
        if names == self._cache_key and self._cache_idx is not None:
            return self._cache_idx
        if len(set(names)) != len(names):
            raise RejectedMessage("wrong_size", f"JointState names repeat a joint: {list(names)}")
        where = {nm: i for i, nm in enumerate(names)}
        missing = [j for j in self.joint_names if j not in where]
        if missing:
            raise RejectedMessage(
                "missing_joint", f"JointState names {list(names)} lack arm joint(s) {missing}"
            )
        if not self.allow_extra_joints:
            unknown = [nm for nm in names if nm not in self.joint_names]
            if unknown:
                raise RejectedMessage(
                    "unknown_joint",
                    f"JointState names unknown joint(s) {unknown}; arm joints are {list(self.joint_names)}",
                )
        idx = np.array([where[j] for j in self.joint_names], dtype=np.int64)
        self._cache_key, self._cache_idx = names, idx
        return idx

    def validate(
        self,
        names: Sequence[str],
        position: Sequence[float],
        velocity: Sequence[float],
        stamp_ns: int,
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Return (q [n], qd [n], is_new_stamp) in arm joint order, or raise RejectedMessage.

        The stamp is recorded as accepted; is_new_stamp is False for a repeat of the last stamp.
        """
        names = tuple(names)
        m = len(names)
        if len(position) != m:
            raise RejectedMessage("wrong_size", f"JointState has {m} names but {len(position)} positions")
        if len(velocity) != m:
            raise RejectedMessage("wrong_size", f"JointState has {m} names but {len(velocity)} velocities")
        idx = self._index(names)
        q = check_finite(np.asarray(position, dtype=np.float64)[idx], "JointState position")
        qd = check_finite(np.asarray(velocity, dtype=np.float64)[idx], "JointState velocity")
        is_new = self.order.check(stamp_ns)
        self.order.accept(stamp_ns)
        return q, qd, is_new


class PeriodStats:
    """Rolling statistics of a periodic loop: achieved rate, period jitter, worst error.

    `tick(t)` with the loop's start time of each iteration (seconds); the window keeps the
    last `window` periods.
    """

    def __init__(self, target_period: float, window: int = 2000) -> None:
        self.target_period = float(target_period)
        self._periods: deque[float] = deque(maxlen=int(window))
        self._work: deque[float] = deque(maxlen=int(window))
        self._last: float | None = None
        self._lock = threading.Lock()
        self.ticks = 0

    def tick(self, t: float) -> None:
        with self._lock:
            if self._last is not None:
                self._periods.append(t - self._last)
            self._last = t
            self.ticks += 1

    def work(self, seconds: float) -> None:
        """Time one iteration spent computing (not sleeping)."""
        with self._lock:
            self._work.append(seconds)

    def summary(self) -> dict[str, float]:
        """{rate_hz, period_mean_ms, jitter_ms (std), err_p50_ms, err_p99_ms, err_max_ms, n,
        work_p50_ms, work_p99_ms, work_max_ms} (err: |period - target|; work: compute time per step)."""
        with self._lock:
            p = np.array(self._periods, dtype=np.float64)
            w = np.array(self._work, dtype=np.float64) * 1e3
        work = {"work_p50_ms": float(np.percentile(w, 50)) if w.size else 0.0,
                "work_p99_ms": float(np.percentile(w, 99)) if w.size else 0.0,
                "work_max_ms": float(w.max()) if w.size else 0.0}
        if p.size == 0:
            return {"rate_hz": 0.0, "period_mean_ms": 0.0, "jitter_ms": 0.0,
                    "err_p50_ms": 0.0, "err_p99_ms": 0.0, "err_max_ms": 0.0, "n": 0, **work}
        err = np.abs(p - self.target_period) * 1e3
        mean = float(p.mean())
        return {**work,
            "rate_hz": 1.0 / mean if mean > 0 else 0.0,
            "period_mean_ms": mean * 1e3,
            "jitter_ms": float(p.std() * 1e3),
            "err_p50_ms": float(np.percentile(err, 50)),
            "err_p99_ms": float(np.percentile(err, 99)),
            "err_max_ms": float(err.max()),
            "n": int(p.size),
        }
