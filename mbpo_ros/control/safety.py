"""What may reach the arm: joint limits, command shaping, the watchdog and the e-stop (pure NumPy).

- `JointLimits`: position and velocity limits of the arm, per joint.
- `CommandShaper`: every command that leaves the agent goes through it (policy commands, repeats,
  stop commands): velocity commands are clipped to the velocity limits, rate-limited and cut by the
  position guard; position targets are clipped inside the position limits and step-limited.
- `check_stop_action`: `zero` is the only stop of a velocity interface, `hold` (hold the measured
  position) the only stop of a position interface.
- `Watchdog`: stale when no state with a NEWER stamp arrived for `timeout` seconds.
- `EStop`: latched emergency stop (engage latches, only an explicit release clears it).

Times are plain float seconds of whatever clock the caller uses (ROS time in the node), so the
logic runs the same in wall-clock and simulated time.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STOP_ACTIONS = ("hold", "zero")
COMMAND_INTERFACES = ("velocity", "position")
#: the one stop action valid for each command interface
STOP_FOR_INTERFACE = {"velocity": "zero", "position": "hold"}


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
            arr = arr.copy()
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


def check_margin(limits: JointLimits, position_margin: float) -> float:
    """`position_margin` as a float, or ValueError when it leaves no room inside a joint's range."""
    margin = float(position_margin)
    if not (margin >= 0.0 and math.isfinite(margin)):
        raise ValueError(f"position_margin = {position_margin} must be a finite number >= 0")
    span = limits.upper - limits.lower
    if np.any(2 * margin >= span):
        j = int(np.argmin(span))
        raise ValueError(
            f"position_margin {margin} leaves no room inside joint '{limits.names[j]}' "
            f"(range {float(span[j]):.3f})"
        )
    return margin


