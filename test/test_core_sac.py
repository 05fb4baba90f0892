"""SAC: stacked twin critics, Polyak averaging, entropy tuning, and learning a contextual bandit."""

from __future__ import annotations

import pytest
import torch

from mbpo_ros.core.config import SACConfig
from mbpo_ros.core.sac import SAC, sac_gradients, twin_q

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_twin_critics_are_two_independent_networks_in_one_pass():
    g = torch.Generator().manual_seed(0)
    sac = SAC(4, 2, SACConfig(hidden_size=16), -2.0, "cpu", g)
    obs, act = torch.randn(5, 4, generator=g), torch.rand(5, 2, generator=g)
    q = sac.critic(obs, act)
    assert q.shape == (2, 5)
    # critic k equals a plain MLP with the k-th slice of the stacked weights
    for k in range(2):
        h = torch.cat([obs, act], 1)
        for i, (w, b) in enumerate(zip(sac.critic.weights, sac.critic.biases)):
            h = h @ w[k] + b[k]
            if i < len(sac.critic.weights) - 1:
                h = torch.relu(h)
        torch.testing.assert_close(q[k], h[:, 0])
    assert not torch.allclose(q[0], q[1])


def _reference_loss(sac: SAC, obs, act, rew, next_obs, done, noise) -> torch.Tensor:
    """softlearning's three SAC losses written plainly, for autograd (the update derives them by hand)."""
    alpha = sac.log_alpha.detach().exp()
    with torch.no_grad():
        next_act, next_logp = sac.actor.sample(next_obs, noise[0])
        q_next = sac.critic_target(next_obs, next_act).min(dim=0).values
        target = rew + sac.cfg.gamma * (1.0 - done) * (q_next - alpha * next_logp)
    critic_loss = 0.5 * (sac.critic(obs, act) - target).square().mean(dim=1).sum()
    pi_act, logp = sac.actor.sample(obs, noise[1])
    frozen = [p.detach() for p in sac.critic.weights], [p.detach() for p in sac.critic.biases]
    actor_loss = (alpha * logp - twin_q(obs, pi_act, *frozen).min(dim=0).values).mean()
    alpha_loss = -(sac.log_alpha * (logp.detach() + sac.target_entropy)).mean()
    return critic_loss + actor_loss + alpha_loss


@pytest.mark.parametrize("num_hidden, log_std_max", [(2, 2.0), (3, 2.0), (2, -1.0)])
def test_hand_written_gradients_match_autograd(num_hidden, log_std_max):
    """Every parameter's gradient (actor, both critics, log-alpha) equals autograd's on the losses,
    including the log-std clamp (log_std_max -1 clamps many samples)."""
    g = torch.Generator().manual_seed(3)
    cfg = SACConfig(hidden_size=32, num_hidden=num_hidden, log_std_max=log_std_max)
    sac = SAC(5, 3, cfg, target_entropy=-3.0, device="cpu", generator=g)
    with torch.no_grad():  # targets differ from the online critics, alpha is not 1
        for p in sac.critic_target.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        sac.log_alpha.fill_(-0.7)
    B = 64
    batch = (torch.randn(B, 5, generator=g), torch.rand(B, 3, generator=g) * 2 - 1, torch.randn(B, generator=g),
             torch.randn(B, 5, generator=g), (torch.rand(B, generator=g) < 0.2).float(),
             torch.randn(2, B, 3, generator=g))
    grads, metrics = sac_gradients(sac, *batch)
    sac.optimizer.zero_grad(set_to_none=True)
    _reference_loss(sac, *batch).backward()
    assert len(grads) == len(sac._params)
    for p, got in zip(sac._params, grads):
        torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-6)
    assert all(v.dim() == 0 for v in metrics.values())


def test_update_moves_targets_by_polyak_and_tunes_alpha():
    g = torch.Generator().manual_seed(1)
    cfg = SACConfig(hidden_size=16, tau=0.1)
    sac = SAC(4, 2, cfg, target_entropy=-2.0, device="cpu", generator=g)
    before_t = [p.detach().clone() for p in sac.critic_target.parameters()]
    B = 32
    out = sac.update(torch.randn(B, 4, generator=g), torch.rand(B, 2, generator=g), torch.randn(B, generator=g),
                     torch.randn(B, 4, generator=g), torch.zeros(B), torch.randn(2, B, 2, generator=g))
    assert all(v.dim() == 0 and not v.requires_grad for v in out.values())
    for t0, t, o in zip(before_t, sac.critic_target.parameters(), sac.critic.parameters()):
        torch.testing.assert_close(t, t0 + 0.1 * (o.detach() - t0))
    # entropy above the target -> alpha decreases
    assert float(out["entropy"]) > -2.0 and float(sac.log_alpha.detach()) < 0.0


def test_actor_learns_a_contextual_bandit():
    """One-step episodes (done = 1): reward -(a - 0.5 tanh(s0))^2; the greedy action must match."""
    g = torch.Generator().manual_seed(0)
    sac = SAC(2, 1, SACConfig(hidden_size=64, lr=3e-3), -1.0, "cpu", g)
    B = 256
    for _ in range(500):
        obs = torch.randn(B, 2, generator=g)
        act = torch.rand(B, 1, generator=g) * 2 - 1
        rew = -10 * (act[:, 0] - 0.5 * torch.tanh(obs[:, 0])).square()
        sac.update(obs, act, rew, obs, torch.ones(B), torch.randn(2, B, 1, generator=g))
    obs = torch.randn(1000, 2, generator=g)
    with torch.no_grad():
        err = (sac.actor.deterministic(obs)[:, 0] - 0.5 * torch.tanh(obs[:, 0])).abs().mean()
    assert float(err) < 0.08
