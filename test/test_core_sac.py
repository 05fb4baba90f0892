"""SAC: stacked critics (plain and layer-normed), the hand-derived fast path against the autograd reference,
Polyak averaging, entropy tuning, and learning a contextual bandit."""

from __future__ import annotations

import pytest
import torch

from mbpo_ros.core.config import Config, SACConfig, validate
from mbpo_ros.core.sac import SAC, sac_gradients

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


@pytest.mark.parametrize("num_hidden, log_std_max, num_critics", [(2, 2.0, 2), (3, 2.0, 2), (2, -1.0, 2), (2, 2.0, 5)])
def test_hand_written_gradients_match_autograd(num_hidden, log_std_max, num_critics):
    """The fast path agrees with the reference: every parameter's gradient (actor, every critic,
    log-alpha) from sac_gradients equals autograd's on SAC.losses, including the log-std clamp
    (log_std_max -1 clamps many samples) and a 5-critic ensemble."""
    g = torch.Generator().manual_seed(3)
    cfg = SACConfig(hidden_size=32, num_hidden=num_hidden, log_std_max=log_std_max, num_critics=num_critics)
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
    sac.losses(*batch)[0].backward()
    assert len(grads) == len(sac._params)
    for p, got in zip(sac._params, grads):
        torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-6)
    assert all(v.dim() == 0 for v in metrics.values())


def test_hand_and_autograd_updates_take_the_same_step():
    """Three whole updates (Adam, Polyak) by either path from the same start end at the same weights."""
    runs = {}
    for path in ("hand", "autograd"):
        g = torch.Generator().manual_seed(5)
        sac = SAC(6, 2, SACConfig(hidden_size=32, gradients=path), -2.0, "cpu", g)
        assert sac.hand_gradients == (path == "hand")
        for _ in range(3):
            B = 64
            sac.update(torch.randn(B, 6, generator=g), torch.rand(B, 2, generator=g) * 2 - 1,
                       torch.randn(B, generator=g), torch.randn(B, 6, generator=g), torch.zeros(B),
                       torch.randn(2, B, 2, generator=g))
        runs[path] = sac.state_dict()
    for k, v in runs["hand"].items():
        torch.testing.assert_close(runs["autograd"][k], v, rtol=1e-4, atol=1e-5, msg=k)


def test_auto_takes_the_fast_path_only_where_it_applies():
    assert SAC(4, 2, SACConfig(hidden_size=8), -2.0, "cpu").hand_gradients
    assert SAC(4, 2, SACConfig(hidden_size=8, num_critics=10), -2.0, "cpu").hand_gradients
    assert not SAC(4, 2, SACConfig(hidden_size=8, critic_layer_norm=True), -2.0, "cpu").hand_gradients
    assert not SAC(4, 2, SACConfig(hidden_size=8, gradients="autograd"), -2.0, "cpu").hand_gradients
    with pytest.raises(ValueError, match="supports plain ReLU critics only"):
        SAC(4, 2, SACConfig(hidden_size=8, critic_layer_norm=True, gradients="hand"), -2.0, "cpu")
    cfg = Config()
    cfg.sac.gradients = "fast"
    with pytest.raises(ValueError, match="sac.gradients = 'fast'; use one of auto, autograd, hand"):
        validate(cfg)


def test_layer_norm_critics_normalise_every_hidden_layer():
    """With critic_layer_norm each critic is Linear -> LayerNorm (own gain/offset) -> ReLU per hidden layer."""
    g = torch.Generator().manual_seed(2)
    sac = SAC(4, 2, SACConfig(hidden_size=16, num_critics=3, critic_layer_norm=True), -2.0, "cpu", g)
    with torch.no_grad():
        for p in sac.critic.ln_weights.parameters():
            p.normal_(1.0, 0.3, generator=g)
        for p in sac.critic.ln_biases.parameters():
            p.normal_(0.0, 0.3, generator=g)
    obs, act = torch.randn(5, 4, generator=g), torch.rand(5, 2, generator=g)
    q = sac.critic(obs, act)
    assert q.shape == (3, 5)
    c = sac.critic
    for k in range(3):
        h = torch.cat([obs, act], 1)
        for i in range(len(c.weights)):
            h = h @ c.weights[i][k] + c.biases[i][k]
            if i < len(c.weights) - 1:
                h = torch.nn.functional.layer_norm(h, (16,)) * c.ln_weights[i][k] + c.ln_biases[i][k]
                h = torch.relu(h)
        torch.testing.assert_close(q[k], h[:, 0])


def test_layer_norm_critics_train_their_norm_parameters_and_targets_follow():
    g = torch.Generator().manual_seed(4)
    sac = SAC(4, 2, SACConfig(hidden_size=16, critic_layer_norm=True, tau=0.5), -2.0, "cpu", g)
    before = [p.detach().clone() for p in sac.critic.ln_weights]
    B = 32
    sac.update(torch.randn(B, 4, generator=g), torch.rand(B, 2, generator=g), torch.randn(B, generator=g),
               torch.randn(B, 4, generator=g), torch.zeros(B), torch.randn(2, B, 2, generator=g))
    assert all(not torch.equal(b, p) for b, p in zip(before, sac.critic.ln_weights))
    for t, o, b in zip(sac.critic_target.ln_weights, sac.critic.ln_weights, before):
        torch.testing.assert_close(t, b + 0.5 * (o.detach() - b))


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


@pytest.mark.parametrize("critic", [{}, {"critic_layer_norm": True, "num_critics": 5}])
def test_actor_learns_a_contextual_bandit(critic):
    """One-step episodes (done = 1): reward -(a - 0.5 tanh(s0))^2; the greedy action must match, with
    twin plain critics (fast path) and with a 5-critic layer-normed ensemble (autograd)."""
    g = torch.Generator().manual_seed(0)
    sac = SAC(2, 1, SACConfig(hidden_size=64, lr=3e-3, **critic), -1.0, "cpu", g)
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
