"""One logging channel per node process: Python's ``logging`` (what io/, learner/ and sim/ use) goes
to the node's ROS logger, so its records reach the console, the log files and ``/rosout`` like the
node's own, with the node's name and ROS's severity.

``route_python_logging(node)`` installs the handler on the ``mbpo_ros`` logger (INFO and up), once.
"""

from __future__ import annotations

import logging

__all__ = ["RosLogHandler", "route_python_logging"]


class RosLogHandler(logging.Handler):
    """A logging.Handler that hands each record to an rclpy logger at the matching severity."""

    def __init__(self, ros_logger) -> None:
        super().__init__()
        self.ros_logger = ros_logger
        self.setFormatter(logging.Formatter("[%(name)s] %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.CRITICAL:
                self.ros_logger.fatal(text)
            elif record.levelno >= logging.ERROR:
                self.ros_logger.error(text)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(text)
            elif record.levelno >= logging.INFO:
                self.ros_logger.info(text)
            else:
                self.ros_logger.debug(text)
        except Exception:  # noqa: BLE001 - logging.Handler's contract: report, never raise into the caller
            self.handleError(record)


def route_python_logging(node, root: str = "mbpo_ros", level: int = logging.INFO) -> RosLogHandler:
    """Send the ``root`` Python logger's records (and its children's: ``mbpo_ros.io.transition_log``,
    ...) to ``node.get_logger()`` instead of stderr; replaces a handler installed earlier."""
    logger = logging.getLogger(root)
    for h in list(logger.handlers):
        if isinstance(h, RosLogHandler):
            logger.removeHandler(h)
    handler = RosLogHandler(node.get_logger())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # one channel: not also to the root logger's stderr handler
    return handler
