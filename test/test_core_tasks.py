"""Termination functions against the real Gymnasium v5 environments, and the task registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mbpo_ros.core.tasks import TASKS, get_task

gym = pytest.importorskip("gymnasium")


def _collect(env_id: str, steps: int, seed: int = 0):
    """Random-action transitions with the env's own `terminated` flag."""
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    rows = []
    for _ in range(steps):
        act = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        nxt, _, term, trunc, _ = env.step(act)
        rows.append((obs, act, nxt, term))
        obs = nxt
        if term or trunc:
            obs, _ = env.reset()
    env.close()
    o, a, n, t = (np.stack([r[i] for r in rows]) for i in range(4))
    return o, a, n, t.astype(bool)


@pytest.mark.parametrize("env_id", sorted(TASKS))
def test_termination_matches_environment(env_id):
    obs, act, nxt, term = _collect(env_id, 1000)
    spec = get_task(env_id)
    assert spec.obs_dim == obs.shape[1] and spec.act_dim == act.shape[1]
    pred = spec.termination_fn(torch.as_tensor(obs), torch.as_tensor(act), torch.as_tensor(nxt))
    assert pred.dtype == torch.bool and pred.shape == (len(obs),)
    np.testing.assert_array_equal(pred.numpy(), term)
    if env_id != "HalfCheetah-v5":  # random actions make every other task end now and then
        assert term.any(), f"{env_id}: no termination seen, the comparison would be empty"
    # NumPy in, NumPy out
    np.testing.assert_array_equal(spec.termination_fn(obs, act, nxt), term)


def test_get_task_names_and_errors():
    assert get_task("Hopper").name == "Hopper-v5"
    assert get_task("Ant-v5", obs_dim=27).obs_dim == 27
    with pytest.raises(ValueError, match="no task named 'Nope'"):
        get_task("Nope")
    with pytest.raises(ValueError, match="unknown arguments"):
        get_task("Hopper-v5", goal=3)


def test_reach_task_wraps_reach_task_for_torch_rollouts():
    from mbpo_ros.core.reach import ReachTask

    reach = ReachTask()
    spec = get_task("reach")
    assert (spec.obs_dim, spec.act_dim) == (reach.obs_dim, reach.act_dim)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(64, spec.obs_dim)).astype(np.float32)
    nxt = rng.normal(size=(64, spec.obs_dim)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(64, spec.act_dim)).astype(np.float32)
    rew_t = spec.reward_fn(torch.as_tensor(obs), torch.as_tensor(act), torch.as_tensor(nxt))
    assert rew_t.dtype == torch.float32 and rew_t.shape == (64,)
    np.testing.assert_allclose(rew_t.numpy(), np.asarray(reach.reward_batch(obs, act, nxt), dtype=np.float32), rtol=1e-6)
    done_t = spec.termination_fn(torch.as_tensor(obs), torch.as_tensor(act), torch.as_tensor(nxt))
    assert done_t.dtype == torch.bool
    np.testing.assert_array_equal(done_t.numpy(), np.asarray(reach.termination_batch(obs, act, nxt), dtype=bool))
