"""Typed messages between the supervisor (control process) and the worker (learner child).

Sent over multiprocessing pipes (pickled dataclasses of plain data and NumPy arrays); the
transitions themselves travel through the shared-memory ring (learner/ring.py), not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Pause", "CheckpointRequest", "CloseRequest", "Command",
    "Ready", "Snapshot", "Ack", "Stats", "CheckpointDone", "Closed", "Failed", "Event",
]

# ----------------------------------------------------------------------------- supervisor -> worker


@dataclass(frozen=True)
class Pause:
    """Pause (True) or resume (False) training; transitions are still taken in while paused."""

    paused: bool


@dataclass(frozen=True)
class CheckpointRequest:
    """Write run_dir/checkpoint once ``drain_to`` transitions of this ring have arrived.

    durable_log_id: the newest log id the transition log has written to the OS; transitions with a
    newer log id are left out of the checkpoint (the log replays them after a crash). None: no log.
    """

    req_id: int
    drain_to: int
    durable_log_id: int | None = None


@dataclass(frozen=True)
class CloseRequest:
    """Drain up to ``drain_to``, write the final checkpoint if ``checkpoint``, then exit."""

    checkpoint: bool
    drain_to: int
    durable_log_id: int | None = None


Command = Pause | CheckpointRequest | CloseRequest

# ----------------------------------------------------------------------------- worker -> supervisor


@dataclass(frozen=True)
class Ready:
    """The worker loaded its checkpoint, replayed the log and sent its first snapshot."""

    resumed: bool
    env_steps: int
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """A new policy (PolicySnapshot.to_arrays()) after a chunk of SAC updates."""

    seq: int
    env_steps: int
    arrays: dict[str, np.ndarray]
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ack:
    """Transitions up to ``env_steps`` were added (lock-step: and trained, with the new snapshot)."""

    env_steps: int
    snapshot: Snapshot | None = None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stats:
    stats: dict[str, Any]


@dataclass(frozen=True)
class CheckpointDone:
    """Answer to a CheckpointRequest: the path written, or the error (the previous one is kept)."""

    req_id: int
    path: str
    error: str | None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Closed:
    """Answer to a CloseRequest, sent just before the worker exits."""

    path: str
    error: str | None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    """The worker raised; its traceback text. It exits right after."""

    text: str


Event = Ready | Snapshot | Ack | Stats | CheckpointDone | Closed | Failed
