"""Episodes on a real arm without ROS (control/episodes.py, control/controller.py): where each episode's goal
comes from (goal_source topic | task), when the next episode starts, and what is announced at its start and end.

Issue 12: "in train/collect mode on a real arm the goal stayed the same for every episode, and nothing tells a
goal source when an episode starts". The graph half (agent_node over DDS) is test_agent_episodes.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from control_helpers import GOAL, JOINTS, LOWER, PERIOD, UPPER, VELOCITY, Arm, make_controller

from mbpo_ros.control import (
    Controller,
    ControllerConfig,
    EndReason,
    EpisodeStart,
    EpisodeSummary,
    JointLimits,
    Phase,
    Reason,
    ResetStatus,
    TaskGoals,
)
from mbpo_ros.control.episodes import end_record, start_record, to_json
from mbpo_ros.core.reach import ReachConfig, ReachTask
from mbpo_ros.core.track import TrackConfig, TrackTask

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

BOX_LOW, BOX_HIGH = np.array(ReachConfig().goal_low), np.array(ReachConfig().goal_high)


def _episodes(commands) -> tuple[list[EpisodeStart], list[EpisodeSummary]]:
    starts = [c.started for c in commands if c.started is not None]
    ends = [c.episode for c in commands if c.episode is not None]
    return starts, ends


def _run(arm: Arm, steps: int, **publish) -> list:
    return [c for c in arm.run(steps, **publish)]


# ----------------------------------------------------------------------------------------- goal_source task

_coord = st.floats(-2.0, 2.0, allow_nan=False)


@given(low=st.tuples(_coord, _coord, _coord), size=st.tuples(*[st.floats(0.0, 1.0)] * 3),
       seed=st.integers(0, 2**31 - 1), index=st.integers(0, 10**6))
def test_task_goals_lie_in_the_goal_box_and_change_every_episode(low, size, seed, index):
    low = np.array(low)
    high = low + np.array(size)
    task = ReachTask(ReachConfig(goal_low=tuple(low), goal_high=tuple(high)), n_joints=6)
    goals = TaskGoals(task, seed)
    g, g_next = goals.goal(index), goals.goal(index + 1)
    for goal in (g, g_next):
        assert goal.shape == (3,) and np.all(np.isfinite(goal))
        assert np.all(goal >= low) and np.all(goal <= high), (goal, low, high)
    np.testing.assert_array_equal(g, TaskGoals(task, seed).goal(index))  # a function of (seed, index) only
    if np.all(high - low > 1e-9):  # a box with volume: a new goal for the next episode
        assert not np.array_equal(g, g_next)


def test_task_goals_of_a_moving_target_are_the_tasks_own_functions():
    """Track's goal is a circle (centre, phase, direction); its current value is `task.target` (position and
    velocity): TaskGoals draws and places with the task's own functions, nothing re-derived."""
    task = TrackTask()
    goals = TaskGoals(task, 4)
    g = goals.goal(2)
    np.testing.assert_array_equal(g, task.sample_goal(np.random.default_rng([4, 2])))
    assert g.shape == (5,)
    for t in (0.0, 0.05, 1.3, 100.0):
        np.testing.assert_array_equal(goals.target(g, t), task.target(g, t))

    class Broken(TrackTask):  # a plugin whose target is not the size it declares: refused at start
        name = "broken"

        def target(self, goal, t):
            return super().target(goal, t)[:3]

    with pytest.raises(ValueError, match="not 6 finite values"):
        TaskGoals(Broken(), 0)


def test_task_goal_source_is_refused_in_deploy_mode():
    with pytest.raises(ValueError, match="'goal_source' = task needs mode train or collect"):
        make_controller(goal_source="task", mode="deploy")
    with pytest.raises(ValueError, match="goal_source"):
        make_controller(goal_source="external")


