"""A model-free baseline learns Reach through the Gymnasium env: the project's own SAC (core/sac.py).

Proves the env is a usable RL task (observation, reward, control period) independently of MBPO:
a short SAC run (8k env steps, one update per step) takes the deterministic policy from the
random policy's ~0 % success to a clear majority of goals reached. Fixed seeds; thresholds with
margin (the default reward took seed 0 to 80-85 % success at 6-8k steps when this test was written).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.slow, pytest.mark.long]  # 31-34 s: make test-long (make test keeps to ~15 min)

STEPS = 8_000
RANDOM_STEPS = 1_000
EVAL_EPISODES = 20


def _evaluate(act) -> tuple[float, float]:
    """Mean final success and final distance over EVAL_EPISODES fixed-seed episodes, side by side."""
    from mbpo_ros.sim_eval import FixedEpisodes

    result = FixedEpisodes(EVAL_EPISODES, 0)(act)
    return result.success_rate, result.final_distance_m


def test_sac_learns_reach_through_the_gym_env(one_torch_thread):
    import gymnasium as gym

    import mbpo_ros.sim  # noqa: F401
    from mbpo_ros.core.config import SACConfig
    from mbpo_ros.core.sac import SAC

    torch.manual_seed(0)
    env = gym.make("mbpo_ros/ArmReach-v0")
    obs_dim = env.observation_space.shape[0]
    act_dim = env.action_space.shape[0]
    rng = np.random.default_rng(0)

    base_succ, base_dist = _evaluate(lambda o: rng.uniform(-1, 1, (len(o), act_dim)))

    cfg = SACConfig(hidden_size=128, num_hidden=2, lr=1e-3, gamma=0.95, batch_size=256)
    sac = SAC(obs_dim, act_dim, cfg, target_entropy=-float(act_dim), device="cpu",
              generator=torch.Generator().manual_seed(0))
    obs_buf = np.zeros((STEPS, obs_dim), np.float32)
    act_buf = np.zeros((STEPS, act_dim), np.float32)
    rew_buf = np.zeros(STEPS, np.float32)
    next_buf = np.zeros((STEPS, obs_dim), np.float32)
    obs, _ = env.reset(seed=0)
    for t in range(STEPS):
        if t < RANDOM_STEPS:
            a = rng.uniform(-1, 1, act_dim).astype(np.float32)
        else:
            with torch.no_grad():
                a = sac.actor.sample(torch.as_tensor(obs)[None], torch.randn(1, act_dim))[0][0].numpy()
        nxt, r, term, trunc, _ = env.step(a)
        obs_buf[t], act_buf[t], rew_buf[t], next_buf[t] = obs, a, r, nxt
        obs = nxt
        if term or trunc:
            obs, _ = env.reset()
        if t >= RANDOM_STEPS:
            idx = torch.as_tensor(rng.integers(0, t + 1, cfg.batch_size))
            # Reach never terminates (time limit only): done = 0 everywhere.
            sac.update(torch.as_tensor(obs_buf)[idx], torch.as_tensor(act_buf)[idx], torch.as_tensor(rew_buf)[idx],
                       torch.as_tensor(next_buf)[idx], torch.zeros(cfg.batch_size),
                       torch.randn(2, cfg.batch_size, act_dim))

    def policy(o):
        with torch.no_grad():
            return sac.actor.deterministic(torch.as_tensor(o)).numpy()

    succ, dist = _evaluate(policy)
    assert base_succ <= 0.1, f"random policy already succeeds {base_succ:.0%}: the task is too easy"
    assert succ >= base_succ + 0.4, f"SAC success {succ:.0%} after {STEPS} steps (random {base_succ:.0%})"
    assert dist < 0.5 * base_dist, f"final distance {dist:.3f} m, random policy {base_dist:.3f} m"
