"""MBPO's branched model rollouts from real states, the horizon schedule and uncertainty truncation.

From ``n`` start states drawn uniformly from the real buffer, the current (stochastic) policy acts
and a random elite of the ensemble samples the next state and reward, for ``horizon`` steps. A branch
ends where the task's termination function says so (that transition is stored with done = 1), and
-- beyond the paper -- where the elites disagree too much: with ``threshold > 0`` every step measures
the disagreement ``sqrt(mean_d var_k(mu_k,d / target_std_d))`` (RMS over dimensions of the standard
deviation of the elite means, in units of each target's standard deviation in the training data);
a sample above the threshold ends its branch and is never stored.
"""

from __future__ import annotations

import math

import torch

from mbpo_ros.core.buffer import ReplayBuffer
from mbpo_ros.core.ensemble import ProbabilisticEnsemble
from mbpo_ros.core.sac import Actor
from mbpo_ros.core.tasks import TaskSpec

__all__ = ["rollout_length", "branched_rollout", "model_step"]


def rollout_length(epoch: int, schedule) -> int:
    """Rollout horizon at an epoch: linear from min_len at start_epoch to max_len at end_epoch.

    schedule: [start_epoch, end_epoch, min_len, max_len] (as in the official MBPO code).
    """
    start, end, lo, hi = (int(v) for v in schedule)
    if end <= start:
        frac = 1.0 if epoch >= end else 0.0
    else:
        frac = min(max((epoch - start) / (end - start), 0.0), 1.0)
    return int(frac * (hi - lo) + lo)


def model_step(
    ensemble: ProbabilisticEnsemble,
    obs: torch.Tensor,
    act: torch.Tensor,
    generator: torch.Generator | None,
    uncertainty: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Sample one model step from a random elite per sample.

    obs: [N, o], act: [N, a] -> (next_obs [N, o], model_reward [N], disagreement [N] or None).
    With ``uncertainty`` every elite predicts every sample (needed to measure disagreement);
    otherwise the samples are split at random among the elites, one member per sample.
    """
    n, o = obs.shape
    x = torch.cat([obs, act], dim=-1)
    k = int(ensemble.elites.shape[0])
    disagreement = None
    if uncertainty:
        mean, logvar = ensemble.predict_elites(x)  # [K, N, out]
        scaled = mean / ensemble.target_std
        disagreement = scaled.var(dim=0, unbiased=False).mean(dim=-1).sqrt()
        pick = torch.randint(0, k, (n,), generator=generator, device=obs.device)
        rows = torch.arange(n, device=obs.device)
        mu, lv = mean[pick, rows], logvar[pick, rows]
    else:
        m = math.ceil(n / k)
        perm = torch.randperm(n, generator=generator, device=obs.device)
        if m * k > n:
            perm = torch.cat([perm, perm[: m * k - n]])
        mean, logvar = ensemble.predict_partitioned(x[perm].view(k, m, -1))
        mu = torch.empty(n, mean.shape[-1], device=obs.device)
        lv = torch.empty_like(mu)
        mu[perm[:n]] = mean.reshape(k * m, -1)[:n]
        lv[perm[:n]] = logvar.reshape(k * m, -1)[:n]
    noise = torch.randn(mu.shape, generator=generator, device=obs.device)
    y = mu + torch.exp(0.5 * lv) * noise
    return obs + y[:, :o], y[:, o], disagreement


@torch.no_grad()
def branched_rollout(
    ensemble: ProbabilisticEnsemble,
    actor: Actor,
    task: TaskSpec,
    real: ReplayBuffer,
    model_buffer: ReplayBuffer,
    num_starts: int,
    horizon: int,
    threshold: float = 0.0,
    generator: torch.Generator | None = None,
    chunk: int = 0,
    relabel_ratio: float = 0.0,
    goal_free: bool = False,
) -> dict:
    """Roll the model out from ``num_starts`` real states for up to ``horizon`` steps into ``model_buffer``.

    The starts are processed ``chunk`` at a time (0 = auto: 8192 on CPU, where a chunk's activations
    stay in cache and allocate without page faults -- 1.8x faster than 100k on one thread -- and
    100,000 on a GPU). With ``relabel_ratio > 0`` (goal-conditioned tasks) that fraction of the start
    states gets a goal drawn from the task's goal distribution (``task.sample_goals``/``set_goal``).
    With ``goal_free`` the ensemble (trained on goal-free states, ``mbpo.goal_free_model``) predicts from
    ``task.strip_goal(obs)``, and the next state gets the start's goal back, moved on by one step where
    the task's goal moves (``task.next_goal``): the goal never drifts and the goal offset is the goal
    minus the predicted end effector.

    Returns {"rollout_horizon", "rollout_samples" (stored), "rollout_predicted",
    "rollout_truncated" (count), "rollout_truncated_fraction", "rollout_terminated",
    "rollout_mean_length" (mean stored steps per start)}.
    """
    if real.size == 0:
        raise ValueError("cannot roll out the model: the real-data buffer is empty")
    if chunk <= 0:
        chunk = 100_000 if real.obs.device.type == "cuda" else 8192
    stored = predicted = truncated = terminated = 0
    for c0 in range(0, num_starts, chunk):
        n = min(chunk, num_starts - c0)
        obs = real.obs[real.sample_indices((n,), generator)]
        if relabel_ratio > 0:
            moved = task.set_goal(obs, task.sample_goals(n, generator, obs.device))
            pick = torch.rand(n, generator=generator, device=obs.device) < relabel_ratio
            obs = torch.where(pick.unsqueeze(-1), moved, obs)
        for _ in range(horizon):
            noise = torch.randn(obs.shape[0], actor.act_dim, generator=generator, device=obs.device)
            act, _ = actor.sample(obs, noise)
            if goal_free:
                free = task.strip_goal(obs)
                next_free, rew, dis = model_step(ensemble, free, act, generator, threshold > 0)
                next_obs = task.next_goal(task.strip_goal(next_free) + (obs - free))
            else:
                next_obs, rew, dis = model_step(ensemble, obs, act, generator, threshold > 0)
            if task.reward_fn is not None:
                rew = task.reward_fn(obs, act, next_obs).to(obs.dtype)
            done = task.termination_fn(obs, act, next_obs).bool()
            keep = torch.isfinite(next_obs).all(dim=-1) & torch.isfinite(rew)
            if dis is not None:
                keep &= dis <= threshold
            n_pred = obs.shape[0]
            n_keep = int(keep.sum())
            predicted += n_pred
            truncated += n_pred - n_keep
            if n_keep < n_pred:
                obs, act, rew, next_obs, done = obs[keep], act[keep], rew[keep], next_obs[keep], done[keep]
            model_buffer.add_batch(obs, act, rew, next_obs, done)
            stored += n_keep
            n_done = int(done.sum())
            terminated += n_done
            if n_done:
                next_obs = next_obs[~done]
            if next_obs.shape[0] == 0:
                break
            obs = next_obs
    return {
        "rollout_horizon": horizon,
        "rollout_samples": stored,
        "rollout_predicted": predicted,
        "rollout_truncated": truncated,
        "rollout_truncated_fraction": truncated / max(predicted, 1),
        "rollout_terminated": terminated,
        "rollout_mean_length": stored / max(num_starts, 1),
    }