def test_real_arm_with_task_goals_draws_a_new_goal_per_episode_and_announces_in_order():
    """Regression (issue 12): on a real arm (drive home) the goal stayed the same in every episode."""
    ctrl, learner = make_controller(episode_seconds=0.5, reset_timeout=5.0, home_tolerance=0.05, goal_source="task")
    arm = Arm(ctrl)
    cmds = _run(arm, 300)  # the arm's own goal topic says GOAL all along: not heard with goal_source task
    starts, ends = _episodes(cmds)
    assert len(starts) >= 3 and len(ends) >= 2
    assert [s.index for s in starts] == list(range(len(starts)))
    assert [e.index for e in ends] == list(range(len(ends)))
    assert all(e.reason is EndReason.TIME_LIMIT and e.steps == ctrl.task.cfg.steps_per_episode for e in ends)
    goals = np.array([s.goal for s in starts])
    assert np.all(goals >= BOX_LOW) and np.all(goals <= BOX_HIGH)
    assert len({tuple(g) for g in goals}) == len(goals), "a new goal per episode"
    assert not np.any(np.all(np.isclose(goals, GOAL), axis=1))
    # every transition of episode k observes episode k's goal (obs = [q, qd, ee, goal, goal - ee])
    k, order = -1, []
    for c in cmds:
        if c.transition is not None:
            order.append((k, c.transition))
        if c.episode is not None:
            assert c.episode.index == k
        if c.started is not None:
            k = c.started.index
    for k, tr in order:
        np.testing.assert_allclose(tr.obs[15:18], goals[k], atol=1e-6)
        np.testing.assert_allclose(tr.next_obs[15:18], goals[k], atol=1e-6)
    # between two episodes the arm drove home; a start follows its end only after that
    reasons = [c.reason for c in cmds]
    assert Reason.HOME in reasons
    first_end = next(i for i, c in enumerate(cmds) if c.episode is not None)
    second_start = next(i for i, c in enumerate(cmds) if c.started is not None and c.started.index == 1)
    assert any(c.reason is Reason.HOME for c in cmds[first_end:second_start])


def test_a_resumed_run_goes_on_numbering_and_with_new_goals():
    task = ReachTask(ReachConfig(episode_seconds=0.5, control_rate=1.0 / PERIOD), n_joints=6)
    cfg = ControllerConfig(limits=JointLimits(JOINTS, LOWER, UPPER, VELOCITY), period=PERIOD, mode="collect",
                           reset_via_service=False, goal_source="task", seed=1, max_velocity_step=0.2)
    ctrl = Controller(cfg, task, None, env_steps=500, episodes=7)
    starts, _ = _episodes(_run(Arm(ctrl), 5))
    assert starts[0].index == 7 and starts[0].env_steps == 500
    np.testing.assert_array_equal(starts[0].goal, TaskGoals(task, 1).goal(7))


# ----------------------------------------------------------------------------------------- goal_source topic


def test_real_arm_with_a_goal_topic_waits_home_for_a_goal_newer_than_the_episode_end():
    """The rule for an external goal source: the next episode starts once the arm is home and a goal arrived
    after the last episode ended; without one it starts at reset_timeout with the last goal, and says so."""
    ctrl, _ = make_controller(episode_seconds=0.5, reset_timeout=6.0, home_tolerance=0.05)
    arm = Arm(ctrl)
    cmds = _run(arm, 11, goal_stamp=50.0)  # one goal, latched: its stamp never changes
    starts, ends = _episodes(cmds)
    assert [s.index for s in starts] == [0] and [e.index for e in ends] == [0]
    np.testing.assert_allclose(starts[0].goal, GOAL)
    # no new goal: home within 4 s, then wait until reset_timeout (6 s after the end) before episode 1
    cmds = _run(arm, 80, goal_stamp=50.0)
    assert ctrl.phase is Phase.HOME and float(np.max(np.abs(ctrl.task.home_pose - arm.q))) < 0.05
    assert not _episodes(cmds)[0]
    cmds = _run(arm, 45, goal_stamp=50.0)
    starts, _ = _episodes(cmds)
    assert [s.index for s in starts] == [1]
    assert any("no new goal" in e.text and "episode 1 starts with the last goal" in e.text
               for c in cmds for e in c.events)
    np.testing.assert_allclose(starts[0].goal, GOAL)
    # now a follower answers each end with a new goal: episode 2 starts as soon as the arm is home, with it
    cmds = _run(arm, 11, goal_stamp=50.0)
    assert _episodes(cmds)[1][0].index == 1
    new_goal = (0.5, -0.1, 0.3)
    cmds = _run(arm, 40, goal=new_goal, goal_stamp=arm.t)
    starts, _ = _episodes(cmds)
    assert [s.index for s in starts] == [2]
    np.testing.assert_allclose(starts[0].goal, new_goal)
    assert not any("no new goal" in e.text for c in cmds for e in c.events)


