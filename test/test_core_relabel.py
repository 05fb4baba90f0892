"""Goal relabelling (issue 13): a Reach transition relabelled with another goal is the transition the
twin gives for that goal; MBPO relabels SAC batches, rollout starts and model data only for tasks with goals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mbpo_ros.core.config import preset
from mbpo_ros.core.tasks import get_task
from mbpo_ros.core.trainer import MBPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _episode(goal, steps=30, seed=3, env_id="mbpo_ros/ArmReach-v0"):
    """Transitions of the gym twin for a fixed home pose and action sequence, towards `goal`."""
    gym = pytest.importorskip("gymnasium")
    import mbpo_ros.sim  # noqa: F401

    env = gym.make(env_id).unwrapped
    home = np.array([0.0, 0.35, 1.35, 1.44, 0.0, 0.0])
    obs, _ = env.reset(seed=seed, options={"goal": goal, "home": home})
    acts = np.random.default_rng(seed).uniform(-1, 1, (steps, 6))
    rows = []
    for a in acts:
        nxt, r, _, _, _ = env.step(a)
        rows.append((obs, a, r, nxt))
        obs = nxt
    return [torch.as_tensor(np.stack([row[i] for row in rows]), dtype=torch.float32) for i in range(4)]


def _after_one_retrain(task, episode, **mbpo):
    """MBPO with preset("reach") made small (60 random steps, 500 rollout starts, 20 model updates, no
    truncation, one SAC update per step; `mbpo` overrides MBPOConfig fields), fed the episode's 60
    transitions: one model retrain and one rollout."""
    obs, act, rew, nxt = episode
    cfg = preset("reach")
    cfg.device = "cpu"
    m = cfg.mbpo
    m.init_random_steps, m.rollout_batch_size, m.max_model_updates, m.uncertainty_threshold = 60, 500, 20, 0.0
    m.utd = 1
    for key, value in mbpo.items():
        setattr(m, key, value)
    agent = MBPO(task.obs_dim, task.act_dim, cfg, task)
    for i in range(60):
        agent.add(obs[i].numpy(), act[i].numpy(), float(rew[i]), nxt[i].numpy(), False)
    agent.step()
    return agent


def test_reach_relabelled_transitions_are_the_twins_transitions_for_that_goal():
    task = get_task("reach")
    g1, g2 = np.array([0.45, -0.1, 0.3]), np.array([0.3, 0.15, 0.1])
    obs, act, rew, nxt = _episode(g1)
    obs2, _, rew2, nxt2 = _episode(g2)
    goals = torch.as_tensor(g2, dtype=torch.float32).expand(len(obs), 3)
    o, n = task.set_goal(obs, goals), task.set_goal(nxt, goals)
    torch.testing.assert_close(o, obs2, atol=1e-5, rtol=0)
    torch.testing.assert_close(n, nxt2, atol=1e-5, rtol=0)
    torch.testing.assert_close(task.reward_fn(o, act, n), rew2, atol=1e-4, rtol=0)
    assert not torch.allclose(rew, rew2)


def test_relabel_draws_goals_from_the_goal_box_and_recomputes_the_reward():
    task = get_task("reach")
    obs, act, _, nxt = _episode(np.array([0.45, -0.1, 0.3]))
    o, n, r = task.relabel(obs, act, nxt, torch.Generator().manual_seed(0))
    goals = o[:, 15:18]
    low, high = torch.tensor([0.25, -0.2, 0.1]), torch.tensor([0.55, 0.2, 0.4])
    assert ((goals >= low) & (goals <= high)).all() and goals.std(dim=0).min() > 0.03
    torch.testing.assert_close(n[:, 15:18], goals)  # the goal stays put within a transition
    torch.testing.assert_close(o[:, :15], obs[:, :15])  # joints and end effector untouched
    torch.testing.assert_close(r, task.reward_fn(o, act, n))


def test_tasks_without_a_goal_ignore_relabelling_and_cannot_relabel():
    """Hopper has no goal: preset("reach")'s relabel_ratio is ignored there (the node's params file serves
    every task), and TaskSpec.relabel refuses in one line. Reach and Track relabel."""
    cfg = preset("reach")
    cfg.device = "cpu"
    cfg.mbpo.rollout_relabel_ratio, cfg.mbpo.model_relabel = 1.0, True
    assert cfg.mbpo.relabel_ratio > 0
    task = get_task("Hopper-v5")
    assert not task.has_goals
    assert not MBPO(task.obs_dim, task.act_dim, cfg, task).relabels
    with pytest.raises(ValueError, match="task 'Hopper-v5' has no goals to relabel"):
        task.relabel(torch.zeros(2, task.obs_dim), torch.zeros(2, task.act_dim), torch.zeros(2, task.obs_dim))
    for name in ("reach", "track"):
        task = get_task(name)
        assert task.has_goals and MBPO(task.obs_dim, task.act_dim, cfg, task).relabels


def test_rollouts_from_relabelled_starts_practise_new_goals():
    """One real goal in the buffer; with rollout_relabel_ratio 1 the model data spans the goal box."""
    agent = _after_one_retrain(get_task("reach"), _episode(np.array([0.45, -0.1, 0.3]), steps=60),
                               rollout_relabel_ratio=1.0, model_relabel=True, relabel_ratio=0.5)
    assert agent.model_trains == 1 and agent.sac_updates == 1
    real_goals = agent.real_buffer.obs[: agent.real_buffer.size, 15:18]
    model_goals = agent.model_buffer.obs[: agent.model_buffer.size, 15:18]
    assert real_goals.std(dim=0).max() == 0
    assert model_goals.std(dim=0).min() > 0.05



@settings(max_examples=50, deadline=None)
@given(
    obs=hnp.arrays(np.float32, 21, elements=st.floats(-3, 3, width=32)),
    goal=hnp.arrays(np.float32, 3, elements=st.floats(-1, 1, width=32)),
)
def test_reach_goal_free_view_does_not_depend_on_the_goal_and_the_goal_part_on_the_state(obs, goal):
    """The rule mbpo.goal_free_model relies on: what the model sees (strip_goal) is the same for every
    goal, and the goal's part of an observation (obs - strip_goal(obs)) is the same for every state."""
    task = get_task("reach")
    o = torch.as_tensor(obs)[None]
    g = torch.as_tensor(goal)[None]
    moved = task.set_goal(o, g)
    torch.testing.assert_close(task.strip_goal(moved), task.strip_goal(o))
    other = task.set_goal(torch.zeros_like(o), g)
    torch.testing.assert_close(moved - task.strip_goal(moved), other - task.strip_goal(other), atol=1e-5, rtol=0)


