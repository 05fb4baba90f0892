"""PolicySnapshot: same actions as the torch actor, immutable, fast, serialisable."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from mbpo_ros.core.config import SACConfig
from mbpo_ros.core.policy import PolicySnapshot
from mbpo_ros.core.sac import SAC

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trained_sac(hidden_size: int = 64):
    """A SAC whose actor moved away from its initialisation (so the check is not trivial)."""
    g = torch.Generator().manual_seed(0)
    sac = SAC(5, 3, SACConfig(hidden_size=hidden_size), -3.0, "cpu", g)
    B = 64
    for _ in range(20):
        obs = torch.randn(B, 5, generator=g)
        act = torch.rand(B, 3, generator=g) * 2 - 1
        sac.update(obs, act, obs[:, 0], torch.randn(B, 5, generator=g), torch.zeros(B), torch.randn(2, B, 3, generator=g))
    return sac


def _snapshot(sac):
    a = sac.actor
    return PolicySnapshot([w.detach().numpy() for w in a.weights], [b.detach().numpy() for b in a.biases],
                          a.log_std_min, a.log_std_max, version=20)


def test_deterministic_actions_match_torch_actor():
    sac = _trained_sac()
    snap = _snapshot(sac)
    obs = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32) * 3
    expected = sac.actor.deterministic(torch.as_tensor(obs)).detach().numpy()
    np.testing.assert_allclose(snap.act(obs, deterministic=True), expected, atol=1e-5)
    np.testing.assert_allclose(snap.act(obs[7], deterministic=True), expected[7], atol=1e-5)
    assert snap.act(obs[0]).shape == (3,)


def test_stochastic_actions_follow_the_actor_distribution():
    sac = _trained_sac()
    snap = _snapshot(sac)
    obs = np.random.default_rng(1).normal(size=(1, 5)).astype(np.float32)
    rng = np.random.default_rng(2)
    acts = snap.act(np.repeat(obs, 20000, axis=0), deterministic=False, rng=rng)
    assert np.all(np.abs(acts) <= 1.0)
    mean, log_std = sac.actor(torch.as_tensor(obs))
    u = np.arctanh(np.clip(acts, -0.999999, 0.999999))
    np.testing.assert_allclose(u.mean(0), mean[0].detach().numpy(), atol=0.05)
    np.testing.assert_allclose(u.std(0), log_std[0].exp().detach().numpy(), rtol=0.05)
    # the same rng state gives the same actions
    a1 = snap.act(obs[0], False, np.random.default_rng(5))
    a2 = snap.act(obs[0], False, np.random.default_rng(5))
    np.testing.assert_array_equal(a1, a2)


def test_immutable_round_trip_and_fast():
    snap = _snapshot(_trained_sac(256))  # the real 2x256 size
    arrays = snap.to_arrays()
    with pytest.raises(ValueError):
        arrays["w0"][0, 0] = 1.0  # read-only views: nobody can mutate a published snapshot
    again = PolicySnapshot.from_arrays({k: np.array(v) for k, v in arrays.items()})
    obs = np.ones(5, np.float32)
    np.testing.assert_array_equal(again.act(obs), snap.act(obs))
    assert (again.version, again.log_std_min, again.log_std_max) == (20, -20.0, 2.0)
    with pytest.raises(ValueError, match=r"policy expects \[5\]"):
        snap.act(np.zeros(4))
    # speed: one observation well under 0.5 ms (median of many calls; generous margin)
    times = []
    for _ in range(300):
        t = time.perf_counter()
        snap.act(obs)
        times.append(time.perf_counter() - t)
    assert np.median(times) < 0.5e-3
