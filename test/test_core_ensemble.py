"""The probabilistic ensemble on a known random linear system with heteroscedastic-free noise."""

from __future__ import annotations

import math

import pytest
import torch

from mbpo_ros.core.config import EnsembleConfig
from mbpo_ros.core.ensemble import ProbabilisticEnsemble

NOISE_STD = torch.tensor([0.05, 0.1, 0.2, 0.4])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _linear_data(n: int, gen: torch.Generator):
    """y = x A + c (like a state change: of order 1) + N(0, diag(NOISE_STD^2)); x: [n, 6] -> y: [n, 4]."""
    a = 0.3 * torch.randn(6, 4, generator=torch.Generator().manual_seed(123))
    c = 0.1 * torch.randn(4, generator=torch.Generator().manual_seed(321))
    x = torch.randn(n, 6, generator=gen) + 1.0
    y = x @ a + c + torch.randn(n, 4, generator=gen) * NOISE_STD
    return x, y


def _ensemble(seed=0, **kw):
    cfg = EnsembleConfig(hidden_size=64, **kw)
    gen = torch.Generator().manual_seed(seed)
    return ProbabilisticEnsemble(6, 4, cfg, "cpu", gen), gen


def test_fits_linear_system_variance_and_elites():
    torch.manual_seed(0)
    model, gen = _ensemble()
    x, y = _linear_data(4000, gen)
    x_test, y_test = _linear_data(2000, torch.Generator().manual_seed(7))
    _, nll_init = model.evaluate(x_test, y_test)
    first = model.fit(x, y, gen, max_epochs=1)
    final = model.fit(x, y, gen, max_epochs=300)
    # hold-out NLL falls, and far below the untrained model's
    assert final["model_holdout_nll"] < first["model_holdout_nll"] - 1.0
    assert final["model_holdout_nll"] < float(nll_init.min()) - 1.5
    # early stopping ended training before the cap
    assert final["model_epochs"] < 300
    # the predicted variance matches the noise, per output dimension
    mean, logvar = model.predict_elites(x_test)
    pred_var = logvar.exp().mean(dim=(0, 1))
    ratio = pred_var / NOISE_STD.square()
    assert torch.all((ratio > 0.6) & (ratio < 1.6)), f"predicted / true noise variance = {ratio.tolist()}"
    # the mean is close to the noiseless function: error variance ~ noise variance
    mse = (mean.mean(0) - y_test).square().mean(0)
    assert torch.all(mse < 1.6 * NOISE_STD.square() + 1e-3), mse.tolist()
    # Gaussian NLL on fresh data is close to the entropy of the true noise
    true_nll = float((0.5 * torch.log(2 * math.pi * math.e * NOISE_STD.square())).mean())
    _, nll = model.evaluate(x_test, y_test)
    assert float(nll[model.elites].mean()) < true_nll + 0.3
    # elites are the members with the lowest hold-out loss
    order = torch.argsort(model.holdout_mse)
    assert model.elites.tolist() == order[:5].tolist()
    assert model.holdout_mse[model.elites].max() <= model.holdout_mse.max()


def test_epoch_and_time_caps_bound_training():
    model, gen = _ensemble(seed=1)
    x, y = _linear_data(3000, gen)
    out = model.fit(x, y, gen, max_epochs=3)
    assert out["model_epochs"] == 3
    assert out["model_updates"] == 3 * 10 and out["model_capped"] == 1  # 2400 training samples / 256
    out = model.fit(x, y, gen, max_epochs=0, max_seconds=1e-6)  # any minibatch takes longer
    assert out["model_epochs"] == 1 and out["model_updates"] == 1  # the cap is checked every minibatch
    assert out["model_train_seconds"] < 5.0
    out = model.fit(x, y, gen, max_updates=25)
    assert out["model_updates"] == 25 and out["model_epochs"] == 3 and out["model_capped"] == 1


def test_holdout_is_capped_and_members_differ():
    model, gen = _ensemble(seed=2, max_holdout=100)
    x, y = _linear_data(2000, gen)
    out = model.fit(x, y, gen, max_epochs=2)
    assert out["model_train_samples"] == 1900
    w = model.weights[0]
    assert not torch.allclose(w[0], w[1])  # members are initialised independently


def test_rejects_too_little_data():
    model, gen = _ensemble()
    with pytest.raises(ValueError, match="at least 2 samples"):
        model.fit(torch.zeros(1, 6), torch.zeros(1, 4), gen)