def test_regression_a_goal_with_an_unchanged_stamp_but_another_point_is_a_new_goal():
    """`ros2 topic pub` leaves the header stamp at zero: a second goal with the same stamp was ignored."""
    ctrl, learner = make_controller(episode_seconds=100.0)
    arm = Arm(ctrl)
    arm.run(5, goal_stamp=0.0)
    before = ctrl.inputs.goal.seq
    arm.run(5, goal=(0.5, -0.1, 0.3), goal_stamp=0.0)
    assert ctrl.inputs.goal.seq == before + 1  # the same point again (same stamp) is not a new goal
    np.testing.assert_allclose(learner.transitions[-1].next_obs[15:18], (0.5, -0.1, 0.3), atol=1e-6)


def test_twin_reset_starts_the_next_episode_without_waiting_for_a_new_goal():
    """With a reset service the reset starts the next episode (the twin publishes its goal with the reset):
    unchanged by the goal rule of a real arm, even when the goal message never changes."""
    ctrl, _ = make_controller(episode_seconds=0.5, reset_via_service=True, reset_timeout=30.0)
    arm = Arm(ctrl)
    pending = None
    starts, ends = [], []
    for _ in range(80):
        arm.publish(goal_stamp=50.0)
        cmd = ctrl.step(ctrl.inputs.snapshot(wall=arm.t, reset=(pending, ResetStatus.SUCCEEDED) if pending
                                             else (0, ResetStatus.NOT_CALLED)), arm.t)
        pending = cmd.call_reset or pending
        starts += [cmd.started] if cmd.started else []
        ends += [cmd.episode] if cmd.episode else []
        arm.t += PERIOD
    assert [s.index for s in starts][:4] == [0, 1, 2, 3] and len(ends) >= 3


# ----------------------------------------------------------------------------------------- end reasons


def test_estop_ends_the_episode_and_the_next_one_starts_from_home():
    ctrl, _ = make_controller(episode_seconds=100.0, reset_timeout=5.0, goal_source="task")
    arm = Arm(ctrl)
    starts, _ = _episodes(_run(arm, 10))
    assert [s.index for s in starts] == [0]
    ctrl.estop.engage("test")
    cmds = _run(arm, 60)  # longer than reset_timeout: the drive home still gets its time after the release
    _, ends = _episodes(cmds)
    assert [(e.index, e.reason, e.steps) for e in ends] == [(0, EndReason.ESTOP, 9)]
    assert all(np.all(c.values == 0.0) for c in cmds)
    ctrl.estop.release()
    cmds = _run(arm, 100)
    starts, ends = _episodes(cmds)
    assert not ends and [s.index for s in starts] == [1]
    first = next(i for i, c in enumerate(cmds) if c.started is not None)
    between = [c.reason for c in cmds[:first]]
    assert between.count(Reason.HOME) > 10 and set(between) == {Reason.HOME, Reason.SETTLE}, between
    assert not any("not reached" in e.text for c in cmds for e in c.events)


def test_clock_jump_and_stop_end_the_episode_with_their_reason():
    ctrl, _ = make_controller(episode_seconds=100.0, goal_source="task")
    arm = Arm(ctrl)
    _run(arm, 5)
    arm.t -= 10.0  # the node's clock went back
    cmds = _run(arm, 5)
    starts, ends = _episodes(cmds)
    assert [(e.index, e.reason) for e in ends] == [(0, EndReason.CLOCK_JUMP)]
    assert [s.index for s in starts] == [1]  # control goes on where the arm is: no drive home
    stopped = ctrl.close_episode(arm.t)
    assert stopped.index == 1 and stopped.reason is EndReason.STOPPED
    assert ctrl.close_episode(arm.t) is None
    starts, _ = _episodes(_run(arm, 5))
    assert [s.index for s in starts] == [1]  # a stopped episode is not counted: its number is used again