def test_strip_goal_leaves_torchs_global_random_state_alone():
    """A user's torch.manual_seed stream is not advanced by the goal-free model's bookkeeping."""
    task = get_task("reach")
    obs = torch.randn(4, task.obs_dim)
    torch.manual_seed(123)
    task.strip_goal(obs)
    after = torch.rand(3)
    torch.manual_seed(123)
    torch.testing.assert_close(after, torch.rand(3))


def test_goal_free_model_rollouts_keep_each_starts_goal_and_derive_the_offset_from_the_end_effector():
    """With mbpo.goal_free_model the ensemble never sees a goal, and every model transition keeps its
    start's goal exactly, with the goal offset = goal - predicted end effector (no drift, no mismatch);
    without it the model predicts the goal and the offset freely and neither holds."""
    episode = _episode(np.array([0.45, -0.1, 0.3]), steps=60)
    for goal_free in (True, False):
        agent = _after_one_retrain(get_task("reach"), episode, rollout_relabel_ratio=0.5, goal_free_model=goal_free)
        n = agent.model_buffer.size
        o, no = agent.model_buffer.obs[:n], agent.model_buffer.next_obs[:n]
        assert n > 0 and o[:, 15:18].std(dim=0).min() > 0.05  # relabelled starts: many goals
        goal_kept = torch.equal(no[:, 15:18], o[:, 15:18])
        offset_err = (no[:, 18:21] - (no[:, 15:18] - no[:, 12:15])).abs().max()
        if goal_free:
            assert goal_kept and offset_err < 1e-5
            # the ensemble was fitted on goal-free inputs: the goal's input columns were all zero
            assert agent.ensemble.in_mu[15:18].abs().max() == 0 and torch.equal(agent.ensemble.in_std[15:18], torch.ones(3))
        else:
            assert not goal_kept and offset_err > 1e-3


def test_goal_free_model_refuses_a_task_whose_goal_does_not_enter_additively():
    """A plugin whose observation holds, say, the unit direction to the goal cannot be made goal-free by
    subtraction: MBPO refuses at construction in one line rather than roll out wrong states."""
    import dataclasses

    reach = get_task("reach")

    def set_unit_direction(obs, goals):
        out = reach.set_goal(obs, goals)
        out[:, 18:21] = torch.nn.functional.normalize(out[:, 18:21], dim=-1)
        return out

    task = dataclasses.replace(reach, name="unit-direction", set_goal=set_unit_direction)
    cfg = preset("reach")
    cfg.device = "cpu"
    cfg.mbpo.goal_free_model = True
    with pytest.raises(ValueError, match=r"^task 'unit-direction': mbpo.goal_free_model needs a goal that enters the "
                       r"observation additively .*; set it to false for this task$"):
        MBPO(task.obs_dim, task.act_dim, cfg, task)
    cfg.mbpo.goal_free_model = False
    MBPO(task.obs_dim, task.act_dim, cfg, task)  # the task itself is fine without the option


# ------------------------------------------------------------------------------ a moving goal (Track)
# Track's observation for 6 joints: q 0:6, qd 6:12, ee 12:15, target 15:18, target - ee 18:21, target velocity 21:24.
TRACK = "mbpo_ros/ArmTrack-v0"


def _track_goal_values(obs):
    return torch.cat([obs[:, 15:18], obs[:, 21:24]], dim=-1)


