"""Branched model rollouts: horizon schedule, terminations, elite choice, uncertainty truncation."""

from __future__ import annotations

import pytest
import torch

from mbpo_ros.core.buffer import ReplayBuffer
from mbpo_ros.core.config import EnsembleConfig, SACConfig
from mbpo_ros.core.ensemble import ProbabilisticEnsemble
from mbpo_ros.core.rollout import branched_rollout, model_step, rollout_length
from mbpo_ros.core.sac import Actor
from mbpo_ros.core.tasks import TaskSpec

OD, A = 4, 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _parts(seed=0):
    g = torch.Generator().manual_seed(seed)
    ens = ProbabilisticEnsemble(OD + A, OD + 1, EnsembleConfig(hidden_size=32), "cpu", g)
    # fit on a little random data so normalisers, target_std and elites are real
    x = torch.randn(600, OD + A, generator=g)
    y = torch.cat([0.3 * x[:, :OD] + 0.1 * torch.randn(600, OD, generator=g), x[:, :1]], dim=1)
    ens.fit(x, y, g, max_epochs=3)
    actor = Actor(OD, A, SACConfig(hidden_size=32), "cpu", g)
    real = ReplayBuffer(1000, OD, A)
    real.add_batch(x[:, :OD], x[:, OD:], y[:, -1], x[:, :OD] + y[:, :OD], torch.zeros(600, dtype=torch.bool))
    task = TaskSpec("toy", OD, A, lambda o, a, n: n[:, 0] > 0.5)
    return ens, actor, real, task, g


@pytest.mark.parametrize(
    "epoch, schedule, length",
    [(0, [20, 150, 1, 15], 1), (20, [20, 150, 1, 15], 1), (85, [20, 150, 1, 15], 8), (150, [20, 150, 1, 15], 15),
     (400, [20, 150, 1, 15], 15), (7, [1, 15, 1, 1], 1), (3, [0, 10, 1, 5], 2), (5, [5, 5, 1, 4], 4)],
)
def test_rollout_length_schedule(epoch, schedule, length):
    assert rollout_length(epoch, schedule) == length


def _steps(model: ReplayBuffer, first: int):
    """Split the model buffer's rows (in insertion order) into per-step blocks using the done flags."""
    obs, act, rew, nxt, done = (t[: model.size] for t in (model.obs, model.act, model.rew, model.next_obs, model.done))
    blocks, start, n = [], 0, first
    while start < model.size and n > 0:
        blocks.append(slice(start, start + n))
        n = int((done[start : start + n] == 0).sum())
        start = blocks[-1].stop
    return obs, act, rew, nxt, done, blocks


def test_branches_continue_from_their_own_next_state_until_terminal():
    ens, actor, real, task, g = _parts()
    model = ReplayBuffer(100_000, OD, A)
    out = branched_rollout(ens, actor, task, real, model, 500, horizon=5, generator=g)
    assert out["rollout_truncated"] == 0 and out["rollout_samples"] == model.size == out["rollout_predicted"]
    obs, act, rew, nxt, done, blocks = _steps(model, 500)
    assert 1 < len(blocks) <= 5
    # done exactly where the termination function says so
    assert torch.equal(done.bool(), nxt[:, 0] > 0.5)
    assert out["rollout_terminated"] == int(done.sum()) > 0
    # each step starts from the non-terminal next states of the previous step, in order
    for prev, cur in zip(blocks[:-1], blocks[1:]):
        alive = nxt[prev][done[prev] == 0]
        assert torch.equal(obs[cur], alive)
    assert torch.all(act.abs() <= 1.0)


def test_partitioned_prediction_uses_one_random_elite_per_sample():
    ens, _, _, _, g = _parts(1)
    with torch.no_grad():
        ens.max_logvar.fill_(-30.0)  # make the sampled noise negligible
        ens.min_logvar.fill_(-40.0)
    x = torch.randn(3001, OD + A, generator=g)
    nxt, rew, dis = model_step(ens, x[:, :OD], x[:, OD:], g, uncertainty=False)
    assert dis is None
    means, _ = ens.predict_elites(x)  # [K, N, OD + 1]
    y = torch.cat([nxt - x[:, :OD], rew[:, None]], dim=1)
    err = (means - y).abs().amax(dim=-1)  # [K, N]
    best = err.min(dim=0)
    assert float(best.values.max()) < 1e-4  # every sample is exactly one elite's prediction
    counts = torch.bincount(best.indices, minlength=len(ens.elites)).float()
    assert float(counts.min()) > 0.7 * float(counts.mean())  # spread evenly over the elites


def test_uncertainty_threshold_truncates_and_never_stores_uncertain_samples():
    ens, actor, real, task, g = _parts(2)
    # off vs a huge threshold: identical counts, nothing truncated
    model = ReplayBuffer(100_000, OD, A)
    out = branched_rollout(ens, actor, task, real, model, 400, 3, threshold=1e9, generator=g)
    assert out["rollout_truncated"] == 0 and out["rollout_truncated_fraction"] == 0.0
    # a tiny threshold: everything truncated, nothing stored
    model = ReplayBuffer(100_000, OD, A)
    out = branched_rollout(ens, actor, task, real, model, 400, 3, threshold=1e-9, generator=g)
    assert model.size == 0 and out["rollout_truncated_fraction"] == 1.0
    # a threshold at the median disagreement of the start states
    x0 = real.obs[:400]
    a0, _ = actor.sample(x0, torch.zeros(400, A))
    _, _, dis = model_step(ens, x0, a0, g, uncertainty=True)
    thr = float(dis.median())
    model = ReplayBuffer(100_000, OD, A)
    out = branched_rollout(ens, actor, task, real, model, 400, 4, threshold=thr, generator=g)
    assert 0.1 < out["rollout_truncated_fraction"] < 0.9
    assert out["rollout_samples"] == model.size == out["rollout_predicted"] - out["rollout_truncated"]
    obs, act = model.obs[: model.size], model.act[: model.size]
    means, _ = ens.predict_elites(torch.cat([obs, act], dim=1))
    stored_dis = (means / ens.target_std).var(dim=0, unbiased=False).mean(dim=-1).sqrt()
    assert float(stored_dis.max()) <= thr * (1 + 1e-4)


def test_rollout_needs_real_data():
    ens, actor, _, task, g = _parts()
    with pytest.raises(ValueError, match="real-data buffer is empty"):
        branched_rollout(ens, actor, task, ReplayBuffer(10, OD, A), ReplayBuffer(10, OD, A), 5, 1, generator=g)
