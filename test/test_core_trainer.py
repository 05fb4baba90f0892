"""MBPO trainer: the schedule of step(), save / resume exactness, and `mbpo-ros gym` resume."""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest
import torch

from mbpo_ros.core.config import Config
from mbpo_ros.core.tasks import TaskSpec
from mbpo_ros.core.trainer import MBPO
from mbpo_ros.io.checkpoint import load_checkpoint, save_checkpoint

OD, AD = 3, 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _small_config(uncertainty: float = 0.0) -> Config:
    cfg = Config(seed=3, device="cpu")
    cfg.ensemble.hidden_size = 32
    cfg.ensemble.num_members, cfg.ensemble.num_elites = 4, 3
    cfg.sac.hidden_size, cfg.sac.batch_size = 32, 32
    m = cfg.mbpo
    m.init_random_steps, m.epoch_length, m.model_train_freq = 40, 40, 20
    m.rollout_batch_size, m.rollout_schedule, m.utd = 100, [0, 2, 1, 3], 2
    m.max_model_epochs, m.uncertainty_threshold, m.target_entropy = 3, uncertainty, -2.0
    return cfg


class ToyEnv:
    """x' = 0.9 x + 0.3 [a, a0] + noise; reward -|x|^2; terminates when |x0| > 2."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.x = self.rng.normal(size=OD)

    def step(self, a):
        nxt = 0.9 * self.x + 0.3 * np.array([a[0], a[1], a[0]]) + 0.05 * self.rng.normal(size=OD)
        rew, term = -float(nxt @ nxt), bool(abs(nxt[0]) > 2.0)
        obs, self.x = self.x, (self.rng.normal(size=OD) if term else nxt)
        return obs, rew, nxt, term


TASK = TaskSpec("toy", OD, AD, lambda o, a, n: n[:, 0].abs() > 2.0)


def _drive(agent: MBPO, env: ToyEnv, until: int) -> list[dict]:
    log = []
    while agent.env_steps < until:
        a = agent.act(env.x, deterministic=False)
        obs, rew, nxt, term = env.step(a)
        agent.add(obs, a, rew, nxt, term)
        out = agent.step()
        if out:
            log.append({"env_steps": agent.env_steps, **out})
    return log


def test_step_follows_the_mbpo_schedule():
    agent, env = MBPO(OD, AD, _small_config(), TASK), ToyEnv(0)
    log = _drive(agent, env, 39)
    assert log == [] and agent.sac_updates == 0 and agent.model_trains == 0
    log = _drive(agent, env, 140)
    # first retrain at init_random_steps, then every model_train_freq steps
    assert [r["env_steps"] for r in log] == [40, 60, 80, 100, 120, 140]
    assert agent.model_trains == 6
    assert agent.sac_updates == 2 * (140 - 40 + 1)
    # horizon grows with the epoch: epochs 0, 0, 1, 1, 2, 2 -> lengths 1, 1, 2, 2, 3, 3
    assert [r["rollout_horizon"] for r in log] == [1, 1, 2, 2, 3, 3]
    assert agent.model_buffer.capacity == 100 * 2 * 3
    assert all(r["model_epochs"] <= 3 for r in log)
    assert np.isfinite(log[-1]["critic_loss"]) and log[-1]["sac_updates"] > 0


def test_learning_starts_trains_on_the_random_data_while_the_actions_stay_random():
    """mbpo.learning_starts 20 < init_random_steps 40: the model and SAC train from env step 20 on,
    while act() stays uniform random (the same draws as without learning_starts) until step 40."""
    cfg = _small_config()
    cfg.mbpo.learning_starts = 20
    early, env = MBPO(OD, AD, cfg, TASK), ToyEnv(0)
    paper, env2 = MBPO(OD, AD, _small_config(), TASK), ToyEnv(0)
    log = _drive(early, env, 39)
    _drive(paper, env2, 39)
    assert [r["env_steps"] for r in log] == [20]
    assert early.sac_updates == 2 * (39 - 20 + 1) and paper.sac_updates == 0
    np.testing.assert_array_equal(early.real_buffer.act[:39].numpy(), paper.real_buffer.act[:39].numpy())
    log = _drive(early, env, 60)
    assert [r["env_steps"] for r in log] == [40, 60]
    assert early.sac_updates == 2 * (60 - 20 + 1)


def test_act_explores_uniformly_then_uses_the_policy():
    agent = MBPO(OD, AD, _small_config(), TASK)
    acts = np.stack([agent.act(np.zeros(OD)) for _ in range(500)])
    assert acts.min() < -0.9 and acts.max() > 0.9 and abs(acts.mean()) < 0.1
    snap = agent.policy_snapshot()
    obs = np.random.default_rng(0).normal(size=(8, OD)).astype(np.float32)
    np.testing.assert_allclose(agent.act(obs, deterministic=True), snap.act(obs), atol=1e-5)
    with pytest.raises(ValueError, match="observation has 4 values, the agent expects 3"):
        agent.act(np.zeros(4))


@pytest.mark.parametrize("uncertainty", [0.0, 0.5])
def test_save_resume_continues_exactly(tmp_path, uncertainty):
    cfg = _small_config(uncertainty)
    straight, env_a = MBPO(OD, AD, cfg, TASK), ToyEnv(1)
    _drive(straight, env_a, 150)

    first, env_b = MBPO(OD, AD, cfg, TASK), ToyEnv(1)
    _drive(first, env_b, 95)
    tensors, arrays, meta = first.state()
    save_checkpoint(tmp_path / "ckpt", tensors=tensors, arrays=arrays, meta=meta)  # core returns state, io writes it
    del first
    resumed = MBPO(OD, AD, cfg, TASK)
    resumed.load_state(*load_checkpoint(tmp_path / "ckpt"))
    assert resumed.env_steps == 95
    _drive(resumed, env_b, 150)

    ta, _, ma = straight.state()
    tb, _, mb = resumed.state()
    assert sorted(ta) == sorted(tb)
    for k in ta:
        assert torch.equal(ta[k], tb[k]), f"{k} differs after resume"
    assert ma["counters"] == mb["counters"] and ma["np_rng"] == mb["np_rng"]
    x = np.ones(OD, np.float32)
    np.testing.assert_array_equal(straight.act(x, True), resumed.act(x, True))


def test_load_state_rejects_other_shapes(tmp_path):
    agent = MBPO(OD, AD, _small_config(), TASK)
    tensors, arrays, meta = agent.state()
    other = MBPO(4, AD, _small_config(), TaskSpec("toy4", 4, AD, TASK.termination_fn))
    with pytest.raises(ValueError, match="checkpoint is for obs_dim 3"):
        other.load_state(tensors, arrays, meta)
    with pytest.raises(ValueError, match="task 'toy' has obs_dim 3"):
        MBPO(5, AD, _small_config(), TASK)


def _gym_args(out, steps, resume):
    from mbpo_ros import gym_train

    p = argparse.ArgumentParser()
    gym_train.add_arguments(p)
    return p.parse_args(
        ["--env", "InvertedPendulum-v5", "--steps", str(steps), "--seed", "5", "--out", str(out),
         "--threads", "1", "--eval-episodes", "1", "--no-tensorboard", "--quiet"]
        + (["--resume"] if resume else [])
        + [f"--set={kv}" for kv in ("mbpo.init_random_steps=60", "mbpo.epoch_length=60", "mbpo.model_train_freq=30",
                                    "mbpo.rollout_batch_size=200", "mbpo.utd=1", "mbpo.max_model_epochs=2",
                                    "sac.hidden_size=32", "ensemble.hidden_size=32", "sac.batch_size=32")]
    )


def test_gym_run_resumed_matches_uninterrupted_run(tmp_path):
    pytest.importorskip("gymnasium")
    from mbpo_ros import gym_train
    a = gym_train.train(_gym_args(tmp_path / "a", 240, False))
    gym_train.train(_gym_args(tmp_path / "b", 150, False))  # stops mid-epoch: checkpoint at its last step
    b = gym_train.train(_gym_args(tmp_path / "b", 240, True))
    assert a["env_steps"] == b["env_steps"] == 240 and a["episodes"] == b["episodes"]

    def rows(d):
        with open(d / "metrics.csv") as f:
            return [(r["env_steps"], r["eval_return"]) for r in csv.DictReader(f)]

    ra, rb = rows(tmp_path / "a"), rows(tmp_path / "b")
    # b logged an extra evaluation where it stopped (150); otherwise the same rows
    assert [r for r in rb if r[0] != "150"] == ra
    assert [r[0] for r in ra] == ["120", "180", "240"]
    ta, arr_a, _ = load_checkpoint(tmp_path / "a" / "checkpoint")
    tb, arr_b, _ = load_checkpoint(tmp_path / "b" / "checkpoint")
    for k in ta:
        assert torch.equal(ta[k], tb[k]), f"{k} differs"
    np.testing.assert_array_equal(arr_a["env/mj_state"], arr_b["env/mj_state"])
    assert (tmp_path / "a" / "learning_curve.png").is_file()
