"""The MBPO training schedule: when the model is retrained and how many SAC updates are owed.

One rule, used by the synchronous loop (:meth:`MBPO.step`, one call per env step) and by the
asynchronous learner (:meth:`MBPO.work`, one bounded piece of work per call, decoupled from the
arrival of transitions). Pure functions of the counters, so property tests drive them directly.

- Nothing is trained before ``first_trained_step`` env steps: ``max(init_random_steps, 1)`` (the
  paper), or ``learning_starts`` when that is set (> 0): training on the random data can then start
  while the arm still explores at random, so the first policy to act has trained for longer.
- The model is retrained (and rolled out) every ``model_train_freq`` env steps, the first time at
  once when training starts.
- Every env step from the first trained one on owes ``utd`` SAC updates: after ``env_steps``
  steps, ``utd * (env_steps - first_trained_step + 1)`` in total (the synchronous loop
  does exactly ``utd`` per step; the asynchronous one catches up in chunks).
- Asynchronous only: when the learner cannot keep up, a due retrain also waits until SAC has done
  the ``utd * model_train_freq`` updates a synchronous loop does between two retrains (or has
  caught up), so retraining never starves SAC: both lag in the synchronous ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mbpo_ros.core.config import MBPOConfig

__all__ = ["Counters", "Work", "first_trained_step", "training_started", "retrain_due", "updates_owed", "next_work"]


@dataclass(frozen=True)
class Counters:
    """The learner's progress (checkpointed by MBPO)."""

    env_steps: int
    sac_updates: int
    model_trains: int
    last_model_train_step: int
    """env step of the last retrain (or skipped retrain); -1 before the first"""


@dataclass(frozen=True)
class Work:
    """One bounded piece of asynchronous work: retrain the model, ``updates`` SAC updates, or nothing."""

    kind: Literal["idle", "retrain", "update"]
    updates: int = 0


def first_trained_step(m: MBPOConfig) -> int:
    """The env step at which training starts: ``learning_starts`` if set (> 0), else the end of the
    random steps (at least 1)."""
    return max(int(m.learning_starts) if int(m.learning_starts) > 0 else int(m.init_random_steps), 1)


def training_started(c: Counters, m: MBPOConfig) -> bool:
    return c.env_steps >= first_trained_step(m)


def retrain_due(c: Counters, m: MBPOConfig) -> bool:
    """True when the model is to be retrained now (first time: as soon as training starts)."""
    if not training_started(c, m):
        return False
    return c.last_model_train_step < 0 or c.env_steps - c.last_model_train_step >= int(m.model_train_freq)


def updates_owed(c: Counters, m: MBPOConfig) -> int:
    """SAC updates still due for the env steps seen so far (0 before training starts)."""
    if not training_started(c, m):
        return 0
    return max(0, int(m.utd) * (c.env_steps - first_trained_step(m) + 1) - c.sac_updates)


def next_work(c: Counters, m: MBPOConfig, updates_at_retrain: int | None, chunk: int) -> Work:
    """The asynchronous learner's next piece of work.

    updates_at_retrain: ``sac_updates`` at this session's last retrain (None: none yet).
    chunk: most SAC updates in one piece (bounds how long the learner is away from its inbox).
    """
    if not training_started(c, m):
        return Work("idle")
    owed = updates_owed(c, m)
    if retrain_due(c, m):
        between = int(m.utd) * int(m.model_train_freq)
        if updates_at_retrain is None or owed <= 0 or c.sac_updates - updates_at_retrain >= between:
            return Work("retrain")
    if owed <= 0:
        return Work("idle")
    return Work("update", min(owed, int(chunk)))
