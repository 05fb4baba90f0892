"""agent_node's episodes on a real arm over real DDS: goal_source task publishes a new goal (latched) per
episode, and every start and end is announced on `episode` (std_msgs/String, one JSON object each).

Regression (issue 12): in train/collect mode on a real arm the goal stayed the same for every episode, and
nothing told a goal source when an episode started. The arm is a test node (FakeRobot) that integrates the
velocity commands; the agent drives it home between episodes (no reset service). The rules themselves are
in test_episodes.py.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from test_agent_support import BASE, AgentProcess, FakeRobot

pytestmark = pytest.mark.ros

BOX_LOW, BOX_HIGH = np.array([0.25, -0.20, 0.10]), np.array([0.55, 0.20, 0.40])  # reach.goal_low/high defaults


class Listener:
    """Records /episode announcements and /goal messages on the FakeRobot's node (its executor spins them)."""

    def __init__(self, robot: FakeRobot) -> None:
        from geometry_msgs.msg import PointStamped
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import String

        self.robot, self.lock = robot, threading.Lock()
        self.events: list[dict] = []
        self.goals: list[tuple[np.ndarray, str]] = []
        self.latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.TRANSIENT_LOCAL)
        robot.node.create_subscription(String, "/episode", self._on_event,
                                       QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        robot.node.create_subscription(PointStamped, "/goal", self._on_goal, self.latched)

    def _on_event(self, msg) -> None:
        with self.lock:
            self.events.append(json.loads(msg.data))

    def _on_goal(self, msg) -> None:
        with self.lock:
            self.goals.append((np.array([msg.point.x, msg.point.y, msg.point.z]), msg.header.frame_id))

    def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self):
                    return True
            time.sleep(0.05)
        return False

    def late_goal(self, timeout: float = 10.0):
        """A subscriber that joins now: the goal it gets (transient local), or None."""
        from geometry_msgs.msg import PointStamped

        got: list = []
        sub = self.robot.node.create_subscription(PointStamped, "/goal", got.append, self.latched)
        deadline = time.monotonic() + timeout
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        self.robot.node.destroy_subscription(sub)
        return np.array([got[0].point.x, got[0].point.y, got[0].point.z]) if got else None


def test_task_goals_on_a_real_arm_are_new_each_episode_latched_and_announced(tmp_path, ros_context):
    robot = FakeRobot(ros_context)
    robot.integrate = True  # q follows the velocity commands: the drive home really gets home
    robot.publish_goal = False
    robot.node.destroy_publisher(robot.goal_pub)  # the agent must be the only goal publisher
    listener = Listener(robot)
    agent = AgentProcess(tmp_path, {**BASE, "goal_source": "task", "seed": 5, "reach.episode_seconds": 0.4,
                                    "reset_timeout": 5.0, "home_tolerance": 0.05, "run_dir": str(tmp_path / "run")})
    try:
        robot.start_publishing(100.0)

        def ended(n):
            return lambda s: sum(e["event"] == "end" for e in s.events) >= n

        assert listener.wait(ended(1), timeout=60), agent.output()[-3000:]
        first_goal = listener.late_goal()
        assert listener.wait(ended(2), timeout=30), agent.output()[-3000:]
        with listener.lock:  # the current episode (>= 2) has started once its goal is latched
            events = list(listener.events)
            goals = list(listener.goals)
        late = listener.late_goal()
        assert robot.node.count_publishers("/goal") == 1
    finally:
        robot.close()
        assert agent.stop() == 0, agent.output()[-3000:]

    # announcements: start k, end k, start k+1, ... (reliable, in order), each end a time limit of 20 steps
    kinds = [(e["event"], e["episode"]) for e in events]
    expected = [(kind, k) for k in range(len(kinds)) for kind in ("start", "end")][:len(kinds)]
    assert kinds == expected, kinds
    starts = [e for e in events if e["event"] == "start"]
    ends = [e for e in events if e["event"] == "end"]
    assert len(starts) >= 2 and len(ends) >= 2
    for e in ends:
        assert e["reason"] == "time_limit" and e["steps"] == 20 and isinstance(e["success"], bool), e
        assert e["return"] < 0 and e["final_distance"] > 0 and e["env_steps"] == 20 * (e["episode"] + 1)
    for s in starts:
        assert s["goal_source"] == "task" and s["frame_id"] == "base_link" and s["stamp"]["sec"] > 0
        assert np.all(np.array(s["goal"]) >= BOX_LOW) and np.all(np.array(s["goal"]) <= BOX_HIGH), s
    # a new goal per episode, published (base frame) when the episode starts, and latched for late joiners
    start_goals = [np.array(s["goal"]) for s in starts]
    assert not np.allclose(start_goals[0], start_goals[1])
    published = [g for g, _ in goals]
    assert all(frame == "base_link" for _, frame in goals)
    assert len(published) >= len(start_goals)
    for g, p in zip(start_goals, published):
        np.testing.assert_allclose(p, g, atol=1e-9)
    assert first_goal is not None and late is not None
    np.testing.assert_allclose(late, published[-1], atol=1e-9)
    assert not np.allclose(first_goal, late), "the late subscriber got the goal of a later episode"
    assert "goals from the task, published on /goal" in agent.output()


