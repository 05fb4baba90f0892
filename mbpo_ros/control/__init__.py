"""The agent's decisions without ROS (no rclpy here): validation, watchdog, episodes, safety shaping.

    inputs.py      RejectedMessage, Bounds, StampGate, JointStateValidator, InputCache -> Inputs
    safety.py      JointLimits, CommandShaper, check_stop_action, Watchdog, EStop
    timing.py      ClockMonitor (clock jumps), PeriodStats (loop rate and jitter)
    episodes.py    goal sources (topic | task: TaskGoals), EpisodeStart, EpisodeSummary, EndReason, announcements
    controller.py  Controller.step(inputs, now) -> Command; Phase, Transition, Learner

nodes/agent_node.py wires a Controller to ROS; docs/safety.md is the safety case.
"""

from mbpo_ros.control.controller import (
    Command,
    Controller,
    ControllerConfig,
    Event,
    Learner,
    Phase,
    Reason,
    Transition,
)
from mbpo_ros.control.episodes import GOAL_SOURCES, EndReason, EpisodeStart, EpisodeSummary, TaskGoals
from mbpo_ros.control.inputs import (
    ArmState,
    Bounds,
    InputCache,
    Inputs,
    RejectedMessage,
    ResetStatus,
    Stamped3,
)
from mbpo_ros.control.safety import CommandShaper, EStop, JointLimits, Watchdog, check_stop_action
from mbpo_ros.control.timing import ClockJump, ClockMonitor, PeriodStats

__all__ = [
    "ArmState", "Bounds", "ClockJump", "ClockMonitor", "Command", "CommandShaper", "Controller",
    "ControllerConfig", "EStop", "EndReason", "EpisodeStart", "EpisodeSummary", "Event", "GOAL_SOURCES",
    "InputCache", "Inputs", "JointLimits", "Learner", "PeriodStats", "Phase", "Reason", "RejectedMessage",
    "ResetStatus", "Stamped3", "TaskGoals", "Transition", "Watchdog", "check_stop_action",
]