def test_stale_state_does_not_end_the_episode():
    ctrl, learner = make_controller(episode_seconds=100.0)
    arm = Arm(ctrl)
    cmds = _run(arm, 5)
    cmds += _run(arm, 20, publish=False)  # silence: stop commands
    cmds += _run(arm, 5)
    starts, ends = _episodes(cmds)
    assert any(c.reason is Reason.STALE for c in cmds)
    assert [s.index for s in starts] == [0] and not ends


def test_deploy_mode_has_no_episodes():
    ctrl, _ = make_controller(episode_seconds=0.2, mode="deploy")
    assert _episodes(_run(Arm(ctrl), 40)) == ([], [])


# ----------------------------------------------------------------------------------------- announcements


def test_announcements_are_one_line_of_strict_json():
    start = EpisodeStart(3, 1200, np.array([0.4, 0.1, 0.2]), 1732800000.5)
    rec = json.loads(to_json(start_record(start, "base_link", "task")))
    assert rec == {"event": "start", "episode": 3, "env_steps": 1200, "stamp": {"sec": 1732800000, "nanosec": 500000000},
                   "goal": [0.4, 0.1, 0.2], "frame_id": "base_link", "goal_source": "task"}
    end = EpisodeSummary(-12.5, False, math.nan, 0, 1200, 3, EndReason.ESTOP, math.nan)
    text = to_json(end_record(end))
    assert "\n" not in text and "NaN" not in text
    assert json.loads(text) == {"event": "end", "episode": 3, "env_steps": 1200, "stamp": None, "steps": 0,
                                "return": -12.5, "success": False, "final_distance": None, "reason": "estop"}


def _property_controller(cfg: dict, goal_source: str, task=None) -> Controller:
    from test_control_properties import _controller

    ctrl = _controller(cfg)
    return Controller(ControllerConfig(**{**ctrl.cfg.__dict__, "goal_source": goal_source}),
                      task if task is not None else ctrl.task, ctrl.learner)


from test_control_properties import ALL_EVENTS, CONFIG, _start_q, drive  # noqa: E402


