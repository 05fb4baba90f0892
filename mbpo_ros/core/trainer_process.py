"""Moved to :mod:`mbpo_ros.learner` (issue 11). This name stays only until agent_node imports
``mbpo_ros.learner.supervisor`` directly; it will be removed then. New code: import from
``mbpo_ros.learner``."""

from mbpo_ros.learner.supervisor import CHECKPOINT_DIRNAME, TrainerProcess  # noqa: F401
from mbpo_ros.learner.worker import WorkerOptions  # noqa: F401