def test_track_relabelled_transitions_are_the_twins_transitions_for_that_target():
    """Track's target moves, so a relabelled transition's next state gets the target one control step on
    (advance_goal): the twin's own transitions toward another circle, to the stated approximation (the
    observation does not say which way the circle turns: position within 0.5 speed^2/radius dt^2 = 0.06 mm,
    velocity within speed^2/radius dt = 2.5 mm/s); everything else exact."""
    task = get_task("track")
    obs, act, rew, nxt = _episode(np.array([0.45, -0.1, 0.3, 0.3, 1.0]), steps=40, env_id=TRACK)
    obs2, _, rew2, nxt2 = _episode(np.array([0.35, 0.1, 0.2, 2.0, -1.0]), steps=40, env_id=TRACK)
    values = _track_goal_values(obs2)
    o, n = task.set_goal(obs, values), task.next_goal(task.set_goal(nxt, values))
    torch.testing.assert_close(o, obs2, atol=1e-6, rtol=0)
    torch.testing.assert_close(n[:, :15], nxt2[:, :15], atol=0, rtol=0)
    err = (n - nxt2).abs()
    assert err[:, 15:21].max() < 1e-4 and err[:, 21:24].max() < 3e-3
    assert err[:, 15:18].max() > 1e-5  # the target did move on: keeping it would be 2.5 mm off
    torch.testing.assert_close(task.reward_fn(o, act, n), rew2, atol=1e-3, rtol=0)
    assert (rew - rew2).abs().max() > 0.05


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_track_relabel_goals_are_targets_of_the_tasks_episodes(seed):
    """What Track relabels with is what its episodes show: a point of a circle whose centre lies in the
    goal box moved in by the radius, moving at the task's speed along that circle."""
    from mbpo_ros.core.track import TrackTask

    track = TrackTask()
    task = get_task("track")
    values = task.sample_goals(64, torch.Generator().manual_seed(seed)).double().numpy()
    pos, vel = values[:, :3], values[:, 3:]
    np.testing.assert_allclose(np.linalg.norm(vel, axis=1), track.cfg.speed, rtol=1e-5)
    assert np.all(vel[:, 2] == 0)
    # the centre is a radius from the position, at right angles to the velocity (one side or the other)
    normal = np.stack([vel[:, 1], -vel[:, 0], np.zeros(len(vel))], axis=1) / track.cfg.speed
    lo, hi = track._centre_box()
    inside = [np.all((c >= lo - 1e-5) & (c <= hi + 1e-5), axis=1)
              for c in (pos + track.cfg.radius * normal, pos - track.cfg.radius * normal)]
    assert np.all(inside[0] | inside[1])
    obs = torch.randn(64, task.obs_dim, generator=torch.Generator().manual_seed(seed))
    moved = task.set_goal(obs, torch.as_tensor(values, dtype=torch.float32))
    torch.testing.assert_close(_track_goal_values(moved), torch.as_tensor(values, dtype=torch.float32))
    torch.testing.assert_close(moved[:, 18:21], moved[:, 15:18] - obs[:, 12:15])


def test_track_goal_free_rollouts_move_each_starts_target_on_and_derive_the_offset():
    """With mbpo.goal_free_model on Track the ensemble never sees the target; each model step moves the
    start's target on by one control period at its velocity and the offset is target - predicted end
    effector. Before, Track had no relabelling: the model had to learn the target's motion from data."""
    from mbpo_ros.core.track import TrackTask

    dt = TrackTask().cfg.control_period
    m = preset("reach").mbpo
    assert m.goal_free_model and m.rollout_relabel_ratio > 0  # the preset's own settings
    agent = _after_one_retrain(get_task("track"), _episode(np.array([0.45, -0.1, 0.3, 0.3, 1.0]), steps=60,
                                                           env_id=TRACK))
    n = agent.model_buffer.size
    o, no = agent.model_buffer.obs[:n], agent.model_buffer.next_obs[:n]
    assert n > 0 and o[:, 15:18].std(dim=0)[:2].min() > 0.05  # relabelled starts: many circles
    torch.testing.assert_close(no[:, 15:18], o[:, 15:18] + dt * o[:, 21:24], atol=1e-6, rtol=0)
    torch.testing.assert_close(no[:, 21:24], o[:, 21:24])
    assert (no[:, 18:21] - (no[:, 15:18] - no[:, 12:15])).abs().max() < 1e-5
    assert agent.ensemble.in_mu[15:18].abs().max() == 0 and agent.ensemble.in_mu[21:24].abs().max() == 0


def test_a_plugin_whose_goal_relabelling_returns_the_wrong_number_of_functions_is_refused_in_one_line():
    from mbpo_ros.core.reach import ReachTask
    from mbpo_ros.core.tasks import arm_task_spec

    class Odd(ReachTask):
        name = "odd"

        def goal_relabelling(self):
            return (*super().goal_relabelling(), None, None)

    with pytest.raises(ValueError, match=r"^task 'odd': goal_relabelling\(\) returned 4 functions, expected "):
        arm_task_spec(Odd())
