"""Soft Actor-Critic with the twin critics stacked into one vectorised module.

The update follows softlearning's SAC (the implementation MBPO used): critic, actor and entropy
coefficient losses are computed against the same pre-update parameters and applied together, so
here they are one loss, one backward and one (foreach) Adam step; the actor's loss sees the
critics through detached weights, so it does not train them. Target critics follow by Polyak
averaging (``torch._foreach_lerp_``). Nothing in :meth:`SAC.update` syncs with the host.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mbpo_ros.core.config import SACConfig
from mbpo_ros.core.ensemble import make_adam

__all__ = ["Actor", "TwinCritic", "SAC"]

_LOG2 = math.log(2.0)


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
            h = torch.addmm(b, h, w)
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


def twin_q(obs: torch.Tensor, act: torch.Tensor, weights, biases) -> torch.Tensor:
    """Both critics in one batched pass. obs [B, o], act [B, a]; weights [2, in, out] -> q [2, B]."""
    x = torch.cat([obs, act], dim=-1)
    h = x.unsqueeze(0).expand(weights[0].shape[0], -1, -1)
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = torch.baddbmm(b, h, w)
        if i < last:
            h = F.relu(h, inplace=True)  # in place: saves an allocation per layer
    return h.squeeze(-1)


class TwinCritic(nn.Module):
    """Q1 and Q2 stacked: weights [2, in, out], biases [2, 1, out]."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: SACConfig, device, generator=None, n: int = 2):
        super().__init__()
        dims = [obs_dim + act_dim] + [cfg.hidden_size] * cfg.num_hidden + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            w = torch.empty(n, d_in, d_out, device=device)
            b = torch.empty(n, 1, d_out, device=device)
            _linear_init_(w, b, d_in, generator)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """obs [B, o], act [B, a] -> q [2, B]."""
        return twin_q(obs, act, list(self.weights), list(self.biases))


class SAC(nn.Module):
    """Actor, twin critics, target critics, log-alpha and one Adam over all of them.

    Args:
        obs_dim, act_dim: sizes.
        cfg: SACConfig.
        target_entropy: entropy target of the automatic alpha tuning (per task).
        device: torch device.
        generator: torch.Generator for the initialisation.
    """

    def __init__(self, obs_dim: int, act_dim: int, cfg: SACConfig, target_entropy: float, device, generator=None):
        super().__init__()
        self.cfg = cfg
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.target_entropy = float(target_entropy)
        self.actor = Actor(obs_dim, act_dim, cfg, device, generator)
        self.critic = TwinCritic(obs_dim, act_dim, cfg, device, generator)
        self.critic_target = TwinCritic(obs_dim, act_dim, cfg, device, generator)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = nn.Parameter(
            torch.tensor(math.log(cfg.init_alpha), device=device), requires_grad=cfg.auto_entropy
        )
        params = list(self.actor.parameters()) + list(self.critic.parameters())
        if cfg.auto_entropy:
            params.append(self.log_alpha)
        self.optimizer = make_adam(params, cfg.lr)
        self._online = list(self.critic.weights) + list(self.critic.biases)
        self._target = list(self.critic_target.weights) + list(self.critic_target.biases)
        self._nl = len(self.critic.weights)

    def update(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        rew: torch.Tensor,
        next_obs: torch.Tensor,
        done: torch.Tensor,
        noise: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """One SAC update on a batch; returns detached scalar tensors (no host sync).

        obs, next_obs: [B, o]; act: [B, a]; rew, done: [B]; noise: [2, B, a] ~ N(0, 1)
        (policy samples at next_obs and at obs).
        """
        cfg = self.cfg
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            next_act, next_logp = self.actor.sample(next_obs, noise[0])
            q_next = twin_q(next_obs, next_act, self._target[: self._nl], self._target[self._nl :]).min(dim=0).values
            target = rew + cfg.gamma * (1.0 - done) * (q_next - alpha * next_logp)
        q = self.critic(obs, act)  # [2, B]
        critic_loss = 0.5 * (q - target).square().mean(dim=1).sum()
        pi_act, logp = self.actor.sample(obs, noise[1])
        w = [p.detach() for p in self._online[: self._nl]]
        b = [p.detach() for p in self._online[self._nl :]]
        q_pi = twin_q(obs, pi_act, w, b).min(dim=0).values
        actor_loss = (alpha * logp - q_pi).mean()
        loss = critic_loss + actor_loss
        if cfg.auto_entropy:
            alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
            loss = loss + alpha_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(self._target, self._online, cfg.tau)
        return {
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "alpha": alpha,
            "entropy": -logp.detach().mean(),
            "q_mean": q.detach().mean(),
        }
