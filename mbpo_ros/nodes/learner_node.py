"""learner_node: one MBPO learner for a fleet of arms, on any machine of the DDS domain.

Wiring diagram (every decision lives in learner/fleet.py, learner/catchup.py and learner/wire.py):

    parameters   nodes/params.py: LearnerParams + every core.config field (device: auto = CUDA when present)
    inputs       <fleet_topic>/transitions  std_msgs/UInt8MultiArray fleet frames (TRANSITIONS, HEAD) from
                 every agent_node with learner:=remote, whatever its namespace (reliable, depth 1000)
                 -> FleetLearner.on_frame -> the supervised TrainerProcess child (learner/supervisor.py)
    outputs      <fleet_topic>/policy  SNAPSHOT frames (reliable, transient local, depth 1: a late agent
                 gets the newest policy), at most every snapshot_period s
                 <fleet_topic>/gaps    GAPS frames (reliable): what the learner is missing, per arm stream
    records      <run_dir>/checkpoint (periodic, on request, at exit), holding the fleet ids it trained on
    services     ~/save_checkpoint (Trigger)
    threads      one SingleThreadedExecutor (frames, timers, services), checkpoints in a thread of their own
    diagnostics  /diagnostics: "learner_node: fleet" (arms, held, open gaps, bytes/s per arm, SAC updates/s)
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import UInt8MultiArray
from std_srvs.srv import Trigger

from mbpo_ros.learner.fleet import FleetLearner
from mbpo_ros.nodes.params import (
    declare_specs,
    learner_settings,
    learner_specs,
)
from mbpo_ros.nodes.run import run_node

NODE_NAME = "learner_node"
_LEVELS = {"OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN, "ERROR": DiagnosticStatus.ERROR}

#: QoS of the fleet topics (agent_node uses the same)
TRANSITIONS_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
GAPS_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
POLICY_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def frame_msg(data: bytes) -> UInt8MultiArray:
    msg = UInt8MultiArray()
    msg.data = data  # rosidl accepts bytes for uint8[] (copied once into its array)
    return msg


def make_trainer_factory(cfg: Any, run_dir: Path, queue_size: int):
    """The FleetLearner's trainer: a started TrainerProcess (the agent's local learner, same child)."""
    from mbpo_ros.learner import TrainerProcess
    from mbpo_ros.learner.worker import WorkerOptions

    def make(obs_dim: int, act_dim: int, task_name: str, task_kwargs: dict, resume: bool):
        tp = TrainerProcess(obs_dim, act_dim, cfg, task_name, run_dir, resume=resume, queue_size=queue_size,
                            task_kwargs=task_kwargs, options=WorkerOptions(nice=0))
        tp.start()
        return tp

    return make


class LearnerNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.p, self.cfg = p, _cfg = learner_settings(declare_specs(self, learner_specs()))
        self.run_dir = Path(p.run_dir or os.path.join("runs", NODE_NAME)).expanduser().resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.fleet = FleetLearner(self.run_dir, make_trainer_factory(_cfg, self.run_dir, p.queue_size),
                                  retry_s=p.gap_retry, max_request=p.max_request, log=self.get_logger())
        group = MutuallyExclusiveCallbackGroup()
        topic = p.fleet_topic.rstrip("/")
        self.create_subscription(UInt8MultiArray, f"{topic}/transitions", self._on_frame, TRANSITIONS_QOS,
                                 callback_group=group)
        self.policy_pub = self.create_publisher(UInt8MultiArray, f"{topic}/policy", POLICY_QOS)
        self.gaps_pub = self.create_publisher(UInt8MultiArray, f"{topic}/gaps", GAPS_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        wall = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(0.1, self._on_tick, callback_group=group, clock=wall)
        self.create_timer(p.diagnostics_period, self._publish_diagnostics, callback_group=group, clock=wall)
        self.create_service(Trigger, "~/save_checkpoint", self._on_save_checkpoint,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self._ckpt_request, self._stop = threading.Event(), threading.Event()
        self._ckpt_lock = threading.Lock()
        if p.checkpoint_period > 0:
            self.create_timer(p.checkpoint_period, self._ckpt_request.set, clock=wall)
        self._ckpt_thread = threading.Thread(target=self._checkpoint_loop, name="learner-checkpoints", daemon=True)
        self._ckpt_thread.start()
        self._last_snapshot_t = -1e9
        self.get_logger().info(f"fleet learner on {topic}/{{transitions,gaps,policy}}, device {_cfg.device}, "
                               f"run directory {self.run_dir}")

    def _on_frame(self, msg: UInt8MultiArray) -> None:
        self.fleet.on_frame(bytes(msg.data))

    def _on_tick(self) -> None:
        now = time.monotonic()
        for data in self.fleet.gap_frames(now):
            self.gaps_pub.publish(frame_msg(data))
        if now - self._last_snapshot_t >= self.p.snapshot_period:
            data = self.fleet.snapshot_frame()
            if data is not None:
                self.policy_pub.publish(frame_msg(data))
                self._last_snapshot_t = now

    def save_checkpoint(self) -> str:
        with self._ckpt_lock:
            path = self.fleet.checkpoint()
        self.get_logger().info(f"checkpoint written: {path}")
        return path

    def _checkpoint_loop(self) -> None:
        while not self._stop.is_set():
            if self._ckpt_request.wait(0.2):
                self._ckpt_request.clear()
                try:
                    self.save_checkpoint()
                except (RuntimeError, TimeoutError) as exc:
                    self.get_logger().warning(f"periodic checkpoint skipped: {exc}")

    def _on_save_checkpoint(self, req: Trigger.Request, res: Trigger.Response) -> Trigger.Response:
        try:
            res.message, res.success = self.save_checkpoint(), True
        except (RuntimeError, TimeoutError) as exc:
            res.message, res.success = str(exc), False
        return res

    def _publish_diagnostics(self) -> None:
        level, message, values = self.fleet.status()
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status.append(DiagnosticStatus(level=_LEVELS[level], name=f"{NODE_NAME}: fleet", message=message,
                                           hardware_id=self.get_fully_qualified_name(),
                                           values=[KeyValue(key=k, value=str(v)) for k, v in values.items()]))
        self.diag_pub.publish(arr)

    def close(self) -> None:
        self._stop.set()
        self._ckpt_thread.join(timeout=130.0)
        self.fleet.close(checkpoint=True)
        if self.fleet.trainer is not None:
            st = self.fleet.trainer.stats()
            self.get_logger().info(f"final checkpoint: {st.get('last_checkpoint')} ({st.get('env_steps')} "
                                   f"transitions, {st.get('sac_updates')} SAC updates)")


def main(args: list[str] | None = None) -> int:
    """Run learner_node until SIGINT/SIGTERM; final checkpoint once no transition callback runs; exit 0
    (2 on bad parameters, 1 if it failed to start)."""
    return run_node(NODE_NAME, [s.name for s in learner_specs()], LearnerNode, args, release=LearnerNode.close)


if __name__ == "__main__":
    sys.exit(main())
