"""Time as the controller sees it: clock-jump detection and control-loop period statistics."""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClockJump:
    """The node's clock moved backwards (`seconds` < 0) or forwards by more than the bound."""

    before: float
    after: float

    @property
    def seconds(self) -> float:
        return self.after - self.before

    def __str__(self) -> str:
        way = "back" if self.seconds < 0 else "forward"
        return f"clock jumped {way} by {abs(self.seconds):.3f} s ({self.before:.3f} s -> {self.after:.3f} s)"


class ClockMonitor:
    """Detects clock jumps between two control steps.

    A step is a jump when the clock went backwards (a simulator reset under use_sim_time, a
    system clock step) or forwards by more than `max_forward` seconds (None: forward steps are
    never jumps, as in lock-step where time waits for the learner). A clock that starts from 0
    (simulated time before the first /clock message) is not a jump.
    """

    def __init__(self, max_forward: float | None) -> None:
        if max_forward is not None and not (max_forward > 0 and math.isfinite(max_forward)):
            raise ValueError(f"max_clock_step = {max_forward} must be a positive number of seconds")
        self.max_forward = max_forward
        self.last: float | None = None
        self.jumps = 0
        self.last_jump: ClockJump | None = None

    def update(self, now: float) -> ClockJump | None:
        """Note the clock at a control step; returns the jump since the previous step, if any."""
        before, self.last = self.last, float(now)
        if before is None or before == 0.0:
            return None
        d = now - before
        if d < 0 or (self.max_forward is not None and d > self.max_forward):
            self.jumps += 1
            self.last_jump = ClockJump(before, float(now))
            return self.last_jump
        return None


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
            if self._last is not None and t >= self._last:
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
                "n": int(p.size)}

    def status(self, control_rate: float, check_rate: bool = True, **extra) -> tuple[str, str, dict]:
        """(level "OK" | "WARN", message, values) of the control loop on /diagnostics: WARN below 90 % of
        `control_rate` (when `check_rate`: not in lock-step, where the rate follows the simulation)."""
        s = self.summary()
        slow = check_rate and s["n"] > 0 and s["rate_hz"] < 0.9 * control_rate
        values = {"target_rate_hz": control_rate, "rate_hz": f"{s['rate_hz']:.3f}",
                  "period_mean_ms": f"{s['period_mean_ms']:.3f}", "jitter_ms": f"{s['jitter_ms']:.3f}",
                  **{f"period_err_{k}_ms": f"{s[f'err_{k}_ms']:.3f}" for k in ("p50", "p99", "max")},
                  "ticks": self.ticks, **{f"step_{k}_ms": f"{s[f'work_{k}_ms']:.3f}" for k in ("p50", "p99", "max")},
                  "lockstep": not check_rate, **extra}
        message = f"{s['rate_hz']:.1f} Hz" + (f", below {control_rate:g} Hz" if slow else "")
        return ("WARN" if slow else "OK"), message, values
