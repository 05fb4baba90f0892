"""Soft Actor-Critic: the losses as the paper writes them, plus a hand-derived fast path.

:meth:`SAC.losses` is the reference: softlearning's SAC (the implementation MBPO used) written
plainly for autograd -- critic, actor and entropy-coefficient losses against the same pre-update
parameters, the actor's loss seeing the critics' weights as constants. Changing the critic
(``sac.num_critics``, ``sac.critic_layer_norm``) or a loss happens there and nowhere else.

:func:`sac_gradients` is a measured fast path for the shape it supports (plain ReLU critics, no
layer norm): the same gradients derived by hand, so that the actor runs once on ``[s'; s]`` and the
online critics once on ``[(s, a); (s, pi(s))]``. ``sac.gradients = "auto"`` takes it where the
shape allows and autograd elsewhere; test/test_core_sac.py checks that the two agree, and
``benchmarks/core_throughput.py --sac-ab`` measures the difference. Either way the update is one
fused Adam step over actor, critics and log-alpha, then Polyak averaging of the target critics
(``torch._foreach_lerp_``); nothing in :meth:`SAC.update` syncs with the host.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mbpo_ros.core.config import SACConfig, check_sac_gradients
from mbpo_ros.core.ensemble import make_adam
from mbpo_ros.core.gemm import linear, matmul

__all__ = ["Actor", "Critics", "SAC", "critic_q", "hand_gradients_support", "sac_gradients"]

_LOG2 = math.log(2.0)
_LN_EPS = 1e-5


def _linear_init_(w: torch.Tensor, b: torch.Tensor, fan_in: int, generator: torch.Generator | None) -> None:
    """nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias."""
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        w.uniform_(-bound, bound, generator=generator)
        b.uniform_(-bound, bound, generator=generator)


class Actor(nn.Module):
    """Tanh-squashed diagonal Gaussian policy: obs [B, obs_dim] -> action in (-1, 1)^act_dim.

    Weights are stored ``[in, out]`` (x @ W + b), the layout PolicySnapshot evaluates in NumPy.
    """

    def __init__(self, obs_dim: int, act_dim: int, cfg: SACConfig, device, generator=None):
        super().__init__()
        dims = [obs_dim] + [cfg.hidden_size] * cfg.num_hidden + [2 * act_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            w = torch.empty(d_in, d_out, device=device)
            b = torch.empty(d_out, device=device)
            _linear_init_(w, b, d_in, generator)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        self.act_dim = act_dim
        self.log_std_min, self.log_std_max = cfg.log_std_min, cfg.log_std_max

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs: [B, obs_dim] -> mean [B, act_dim], log_std [B, act_dim] (clamped), pre-tanh."""
        h = obs
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = linear(h, w, b)
            if i < last:
                h = F.relu(h, inplace=True)  # in place: saves an allocation per layer
        mean, log_std = h.split(self.act_dim, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def sample(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample. obs: [B, o], noise: [B, a] ~ N(0, 1) -> action [B, a], log_prob [B]."""
        mean, log_std = self(obs)
        u = mean + log_std.exp() * noise
        # log N(u; mean, std) - sum log(1 - tanh(u)^2), the latter in its stable softplus form
        log_prob = (-0.5 * noise.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2.0 * (_LOG2 - u - F.softplus(-2.0 * u))).sum(-1)
        return torch.tanh(u), log_prob

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """obs: [B, o] -> tanh(mean) [B, a]."""
        return torch.tanh(self(obs)[0])


def critic_q(obs: torch.Tensor, act: torch.Tensor, weights, biases, ln_weights=(), ln_biases=()) -> torch.Tensor:
    """All critics in one batched pass. obs [B, o], act [B, a]; weights [N, in, out] -> q [N, B].

    With ``ln_weights``/``ln_biases`` (one [N, 1, hidden] pair per hidden layer) every hidden layer is
    Linear -> LayerNorm -> ReLU (as in RLPD and DroQ); without them Linear -> ReLU.
    """
    x = torch.cat([obs, act], dim=-1)
    h = x.unsqueeze(0).expand(weights[0].shape[0], -1, -1)
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = linear(h, w, b)
        if i < last:
            if ln_weights:
                h = torch.addcmul(ln_biases[i], F.layer_norm(h, h.shape[-1:], eps=_LN_EPS), ln_weights[i])
            h = F.relu(h, inplace=True)  # in place: saves an allocation per layer
    return h.squeeze(-1)


class Critics(nn.Module):
    """``sac.num_critics`` Q-networks stacked: weights [N, in, out], biases [N, 1, out]; with
    ``sac.critic_layer_norm`` also LayerNorm gains and offsets [N, 1, hidden] per hidden layer."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: SACConfig, device, generator=None):
        super().__init__()
        n = cfg.num_critics
        dims = [obs_dim + act_dim] + [cfg.hidden_size] * cfg.num_hidden + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            w = torch.empty(n, d_in, d_out, device=device)
            b = torch.empty(n, 1, d_out, device=device)
            _linear_init_(w, b, d_in, generator)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        self.ln_weights = nn.ParameterList()
        self.ln_biases = nn.ParameterList()
        if cfg.critic_layer_norm:
            for _ in range(cfg.num_hidden):
                self.ln_weights.append(nn.Parameter(torch.ones(n, 1, cfg.hidden_size, device=device)))
                self.ln_biases.append(nn.Parameter(torch.zeros(n, 1, cfg.hidden_size, device=device)))

    def tensors(self, detach: bool = False) -> tuple[list, list, list, list]:
        """(weights, biases, ln_weights, ln_biases) as lists, detached if asked (critic_q's arguments)."""
        out = tuple(list(ps) for ps in (self.weights, self.biases, self.ln_weights, self.ln_biases))
        if detach:
            out = tuple([p.detach() for p in ps] for ps in out)
        return out  # type: ignore[return-value]

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """obs [B, o], act [B, a] -> q [N, B]."""
        return critic_q(obs, act, *self.tensors())


class SAC(nn.Module):
    """Actor, critics, target critics, log-alpha and one Adam over all of them.

    Args:
        obs_dim, act_dim: sizes.
        cfg: SACConfig.
        target_entropy: entropy target of the automatic alpha tuning (per task).
        device: torch device.
        generator: torch.Generator for the initialisation.
    Attributes:
        hand_gradients: whether :meth:`update` uses :func:`sac_gradients` (``cfg.gradients``: "hand",
            or "auto" where the critics are plain ReLU networks) rather than autograd on :meth:`losses`.
    """

    def __init__(self, obs_dim: int, act_dim: int, cfg: SACConfig, target_entropy: float, device, generator=None):
        super().__init__()
        check_sac_gradients(cfg)
        self.cfg = cfg
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.target_entropy = float(target_entropy)
        self.actor = Actor(obs_dim, act_dim, cfg, device, generator)
        self.critic = Critics(obs_dim, act_dim, cfg, device, generator)
        self.critic_target = Critics(obs_dim, act_dim, cfg, device, generator)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = nn.Parameter(
            torch.tensor(math.log(cfg.init_alpha), device=device), requires_grad=cfg.auto_entropy
        )
        params = list(self.actor.weights) + list(self.actor.biases)
        params += list(self.critic.weights) + list(self.critic.biases)
        params += list(self.critic.ln_weights) + list(self.critic.ln_biases)
        if cfg.auto_entropy:
            params.append(self.log_alpha)
        self._params = params  # the order of sac_gradients()' result
        self.optimizer = make_adam(params, cfg.lr)
        self._online = list(self.critic.parameters())
        self._target = list(self.critic_target.parameters())
        self.hand_gradients = cfg.gradients == "hand" or (cfg.gradients == "auto" and hand_gradients_support(cfg))

    def losses(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        rew: torch.Tensor,
        next_obs: torch.Tensor,
        done: torch.Tensor,
        noise: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """softlearning's SAC losses, summed, for autograd; and the metrics (detached 0-d tensors).

        With alpha = exp(log_alpha) held constant, Q_k the online critics, Qt_k the targets:

        - critic: ``0.5 * sum_k mean_b (Q_k(s, a) - y)^2`` with
          ``y = r + gamma (1 - d) (min_k Qt_k(s', a') - alpha log pi(a'|s'))``, a' ~ pi(s');
        - actor: ``mean_b (alpha log pi(a~|s) - min_k Q_k(s, a~))``, a~ ~ pi(s) reparameterised, the
          critics' weights held fixed (the actor loss does not train them);
        - entropy: ``-log_alpha * mean_b (log pi(a~|s) + target_entropy)`` (if auto_entropy).

        obs, next_obs: [B, o]; act: [B, a]; rew, done: [B]; noise: [2, B, a] ~ N(0, 1) (the policy's
        samples at next_obs and at obs).
        """
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            next_act, next_logp = self.actor.sample(next_obs, noise[0])
            q_next = self.critic_target(next_obs, next_act).min(dim=0).values
            target = rew + self.cfg.gamma * (1.0 - done) * (q_next - alpha * next_logp)
        q = self.critic(obs, act)
        critic_loss = 0.5 * (q - target).square().mean(dim=1).sum()
        pi_act, logp = self.actor.sample(obs, noise[1])
        q_pi = critic_q(obs, pi_act, *self.critic.tensors(detach=True)).min(dim=0).values
        actor_loss = (alpha * logp - q_pi).mean()
        loss = critic_loss + actor_loss
        if self.cfg.auto_entropy:
            loss = loss - (self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        metrics = {
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "alpha": alpha,
            "entropy": -logp.detach().mean(),
            "q_mean": q.detach().mean(),
        }
        return loss, metrics

    def update(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        rew: torch.Tensor,
        next_obs: torch.Tensor,
        done: torch.Tensor,
        noise: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """One SAC update on a batch (arguments as :meth:`losses`); returns detached scalar tensors
        (no host sync). The gradients come from :func:`sac_gradients` when ``hand_gradients``, else
        from autograd on :meth:`losses`: the same numbers up to float rounding."""
        if self.hand_gradients:
            grads, metrics = sac_gradients(self, obs, act, rew, next_obs, done, noise)
            for p, g in zip(self._params, grads):
                p.grad = g
        else:
            loss, metrics = self.losses(obs, act, rew, next_obs, done, noise)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(self._target, self._online, self.cfg.tau)
        return metrics


def hand_gradients_support(cfg: SACConfig) -> bool:
    """Whether :func:`sac_gradients` covers this network shape: ReLU critics without layer norm (any
    number of critics, hidden sizes and layers)."""
    return not cfg.critic_layer_norm


def _relu_backward(grad: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    """ReLU backward: grad where the (post-ReLU) activation is positive, else 0 (autograd's kernel)."""
    return torch.ops.aten.threshold_backward(grad, activation, 0.0)


@torch.no_grad()
def sac_gradients(
    sac: SAC,
    obs: torch.Tensor,
    act: torch.Tensor,
    rew: torch.Tensor,
    next_obs: torch.Tensor,
    done: torch.Tensor,
    noise: torch.Tensor,
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """The gradients of :meth:`SAC.losses`, derived by hand (the fast path; plain ReLU critics only,
    see :func:`hand_gradients_support`), all against the current parameters.

    Shapes: obs, next_obs [B, o]; act [B, a]; rew, done [B]; noise [2, B, a].
    Returns (gradients in the order of ``sac._params``, metrics as 0-d tensors).
    """
    cfg = sac.cfg
    B, o = obs.shape
    na = sac.act_dim
    aw, ab = list(sac.actor.weights), list(sac.actor.biases)
    cw, cb = list(sac.critic.weights), list(sac.critic.biases)
    tw, tb = list(sac.critic_target.weights), list(sac.critic_target.biases)
    nl_a, nl_c = len(aw), len(cw)
    alpha = sac.log_alpha.detach().exp()

    # ---- actor forward on [s'; s] (2B rows); keep the post-ReLU activations for the backward
    s2 = torch.cat([next_obs, obs], dim=0)
    ha = [s2]
    h = s2
    for i in range(nl_a):
        h = linear(h, aw[i], ab[i])
        if i < nl_a - 1:
            h.clamp_min_(0.0)
            ha.append(h)
    mean, ls_raw = h.split(na, dim=-1)
    log_std = ls_raw.clamp(sac.actor.log_std_min, sac.actor.log_std_max)
    std = log_std.exp()
    n2 = noise.reshape(2 * B, na)
    u = torch.addcmul(mean, std, n2)
    pi = torch.tanh(u)
    # log N(u; mean, std) - sum log(1 - tanh(u)^2), the latter in its stable softplus form
    logp = (-0.5 * n2.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    logp = logp - (2.0 * (_LOG2 - u - F.softplus(-2.0 * u))).sum(-1)
    next_act, next_logp = pi[:B], logp[:B]
    pi_act, cur_logp = pi[B:], logp[B:]

    # ---- target
    q_next = critic_q(next_obs, next_act, tw, tb).min(dim=0).values
    target = rew + cfg.gamma * (1.0 - done) * (q_next - alpha * next_logp)

    # ---- online critics on [(s, a); (s, pi(s))] (2B rows, all N critics)
    x = torch.cat([torch.cat([obs, act], dim=-1), torch.cat([obs, pi_act], dim=-1)], dim=0)
    hc = [x.unsqueeze(0).expand(cw[0].shape[0], -1, -1)]
    h = hc[0]
    for i in range(nl_c):
        h = linear(h, cw[i], cb[i])
        if i < nl_c - 1:
            h.clamp_min_(0.0)
            hc.append(h)
    q2 = h.squeeze(-1)  # [N, 2B]
    q, q_pi2 = q2[:, :B], q2[:, B:]
    q_pi, pick = q_pi2.min(dim=0)
    critic_loss = 0.5 * (q - target).square().mean(dim=1).sum()
    actor_loss = (alpha * cur_logp - q_pi).mean()

    # ---- critic backward: rows :B carry the critic loss (weights), rows B: the actor loss (input)
    dq = torch.empty_like(q2)
    dq[:, :B] = (q - target) / B
    dq[:, B:] = torch.zeros_like(q_pi2).scatter_(0, pick.unsqueeze(0), -1.0 / B)
    g = dq.unsqueeze(-1)  # [N, 2B, 1]
    c_gw: list[torch.Tensor] = [None] * nl_c  # type: ignore[list-item]
    c_gb: list[torch.Tensor] = [None] * nl_c  # type: ignore[list-item]
    for i in range(nl_c - 1, -1, -1):
        c_gw[i] = matmul(hc[i][:, :B].transpose(1, 2), g[:, :B])
        c_gb[i] = g[:, :B].sum(dim=1, keepdim=True)
        if i > 0:
            # the output layer has one unit: its input gradient is an outer product, not a matmul
            back = g * cw[i].transpose(1, 2) if i == nl_c - 1 else matmul(g, cw[i].transpose(1, 2))
            g = _relu_backward(back, hc[i])
    # d actor_loss / d pi_act: through the action columns of the first critic layer, all critics
    d_pi = matmul(g[:, B:], cw[0][:, o:, :].transpose(1, 2)).sum(dim=0)  # [B, a]

    # ---- actor backward (rows B: of the actor pass)
    pa = pi[B:]
    d_logp = alpha / B
    du = d_pi * (1.0 - pa.square()) + (2.0 * d_logp) * pa  # d log pi / du = 2 tanh(u)
    d_ls = du * std[B:] * n2[B:] - d_logp
    lr_ = ls_raw[B:]
    d_ls = d_ls.masked_fill_((lr_ < sac.actor.log_std_min) | (lr_ > sac.actor.log_std_max), 0.0)
    g = torch.cat([du, d_ls], dim=-1)  # [B, 2a]
    a_gw: list[torch.Tensor] = [None] * nl_a  # type: ignore[list-item]
    a_gb: list[torch.Tensor] = [None] * nl_a  # type: ignore[list-item]
    for i in range(nl_a - 1, -1, -1):
        a_gw[i] = matmul(ha[i][B:].t(), g)
        a_gb[i] = g.sum(dim=0)
        if i > 0:
            g = _relu_backward(matmul(g, aw[i].t()), ha[i][B:])

    grads = [t.contiguous() for t in a_gw + a_gb + c_gw + c_gb]  # matmul() may return transposed views
    if cfg.auto_entropy:
        grads.append(-(cur_logp + sac.target_entropy).mean())
    metrics = {
        "critic_loss": critic_loss,
        "actor_loss": actor_loss,
        "alpha": alpha,
        "entropy": -cur_logp.mean(),
        "q_mean": q.mean(),
    }
    return grads, metrics
