"""ReachTask (core/reach.py): observation layout, reward and success against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mbpo_ros.core.reach import ReachConfig, ReachTask


def _obs(task: ReachTask, ee, goal, q=None, qd=None):
    n = task.n_joints
    q = np.zeros(n) if q is None else q
    qd = np.zeros(n) if qd is None else qd
    return task.observe(q, qd, ee, goal)


def test_observation_layout():
    task = ReachTask(ReachConfig(), n_joints=6)
    assert task.obs_dim == 21 and task.act_dim == 6
    q = np.arange(6) * 0.1
    qd = -np.arange(6) * 0.2
    obs = task.observe(q, qd, [0.3, 0.1, 0.2], [0.4, -0.1, 0.25])
    assert obs.shape == (21,) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[:6], q, atol=1e-6)
    np.testing.assert_allclose(obs[6:12], qd, atol=1e-6)
    np.testing.assert_allclose(obs[12:15], [0.3, 0.1, 0.2], atol=1e-6)
    np.testing.assert_allclose(obs[15:18], [0.4, -0.1, 0.25], atol=1e-6)
    np.testing.assert_allclose(obs[18:21], [0.1, -0.2, 0.05], atol=1e-6)
    with pytest.raises(ValueError, match="q has 5 values, expected 6"):
        task.observe(np.zeros(5), qd, [0, 0, 0], [0, 0, 0])


def test_reward_and_success_match_hand_computed_values():
    cfg = ReachConfig(action_penalty=0.1, success_bonus=0.5, distance_weight=2.0)
    task = ReachTask(cfg)
    obs = _obs(task, [0.0, 0.0, 0.0], [0.3, 0.4, 0.0])  # 0.5 m away
    nxt = _obs(task, [0.0, 0.0, 0.0], [0.03, 0.04, 0.0])  # 0.05 m away
    act = np.array([1.0, -1.0, 0.5, 0.0, 0.0, 0.0])  # mean square = 2.25 / 6
    assert task.distance(obs) == pytest.approx(0.5, abs=1e-6)
    expected = -2.0 * 0.05 - 0.1 * 2.25 / 6
    assert task.reward(obs, act, nxt) == pytest.approx(expected, abs=1e-6)
    assert not task.success(nxt)
    # 2 cm away: inside the 3 cm threshold, the bonus is paid.
    inside = _obs(task, [0.0, 0.0, 0.0], [0.0, 0.02, 0.0])
    assert task.success(inside)
    assert task.reward(obs, np.zeros(6), inside) == pytest.approx(-2.0 * 0.02 + 0.5, abs=1e-6)
    # Just outside the threshold.
    assert not task.success(_obs(task, [0.0, 0.0, 0.0], [0.0, 0.0301, 0.0]))
    # Default config: weighted negative distance, small action penalty, no bonus.
    default = ReachTask()
    assert default.cfg.success_threshold == 0.03
    r = default.reward(obs, act, nxt)
    w = default.cfg.distance_weight
    assert r == pytest.approx(-w * 0.05 - default.cfg.action_penalty * 2.25 / 6, abs=1e-6)


def test_batch_functions_agree_for_numpy_and_torch():
    torch = pytest.importorskip("torch")
    task = ReachTask(ReachConfig(success_bonus=0.25))
    rng = np.random.default_rng(0)
    B = 64
    obs = rng.normal(size=(B, task.obs_dim)).astype(np.float32) * 0.1
    nxt = rng.normal(size=(B, task.obs_dim)).astype(np.float32) * 0.03
    act = rng.uniform(-1, 1, size=(B, task.act_dim)).astype(np.float32)
    r_np = task.reward_batch(obs, act, nxt)
    r_t = task.reward_batch(torch.from_numpy(obs), torch.from_numpy(act), torch.from_numpy(nxt))
    assert isinstance(r_t, torch.Tensor) and r_t.shape == (B,)
    assert r_np.shape == (B,)
    np.testing.assert_allclose(r_t.numpy(), r_np, rtol=1e-5, atol=1e-6)
    singles = [task.reward(obs[i], act[i], nxt[i]) for i in range(B)]
    np.testing.assert_allclose(r_np, singles, atol=1e-6)
    succ = task.success_batch(nxt)
    assert 0 < succ.sum() < B  # the draw has both outcomes, so the bonus is exercised
    term_np = task.termination_batch(obs, act, nxt)
    term_t = task.termination_batch(torch.from_numpy(obs), torch.from_numpy(act), torch.from_numpy(nxt))
    assert term_np.shape == (B,) and term_np.dtype == bool and not term_np.any()
    assert term_t.shape == (B,) and term_t.dtype == torch.bool and not term_t.any()


def test_goal_and_home_sampling_stay_in_their_boxes():
    task = ReachTask()
    rng = np.random.default_rng(1)
    goals = np.array([task.sample_goal(rng) for _ in range(500)])
    lo, hi = np.array(task.cfg.goal_low), np.array(task.cfg.goal_high)
    assert np.all(goals >= lo) and np.all(goals <= hi)
    # The box is at least 30 cm deep, 40 cm wide and 30 cm high, and the draws fill it.
    assert np.all(hi - lo >= np.array([0.3, 0.4, 0.3]) - 1e-9)
    assert np.all(goals.max(0) - goals.min(0) > 0.9 * (hi - lo))
    homes = np.array([task.sample_home(rng) for _ in range(200)])
    assert np.all(np.abs(homes - task.home_pose) <= task.cfg.home_noise)
    assert task.cfg.steps_per_episode == 100 and task.cfg.control_period == pytest.approx(0.05)


def test_action_to_command_scales_clips_and_rejects():
    task = ReachTask(ReachConfig(max_joint_velocity=1.5))
    cmd = task.action_to_command([1.0, -0.5, 0.0, 2.0, -3.0, 0.1])
    np.testing.assert_allclose(cmd, [1.5, -0.75, 0.0, 1.5, -1.5, 0.15])
    with pytest.raises(ValueError, match="5 values, arm has 6 joints"):
        task.action_to_command(np.zeros(5))
    with pytest.raises(ValueError, match="NaN or Inf"):
        task.action_to_command([0, 0, math.nan, 0, 0, 0])


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="home_pose has 3 values, arm has 6 joints"):
        ReachTask(ReachConfig(home_pose=(0.0, 0.0, 0.0)))
    with pytest.raises(ValueError, match=r"reach.success_threshold = -1.0 is outside"):
        ReachTask(ReachConfig(success_threshold=-1.0))
    with pytest.raises(ValueError, match="goal_low.y"):
        ReachTask(ReachConfig(goal_low=(0.2, 0.3, 0.1), goal_high=(0.5, 0.2, 0.4)))
