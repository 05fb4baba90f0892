"""mbpo_ros.learner: MBPO run beside the control loop, in a supervised child process.

- ``ring``: the shared-memory transition ring and its record codec (``Transition``)
- ``messages``: the typed commands and events between supervisor and worker
- ``worker``: the child's loop (MBPO, checkpoint load, log replay, ``WorkerOptions``)
- ``supervisor``: ``TrainerProcess`` (the control side: submit, snapshots, checkpoints, restarts)
- ``log_ids``: ``IdSet``, which logged transitions a learner holds

Importing this package imports neither torch nor the worker.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainerProcess": "supervisor",
    "RestartPolicy": "supervisor",
    "LearnerHealth": "supervisor",
    "WorkerOptions": "worker",
    "Transition": "ring",
    "IdSet": "log_ids",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mbpo_ros.learner' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
