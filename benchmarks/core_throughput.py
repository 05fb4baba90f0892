"""MBPO core throughput at the Hopper settings, against this machine's own matmul throughput.

    .venv/bin/python benchmarks/core_throughput.py [--threads N] [--real 20000] [--horizon 15] [--quick]
    .venv/bin/python benchmarks/core_throughput.py --ratios-only --sac-ab [--sac-hidden 128]

Prints: SAC updates/s, ensemble training samples/s, rollout samples/s, seconds per 1,000 env
steps at the Hopper preset (4 retrains + 4 x 100k rollouts + 20,000 SAC updates) both at steady
state (a converged model retrained after 250 more transitions) and as the bound where every retrain
runs into the mbpo.max_model_updates cap (large data), and the achieved GFLOP/s of the SAC update and of an ensemble training step as a fraction of the measured
throughput of batched matmuls of the same shapes (measured in the same run, interleaved, best of
several repeats, because the machines are shared and noisy).

``--sac-ab`` also times the SAC update by autograd on the reference losses (``sac.gradients =
"autograd"``) interleaved with the hand-derived fast path (``"hand"``) on the same batches, and
prints the ratio: the measurement that keeps the fast path (core/sac.py) in the package.
``--sac-hidden``/``--sac-critics``/``--sac-layer-norm`` change the SAC's shape (the layer-normed
critics have no fast path: autograd only).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch

from mbpo_ros.core.config import preset
from mbpo_ros.core.tasks import get_task
from mbpo_ros.core.trainer import MBPO

OBS, ACT = 11, 3  # Hopper-v5


def best_time(fn, n: int, repeats: int = 5) -> float:
    """Best mean seconds per call over `repeats` runs of n calls (after one warm-up run)."""
    for _ in range(max(1, n // 5)):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best


def mlp_flops(dims: list[int], batch: int) -> int:
    """Forward FLOPs (multiply-adds x 2) of an MLP with these layer sizes on `batch` rows."""
    return 2 * batch * sum(a * b for a, b in zip(dims[:-1], dims[1:]))


def sac_update_flops(obs: int, act: int, hidden: int, layers: int, batch: int, critics: int = 2) -> int:
    """FLOPs of one fused SAC update (matmuls only).

    Forward: actor at s' and s, target twin critic at (s', a'), twin critic at (s, a) and at (s, pi(s)).
    Backward: ~2x forward for the parts that train (critic at (s, a), actor at s), ~1x for the
    critic at (s, pi(s)) (input gradient only), none for the no-grad target parts.
    """
    actor = mlp_flops([obs] + [hidden] * layers + [2 * act], batch)
    critic = critics * mlp_flops([obs + act] + [hidden] * layers + [1], batch)
    forward = 2 * actor + 3 * critic
    backward = 2 * critic + 2 * actor + critic
    return forward + backward


def ensemble_step_flops(in_dim: int, out_dim: int, hidden: int, layers: int, members: int, batch: int) -> int:
    """FLOPs of one ensemble training step: forward + ~2x backward, all members."""
    return 3 * members * mlp_flops([in_dim] + [hidden] * layers + [2 * out_dim], batch)


def bmm_gflops(e: int, m: int, k: int, n: int, iters: int) -> float:
    a, b = torch.randn(e, m, k), torch.randn(e, k, n)
    t = best_time(lambda: torch.bmm(a, b), iters)
    return 2 * e * m * k * n / t / 1e9


def hopper_data(n: int, seed: int = 0):
    """n random-action Hopper-v5 transitions (real simulator data, so model fits behave as in a run)."""
    import gymnasium as gym

    env = gym.make("Hopper-v5")
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    rows = []
    for _ in range(n):
        a = rng.uniform(-1, 1, ACT).astype(np.float32)
        nxt, r, term, trunc, _ = env.step(a)
        rows.append((obs, a, r, nxt, term))
        obs = env.reset()[0] if term or trunc else nxt
    return rows


def timed_fit(agent: MBPO, cap: int | None = None) -> tuple[float, dict]:
    """(seconds, metrics) of one ``agent.train_model()``; ``cap`` overrides mbpo.max_model_updates for
    this retrain only (0 = no cap: early stopping alone)."""
    keep = agent.cfg.mbpo.max_model_updates
    if cap is not None:
        agent.cfg.mbpo.max_model_updates = cap
    try:
        t = time.perf_counter()
        fit = agent.train_model()
        return time.perf_counter() - t, fit
    finally:
        agent.cfg.mbpo.max_model_updates = keep


def fit_summary(fit: dict) -> str:
    return (f"{fit['model_updates']} gradient steps = {fit['model_epochs']} epochs, "
            f"hold-out MSE {fit['model_holdout_mse']:.4f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: torch's)")
    p.add_argument("--real", type=int, default=20_000, help="real transitions in the buffer for the model fit")
    p.add_argument("--horizon", type=int, default=15, help="rollout length (Hopper's schedule ends at 15)")
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    p.add_argument("--ratios-only", action="store_true",
                   help="only the SAC update and ensemble step against matmul (no model fit, no rollout)")
    p.add_argument("--sac-ab", action="store_true",
                   help="A/B: SAC update by autograd (reference) against the hand-derived fast path")
    p.add_argument("--sac-hidden", type=int, default=None, help="SAC hidden units (default: the preset's 256)")
    p.add_argument("--sac-critics", type=int, default=None, help="SAC critics (default: 2)")
    p.add_argument("--sac-layer-norm", action="store_true", help="layer-normed critics (autograd only)")
    args = p.parse_args()
    if args.ratios_only:
        args.real, args.horizon = 2000, 1
    torch.set_num_threads(args.threads)
    reps = 2 if args.quick else 5
    print("command:", " ".join([sys.executable.split("/")[-1]] + sys.argv))
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}")

    cfg = preset("Hopper-v5")
    cfg.device = "cpu"
    if args.sac_hidden is not None:
        cfg.sac.hidden_size = args.sac_hidden
    if args.sac_critics is not None:
        cfg.sac.num_critics = args.sac_critics
    cfg.sac.critic_layer_norm = args.sac_layer_norm
    agent = MBPO(OBS, ACT, cfg, get_task("Hopper-v5"))
    data = hopper_data(args.real + 250)
    extra = data[args.real :]
    for row in data[: args.real]:
        agent.add(*row)

    # --- matmul throughput for the shapes that matter
    h, eh = cfg.sac.hidden_size, cfg.ensemble.hidden_size
    mm_big = bmm_gflops(1, 2048, 2048, 2048, 3)
    print(f"matmul 2048^3: {mm_big:.1f} GFLOP/s (machine reference)", flush=True)

    # --- model fits.
    # (1) The first fit from scratch, capped at mbpo.max_model_updates gradient steps: this is also
    #     what any retrain costs at most, whatever the data (the cap binds for good once an epoch of
    #     data is a few hundred minibatches, i.e. from about 100k real transitions on).
    # (2) Training on, uncapped, until early stopping ends it (what mbrl-lib's first fit does).
    # (3) Steady state: 250 more transitions, one retrain of the converged model with the preset's cap.
    agent.env_steps = cfg.mbpo.init_random_steps
    if args.ratios_only:
        agent.cfg.mbpo.max_model_updates = 1
        agent.cfg.mbpo.rollout_batch_size = cfg.mbpo.rollout_batch_size = 2000
    t_fit0, fit0 = timed_fit(agent)
    print(f"first model fit on {args.real} real transitions: {t_fit0:.1f} s, {fit_summary(fit0)} "
          f"(cap {agent.cfg.mbpo.max_model_updates} steps)", flush=True)
    if not args.ratios_only:
        t_conv, conv = timed_fit(agent, cap=0)
        print(f"trained on to convergence (no cap, early stopping): {t_conv:.1f} s more, {fit_summary(conv)}",
              flush=True)
    for row in extra:
        agent.add(*row)
    t_fit, fit = timed_fit(agent)
    print(f"steady-state retrain (+{len(extra)} transitions, converged model): {t_fit:.1f} s, {fit_summary(fit)}",
          flush=True)

    # --- rollout at the given horizon (fills the model buffer for the SAC mixture)
    t = time.perf_counter()
    agent.model_buffer.resize(agent._model_capacity(args.horizon))
    from mbpo_ros.core.rollout import branched_rollout

    ro = branched_rollout(agent.ensemble, agent.sac.actor, agent.task, agent.real_buffer, agent.model_buffer,
                          cfg.mbpo.rollout_batch_size, args.horizon, 0.0, agent.generator, cfg.mbpo.rollout_chunk)
    t_roll = time.perf_counter() - t
    # --- SAC update and ensemble step, each timed interleaved with a bmm of its own shape, so that
    # both see the same machine load (best of the repeats for each)
    n_upd = 50 if args.quick else 200
    ens = agent.ensemble
    g = torch.Generator().manual_seed(0)
    xn = torch.randn(cfg.ensemble.num_members, 256, OBS + ACT, generator=g)
    y = torch.randn(cfg.ensemble.num_members, 256, OBS + 1, generator=g) * 0.1

    def ens_step():
        loss = ens._loss(xn, y)
        ens.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ens.optimizer.step()

    a_s, b_s = torch.randn(2, 256, h), torch.randn(2, h, h)
    a_e, b_e = torch.randn(cfg.ensemble.num_members, 256, eh), torch.randn(cfg.ensemble.num_members, eh, eh)
    t_sac = t_ens = t_bs = t_be = t_auto = t_hand = float("inf")
    agent.update(10, sync=True)
    fast = agent.sac.hand_gradients
    if args.sac_ab and not fast:
        print("--sac-ab: this SAC shape has no hand-derived fast path (autograd only)")
    for _ in range(reps):
        t_bs = min(t_bs, best_time(lambda: torch.bmm(a_s, b_s), 100, 1))
        t_sac = min(t_sac, best_time(lambda: agent.update(n_upd, sync=False), 1, 1) / n_upd)
        if args.sac_ab and fast:
            for hand in (False, True):  # interleaved with each other and with the bmm reference
                agent.sac.hand_gradients = hand
                t = best_time(lambda: agent.update(n_upd, sync=False), 1, 1) / n_upd
                t_auto, t_hand = (t_auto, min(t_hand, t)) if hand else (min(t_auto, t), t_hand)
            agent.sac.hand_gradients = fast
        t_be = min(t_be, best_time(lambda: torch.bmm(a_e, b_e), 50, 1))
        t_ens = min(t_ens, best_time(ens_step, 20, 1))
    agent.sac_metrics()
    mm_sac = 2 * 2 * 256 * h * h / t_bs / 1e9
    mm_ens = 2 * cfg.ensemble.num_members * 256 * eh * eh / t_be / 1e9
    sac_flops = sac_update_flops(OBS, ACT, h, cfg.sac.num_hidden, cfg.sac.batch_size, cfg.sac.num_critics)
    sac_gf = sac_flops / t_sac / 1e9
    ens_flops = ensemble_step_flops(OBS + ACT, OBS + 1, eh, cfg.ensemble.num_hidden, cfg.ensemble.num_members, 256)
    ens_gf = ens_flops / t_ens / 1e9

    # --- per 1,000 env steps at the Hopper preset: 4 retrains + 4 rollouts + 20,000 SAC updates
    m = cfg.mbpo
    retrains = 1000 // m.model_train_freq
    t_sac_1000 = 1000 * m.utd * t_sac
    per_1000 = retrains * (t_fit + t_roll) + t_sac_1000
    per_1000_cap = retrains * (t_fit0 + t_roll) + t_sac_1000
    rollout_sps = ro["rollout_predicted"] / t_roll

    print(f"SAC update: {t_sac * 1e3:.2f} ms = {1 / t_sac:.0f} updates/s; {sac_flops / 1e6:.0f} MFLOP -> "
          f"{sac_gf:.1f} GFLOP/s = {100 * sac_gf / mm_sac:.0f}% of bmm [2,256,{h}]x[{h},{h}] measured "
          f"alongside ({mm_sac:.1f} GFLOP/s)")
    if args.sac_ab and fast:
        print(f"SAC update A/B (sac.gradients, {cfg.sac.num_critics} critics {cfg.sac.num_hidden}x{h}, batch "
              f"{cfg.sac.batch_size}): autograd {t_auto * 1e3:.2f} ms, hand {t_hand * 1e3:.2f} ms -> the fast path "
              f"takes {100 * t_hand / t_auto:.0f}% of autograd's time ({t_auto / t_hand:.2f}x)")
    print(f"ensemble train step (7x4x200, batch 256/member): {t_ens * 1e3:.2f} ms = "
          f"{7 * 256 / t_ens:.0f} samples/s (member-samples); {ens_flops / 1e6:.0f} MFLOP -> {ens_gf:.1f} GFLOP/s = "
          f"{100 * ens_gf / mm_ens:.0f}% of bmm [7,256,{eh}]x[{eh},{eh}] measured alongside ({mm_ens:.1f} GFLOP/s)")
    print(f"rollout: {m.rollout_batch_size} starts x horizon {args.horizon}: {t_roll:.2f} s, "
          f"{rollout_sps:.0f} model samples/s ({ro['rollout_samples']} stored)")
    print(
        f"per 1,000 env steps (Hopper: {retrains} retrains + rollouts of horizon {args.horizon}, "
        f"{1000 * m.utd} SAC updates):"
    )
    print(
        f"  steady state at {args.real} transitions: {per_1000:.0f} s  [retrains {retrains * t_fit:.0f} s, "
        f"rollouts {retrains * t_roll:.0f} s, SAC {t_sac_1000:.0f} s]"
    )
    print(
        f"  bound, every retrain at the {cfg.mbpo.max_model_updates}-step cap: {per_1000_cap:.0f} s  "
        f"[retrains {retrains * t_fit0:.0f} s, rollouts {retrains * t_roll:.0f} s, SAC {t_sac_1000:.0f} s]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