@settings(max_examples=max(30, settings().max_examples // 4))
@given(cfg=CONFIG, events=ALL_EVENTS, goal_source=st.sampled_from(["topic", "task"]))
def test_starts_and_ends_alternate_with_matching_indices_whatever_arrives(cfg, events, goal_source):
    """Hostile inputs, clock jumps, e-stops and live changes: every end closes the episode started last (same
    index), indices count up by one, every ended episode has a reason and the steps of its transitions, and
    (goal_source task) every episode observes its own goal, drawn in the goal box."""
    ctrl = _property_controller(cfg, goal_source)
    records, _ = drive(ctrl, _start_q(cfg), events)
    open_ep, expected, steps, goal = None, 0, 0, None
    for r in records:
        c = r.cmd
        if c.transition is not None:
            assert open_ep is not None, "a transition outside an episode"
            steps += 1
            if goal_source == "task":
                np.testing.assert_allclose(c.transition.obs[15:18], goal, atol=1e-6)
                np.testing.assert_allclose(c.transition.next_obs[15:18], goal, atol=1e-6)
        if c.episode is not None:
            assert open_ep == c.episode.index and c.episode.steps == steps and isinstance(c.episode.reason, EndReason)
            open_ep, expected, steps = None, expected + 1, 0
        if c.started is not None:
            assert open_ep is None and c.started.index == expected
            open_ep, goal = c.started.index, c.started.goal
            if goal_source == "task":
                assert np.all(goal >= BOX_LOW) and np.all(goal <= BOX_HIGH)
    assert open_ep == (expected if ctrl.episode_open else None)


# ----------------------------------------------------------------------------------------- a moving target (track)

T_POS, T_VEL = slice(15, 18), slice(21, 24)  # Track's observation for 6 joints: target position, target velocity


def _observed_target(obs: np.ndarray) -> np.ndarray:
    return np.concatenate([obs[T_POS], obs[T_VEL]])


def _track_controller(episode_seconds: float = 1.0, **overrides) -> Controller:
    task = TrackTask(TrackConfig(episode_seconds=episode_seconds, control_rate=1.0 / PERIOD, radius=0.05, speed=0.1),
                     n_joints=6)
    kw = {"limits": JointLimits(JOINTS, LOWER, UPPER, VELOCITY), "period": PERIOD, "mode": "collect",
          "reset_via_service": False, "reset_timeout": 5.0, "home_tolerance": 0.05, "max_velocity_step": 0.2,
          "state_timeout": 0.3, "goal_source": "task", "seed": 3, **overrides}
    return Controller(ControllerConfig(**kw), task, None)


def _check_track_episodes(ctrl: Controller, cmds) -> dict[int, list[np.ndarray]]:
    """Every observation holds `task.target(task_goal, t)` at its state's episode time t (stamp minus the episode's
    first stamp), t never goes back within an episode, and every published point is the target at its stamp.
    Returns the published points per episode."""
    task, start, last_t = ctrl.task, None, 0.0
    published: dict[int, list[np.ndarray]] = {}
    for c in cmds:
        if c.started is not None:
            start, last_t = c.started, 0.0
            assert c.goal is not None, "an episode's first target point is published with its start"
            np.testing.assert_array_equal(start.goal, task.target(start.task_goal, 0.0)[:3])
        tr = c.transition
        if tr is not None:
            t0, t1 = ((ns - start.origin_ns) * 1e-9 for ns in (tr.start_stamp_ns, tr.stamp_ns))
            assert 0.0 <= last_t <= t0 < t1, (last_t, t0, t1)  # the episode's time never goes back
            last_t = t1
            np.testing.assert_allclose(_observed_target(tr.obs), task.target(start.task_goal, t0), atol=1e-6)
            np.testing.assert_allclose(_observed_target(tr.next_obs), task.target(start.task_goal, t1), atol=1e-6)
        if c.goal is not None:
            point, stamp_ns = c.goal
            np.testing.assert_array_equal(point, task.target(start.task_goal, (stamp_ns - start.origin_ns) * 1e-9)[:3])
            published.setdefault(start.index, []).append(point)
    return published


def test_track_observes_its_moving_target_at_the_episode_time_of_each_joint_state():
    """goal_source task with Track on a real arm: each step observes the target where the task's own function puts
    it at the joint state's episode time, and the current point is handed out (every step: it moves) on the circle."""
    ctrl = _track_controller()
    arm = Arm(ctrl)
    cmds = []
    rng = np.random.default_rng(0)
    for _ in range(140):  # irregular state arrival: the stamps, not the control steps, are the episode's time
        arm.publish()
        cmds.append(arm.step(PERIOD * rng.uniform(0.6, 1.4)))
    starts, ends = _episodes(cmds)
    assert len(starts) >= 2 and ends and all(e.reason is EndReason.TIME_LIMIT for e in ends)
    published = _check_track_episodes(ctrl, cmds)
    for s in starts[:2]:
        points = np.array(published[s.index])
        centre, r = s.task_goal[:3], ctrl.task.cfg.radius
        assert len(points) == ctrl.task.cfg.steps_per_episode + 1  # one per observation: the target moves
        np.testing.assert_allclose(np.linalg.norm(points[:, :2] - centre[:2], axis=1), r, atol=1e-9)
        np.testing.assert_allclose(points[:, 2], centre[2], atol=1e-12)
        assert np.linalg.norm(points[-1] - points[0]) > 0.5 * r, "the target moved along its circle"
    assert not np.allclose(starts[0].task_goal, starts[1].task_goal), "a new circle per episode"


def test_reach_with_task_goals_publishes_its_point_once_per_episode():
    """A fixed goal (Reach) is handed out at the episode's start and not again until the next episode."""
    ctrl, _ = make_controller(episode_seconds=0.5, reset_timeout=5.0, home_tolerance=0.05, goal_source="task")
    cmds = _run(Arm(ctrl), 200)
    starts, _ = _episodes(cmds)
    sent = [c.goal for c in cmds if c.goal is not None]
    assert len(starts) >= 2 and len(sent) == len(starts)
    for (point, _), s in zip(sent, starts):
        np.testing.assert_array_equal(point, s.goal)


@settings(max_examples=max(20, settings().max_examples // 4))
@given(jitter=st.lists(st.floats(-0.02, 0.02), min_size=60, max_size=60), lockstep=st.booleans())
def test_track_observations_depend_on_the_stamps_only_not_on_the_nodes_clock(jitter, lockstep):
    """Determinism (a lock-step twin run): the same joint states give the same observations and transitions,
    whenever the control steps ran on the node's clock."""
    runs = []
    for offsets in (np.zeros(60), np.array(jitter)):
        ctrl = _track_controller(lockstep=lockstep, max_clock_step=1.0)
        q, out = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), []
        for k in range(60):
            stamp = 50.0 + k * PERIOD
            now = stamp + 0.01 + float(offsets[k])
            ctrl.inputs.on_joint_state(JOINTS, q, np.zeros(6), int(round(stamp * 1e9)), now)
            ctrl.inputs.on_ee_pose((0.3, 0.0, 0.3), int(round(stamp * 1e9)), now)
            cmd = ctrl.step(ctrl.inputs.snapshot(wall=now), now)
            out.append(cmd)
        runs.append([(c.transition.obs, c.transition.next_obs) for c in out if c.transition is not None])
    assert len(runs[0]) > 10 and len(runs[0]) == len(runs[1])
    for (o0, n0), (o1, n1) in zip(*runs):
        np.testing.assert_array_equal(o0, o1)
        np.testing.assert_array_equal(n0, n1)


@settings(max_examples=max(30, settings().max_examples // 4))
@given(cfg=CONFIG, events=ALL_EVENTS)
def test_track_target_is_the_tasks_function_at_the_episode_time_whatever_arrives(cfg, events):
    """Hostile inputs, clock jumps, new timelines, e-stops and live changes: every observed target is
    `task.target(drawn goal, episode time)` of its joint state, the episode time never goes back within an
    episode, and every published point is the target at its stamp."""
    task = TrackTask(TrackConfig(episode_seconds=1.0, control_rate=1.0 / PERIOD), n_joints=6)
    ctrl = _property_controller(cfg, "task", task)
    records, _ = drive(ctrl, _start_q(cfg), events)
    _check_track_episodes(ctrl, [r.cmd for r in records])


def test_regression_track_with_goal_source_topic_is_refused_in_one_line():
    """Issue 12: agent_node refused Track outright ("train it on the twin in-process"). It runs now with
    goal_source task; with goal_source topic (a fixed point) and in deploy (no episodes) it is refused, one line."""
    from mbpo_ros.nodes.params import ParameterError, all_specs, build_settings

    base = {s.name: s.default for s in all_specs("track")}
    with pytest.raises(ParameterError) as info:
        build_settings({**base, "task": "track", "goal_source": "topic"})
    line = str(info.value)
    assert "\n" not in line and line.startswith("parameter 'goal_source' = topic cannot run task 'track'")
    assert "use goal_source:=task" in line
    with pytest.raises(ParameterError, match="'mode' = deploy cannot run task 'track'.*mbpo-ros eval") as info:
        build_settings({**base, "task": "track", "mode": "deploy", "checkpoint": "ckpt"})
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="use goal_source:=task"):
        _track_controller(goal_source="topic")
    from mbpo_ros.nodes.agent_learning import _refuse_moving_target

    with pytest.raises(ParameterError, match="'mode' = deploy cannot run task 'track'"):  # a track checkpoint
        _refuse_moving_target({"name": "track", "obs_dim": 24, "act_dim": 6})
    _refuse_moving_target({"name": "reach"})
    settings_ = build_settings({**base, "task": "track", "goal_source": "task"})  # what runs now
    assert type(settings_.reach) is TrackConfig