class CommandShaper:
    """Makes any requested command safe for the arm before it is published.

    Velocity commands (`interface="velocity"`), in this order:
      1. clip |v| <= velocity limit;
      2. rate-limit |v - v_prev| <= max_velocity_step (v_prev = the last command sent);
      3. position guard: scale down, down to zero, any velocity that would carry a joint past
         its position limit minus `position_margin` within one step (`q + v*dt`). The guard
         only moves a velocity toward zero and comes last, so it wins over the rate limit: near
         a limit, stopping beats smoothness. A joint at or beyond a limit may only move back.
    Position commands (`interface="position"`):
      1. clip the target into [lower + margin, upper - margin];
      2. limit the step from the previous target (or from the measured position when there is
         none) to velocity limit * dt per joint.

    Stop commands go through the same object: `zero()` (velocity interface: zeros, always allowed:
    moving toward zero is exempt from the rate limit) and `hold(q)` (position interface: the
    measured position, clipped inside the limits and step-limited from it).
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
        self.position_margin = check_margin(limits, position_margin)
        self.max_velocity_step = float(max_velocity_step)
        if not (self.max_velocity_step > 0 and math.isfinite(self.max_velocity_step)):
            raise ValueError(f"max_velocity_step = {self.max_velocity_step} must be > 0")
        self._last: np.ndarray | None = None

    @property
    def last(self) -> np.ndarray | None:
        """The last command returned ([n]), or None before the first."""
        return None if self._last is None else self._last.copy()

    def reset(self, last: np.ndarray | None = None) -> None:
        """Forget (or set) the previous command that the rate or step limit starts from."""
        self._last = None if last is None else self._checked(last, "reset command").copy()

    def _checked(self, values: np.ndarray | Sequence[float], what: str) -> np.ndarray:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        if arr.shape[0] != self.limits.n:
            raise ValueError(f"{what} has {arr.shape[0]} values, arm has {self.limits.n} joints")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what} has a NaN or Inf value: {arr.tolist()}")
        return arr

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.limits.lower + self.position_margin, self.limits.upper - self.position_margin

    def shape(self, command: np.ndarray, q: np.ndarray, dt: float) -> np.ndarray:
        """Return the safe version of `command` ([n]) given measured positions `q` ([n]).

        dt: control period in seconds (> 0). Raises ValueError on NaN/Inf or wrong sizes.
        """
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"control period dt = {dt} must be a positive number of seconds")
        cmd = self._checked(command, "command")
        q = self._checked(q, "joint positions")
        lim = self.limits
        lo, hi = self._bounds()
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

    def zero(self) -> np.ndarray:
        """Velocity interface stop: all zeros (the arm stops). Refused on a position interface."""
        if self.interface != "velocity":
            raise ValueError("a zero command on a position interface would command every joint to 0 rad")
        self._last = np.zeros(self.limits.n)
        return self._last.copy()

    def hold(self, q: np.ndarray, dt: float) -> np.ndarray:
        """Position interface stop: hold the measured position `q` ([n]).

        The target is `q` clipped inside [lower + margin, upper - margin] and at most velocity * dt
        away from `q`, so a joint found beyond a limit is walked back, never pushed further out.
        Refused on a velocity interface (there, holding a command is motion).
        """
        if self.interface != "position":
            raise ValueError("hold on a velocity interface repeats a velocity: the arm keeps moving; use zero")
        q = self._checked(q, "joint positions")
        lo, hi = self._bounds()
        step = self.limits.velocity * dt
        out = q + np.clip(np.clip(q, lo, hi) - q, -step, step)
        self._last = out
        return out.copy()


def check_stop_action(name: str, mode: str, interface: str) -> None:
    """Refuse a stop action that would move the arm.

    `zero` on a position interface means 0 rad for every joint; `hold` on a velocity interface
    repeats the last velocity (the arm keeps moving). Raises ValueError with the reason.
    """
    if mode not in STOP_ACTIONS:
        raise ValueError(f"{name} = '{mode}' is not one of {list(STOP_ACTIONS)}")
    if interface not in COMMAND_INTERFACES:
        raise ValueError(f"command_interface '{interface}' is not one of {list(COMMAND_INTERFACES)}")
    if mode != STOP_FOR_INTERFACE[interface]:
        why = ("would command every joint to 0 rad" if interface == "position"
               else "would repeat the last velocity: the arm keeps moving")
        raise ValueError(
            f"{name} = '{mode}' with command_interface '{interface}' {why}; "
            f"use '{STOP_FOR_INTERFACE[interface]}' with {interface} commands"
        )


class Watchdog:
    """Stale-state detection: stale when no state with a newer stamp arrived for `timeout` s.

    `check(fresh_at, now)`: `fresh_at` is the clock time at which the newest stamp arrived (None:
    none yet). A repeated or frozen stamp does not refresh it, so a publisher whose stamps stop
    advancing goes stale like a silent one. A `fresh_at` later than `now` (the clock went back) is
    stale too: nothing says how old that state is. Counts a trip on each fresh -> stale change.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = check_timeout(timeout)
        self._age = math.inf
        self._stale = True
        self._seen = False
        self.trips = 0

    def check(self, fresh_at: float | None, now: float) -> bool:
        """True while stale."""
        self._age = math.inf if fresh_at is None else float(now) - float(fresh_at)
        stale = not (0.0 <= self._age <= self.timeout)
        if stale and not self._stale and self._seen:
            self.trips += 1
        self._seen = self._seen or fresh_at is not None
        self._stale = stale
        return stale

    @property
    def age(self) -> float:
        """Seconds since the newest stamp arrived, at the last `check` (inf before the first state)."""
        return self._age

    @property
    def stale(self) -> bool:
        """Result of the last `check`."""
        return self._stale


def check_timeout(timeout: float) -> float:
    """`state_timeout` as a float, or ValueError unless it is a positive finite number of seconds."""
    t = float(timeout)
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"state_timeout = {timeout} must be > 0 seconds")
    return t


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
