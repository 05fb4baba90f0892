"""mbpo_ros.io: checkpoints, metrics and the MCAP transition log.

Names are imported lazily, so ``from mbpo_ros.io.transition_log import TransitionLog``
(used on the control side) does not pay for importing torch.

- ``checkpoint``: ``save_checkpoint``, ``load_checkpoint``, ``latest_checkpoint``,
  ``flatten_state_dict``, ``unflatten_state_dict``, ``CheckpointError``
- ``metrics``: ``MetricsLogger``, ``Progress``
- ``transition_log``: ``TransitionLog``, ``read_transitions``
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "latest_checkpoint": "checkpoint",
    "is_checkpoint": "checkpoint",
    "flatten_state_dict": "checkpoint",
    "unflatten_state_dict": "checkpoint",
    "CheckpointError": "checkpoint",
    "MetricsLogger": "metrics",
    "Progress": "metrics",
    "TransitionLog": "transition_log",
    "read_transitions": "transition_log",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mbpo_ros.io' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