def test_an_external_goal_source_follows_the_announcements(tmp_path, ros_context):
    """goal_source topic on a real arm: a node that answers each end announcement with a new goal sets every
    next episode's goal (the agent waits at home for a goal newer than the end, not for reset_timeout)."""
    from geometry_msgs.msg import PointStamped

    robot = FakeRobot(ros_context)
    robot.integrate = True
    robot.publish_goal = False  # the follower below is the goal source (robot.goal_pub: latched, as the agent wants)
    listener = Listener(robot)
    rng = np.random.default_rng(3)
    sent: list[np.ndarray] = []

    def publish_goal() -> None:
        goal = rng.uniform(BOX_LOW, BOX_HIGH)
        msg = PointStamped()
        msg.header.stamp = robot.stamp()
        msg.header.frame_id = "base_link"
        msg.point.x, msg.point.y, msg.point.z = (float(v) for v in goal)
        sent.append(goal)
        robot.goal_pub.publish(msg)

    def follow(msg) -> None:
        if json.loads(msg.data)["event"] == "end":
            publish_goal()

    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    robot.node.create_subscription(String, "/episode", follow, QoSProfile(depth=50,
                                                                         reliability=ReliabilityPolicy.RELIABLE))
    publish_goal()
    agent = AgentProcess(tmp_path, {**BASE, "reach.episode_seconds": 0.4, "reset_timeout": 30.0,
                                    "home_tolerance": 0.05, "run_dir": str(tmp_path / "run")})
    try:
        robot.start_publishing(100.0)
        assert listener.wait(lambda s: sum(e["event"] == "start" for e in s.events) >= 3, timeout=60), \
            agent.output()[-3000:]
        with listener.lock:
            starts = [e for e in listener.events if e["event"] == "start"]
    finally:
        robot.close()
        assert agent.stop() == 0, agent.output()[-3000:]
    assert [s["episode"] for s in starts[:3]] == [0, 1, 2]
    for s, goal in zip(starts[:3], sent):
        assert s["goal_source"] == "topic"
        np.testing.assert_allclose(s["goal"], goal, atol=1e-9)
    assert "no new goal" not in agent.output()


def test_track_with_task_goals_publishes_its_moving_target_and_observes_it(tmp_path, ros_context):
    """Issue 12: agent_node ran only tasks whose goal is a fixed point. With task track and goal_source task it
    publishes the target's current point on goal as it moves along the episode's circle, and every logged
    transition observes the target of its joint state (stamped alike)."""
    from mbpo_ros.core.track import TrackTask
    from mbpo_ros.io.transition_log import read_transitions

    robot = FakeRobot(ros_context)
    robot.publish_goal = False
    robot.node.destroy_publisher(robot.goal_pub)
    listener = Listener(robot)
    stamps: dict[int, np.ndarray] = {}
    from geometry_msgs.msg import PointStamped

    robot.node.create_subscription(PointStamped, "/goal", lambda m: stamps.__setitem__(
        m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec, np.array([m.point.x, m.point.y, m.point.z])),
        listener.latched)
    agent = AgentProcess(tmp_path, {**BASE, "task": "track", "goal_source": "task", "seed": 2, "log_transitions": True,
                                    "reach.episode_seconds": 1.0, "run_dir": str(tmp_path / "run")})
    try:
        robot.start_publishing(100.0)
        assert listener.wait(lambda s: any(e["event"] == "end" for e in s.events), timeout=25), agent.output()[-3000:]
        with listener.lock:
            start = next(e for e in listener.events if e["event"] == "start")
            points = [g for g, _ in listener.goals]
            by_stamp = dict(stamps)
    finally:
        robot.close()
        assert agent.stop() == 0, agent.output()[-3000:]
    task, r = TrackTask(), TrackTask().cfg.radius
    goal = np.array(start["task_goal"])
    assert goal.shape == (5,) and start["goal_source"] == "task"
    pts = np.array(points[:40])
    assert len(pts) >= 20, "the moving target is published every control step"
    np.testing.assert_allclose(np.linalg.norm(pts[:, :2] - goal[:2], axis=1), r, atol=1e-9)
    assert np.max(np.linalg.norm(pts - pts[0], axis=1)) > 0.2 * r, "different points within one episode"
    log = read_transitions(tmp_path / "run" / "transitions")
    first = log["episode"] == start["episode"]
    assert first.sum() == 50, log["episode"]
    matched = 0
    for next_obs, stamp_ns in zip(log["next_obs"][first], log["stamp_ns"][first]):
        assert next_obs.shape == (task.obs_dim,)
        np.testing.assert_allclose(np.linalg.norm(next_obs[15:17] - goal[:2]), r, atol=1e-5)  # on the circle
        if int(stamp_ns) in by_stamp:
            np.testing.assert_allclose(next_obs[15:18], by_stamp[int(stamp_ns)], atol=1e-6)
            matched += 1
    assert matched >= 25, matched
