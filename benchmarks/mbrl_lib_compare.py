"""Head-to-head against mbrl-lib 0.2.0 (Meta's `mbrl` on PyPI) on this machine, at the Hopper-v5 sizes.

mbrl 0.2.0 pins gymnasium 0.26.3, hydra-core 1.0.3 and omegaconf < 2.1, which clash with this
venv, so it lives in a venv of its own (outside the repository). hydra-core 1.0.3 does not import
on Python 3.11 (a dataclass with a mutable default in hydra.conf), so that venv gets hydra-core
1.3.2 / omegaconf 2.3.0: mbrl only uses them to read configs and to build objects, nothing that
is timed here. Install (once):

    python3.11 -m venv /tmp/mbrl-venv
    /tmp/mbrl-venv/bin/pip install torch==2.13.0   # the Makefile's TORCH_SPEC; pip's config here picks +cpu
    /tmp/mbrl-venv/bin/pip install --no-deps mbrl==0.2.0
    /tmp/mbrl-venv/bin/pip install numpy gymnasium==0.26.3 hydra-core==1.3.2 omegaconf==2.3.0 termcolor tqdm imageio

Run (from the repository root, in this repository's venv):

    .venv/bin/python benchmarks/mbrl_lib_compare.py --mbrl-python /tmp/mbrl-venv/bin/python --threads 1
    .venv/bin/python benchmarks/mbrl_lib_compare.py --mbrl-python /tmp/mbrl-venv/bin/python --threads 2
    ... --quick   # a smoke run with small sizes

This process measures ours and drives the mbrl-lib half, which runs as a child process in the
other venv (this same file with `--side mbrl`; it imports mbrl at run time, nothing of mbrl-lib is
copied here) and answers one JSON line per command, so that the two sides' measurements
interleave: fit ours (capped at max_model_updates, then trained on without the cap until early
stopping, so that it is converged as mbrl-lib's uncapped first fit is), fit mbrl, refit ours,
refit mbrl (both: +250 transitions, steady state), rollouts, then SAC updates ours / mbrl
identical / mbrl own settings, repeated, best of each. Both sides get the same Hopper-v5 data:
random actions, seed 0 (training, 10,000 + 250 transitions) and seed 1 (2,000 test transitions,
on which both models' elite mean-prediction MSE is measured in raw units).

mbrl-lib is built from its own shipped configs (mbrl/examples/conf: dynamics_model/
gaussian_mlp_ensemble.yaml, algorithm/mbpo.yaml, overrides/mbpo_hopper.yaml) with the calls that
mbrl.algorithms.mbpo.train makes: create_one_dim_tr_model, create_replay_buffer (float64),
ModelTrainer(model_lr, model_wd), train_model_and_save_model_and_data (work_dir=None: no saving),
rollout_model_and_populate_sac_buffer, sac_agent.update_parameters(buffer, batch, updates,
logger, reverse_mask=True) with its Logger. Its SAC is built as pytorch_sac_pranz24.SAC(11, Box,
args) directly, because the shipped agent config's action_space `_target_: gym.env.Box` cannot be
instantiated with gymnasium.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

OBS, ACT = 11, 3  # Hopper-v5
BATCH = 256
HORIZON = 15
TAG = "@@ "  # prefix of the child's answer lines (anything else it prints is passed through)

INSTALL = """mbrl-lib is not installed for {py}. Install it (outside the repository):

    python3.11 -m venv /tmp/mbrl-venv
    /tmp/mbrl-venv/bin/pip install torch==2.13.0
    /tmp/mbrl-venv/bin/pip install --no-deps mbrl==0.2.0
    /tmp/mbrl-venv/bin/pip install numpy gymnasium==0.26.3 hydra-core==1.3.2 omegaconf==2.3.0 termcolor tqdm imageio

then run: .venv/bin/python benchmarks/mbrl_lib_compare.py --mbrl-python /tmp/mbrl-venv/bin/python --threads 1
"""


# ------------------------------------------------------------------------------------------------
# data (generated once, in this venv: gymnasium 1.x Hopper-v5)
# ------------------------------------------------------------------------------------------------


def hopper_arrays(n: int, seed: int) -> dict[str, np.ndarray]:
    """n random-action Hopper-v5 transitions as arrays (obs, act, rew, next_obs, term): the same
    transitions as benchmarks/core_throughput.py's, from its generator (this venv only)."""
    from core_throughput import hopper_data  # this script's folder is on sys.path

    o, a, r, no, d = zip(*hopper_data(n, seed))
    f = np.float32
    return {
        "obs": np.asarray(o, f),
        "act": np.asarray(a, f),
        "rew": np.asarray(r, f),
        "next_obs": np.asarray(no, f),
        "term": np.asarray(d, bool),
    }


def make_data(path: Path, n_train: int, n_test: int) -> None:
    if path.exists():
        with np.load(path) as z:
            if z["obs"].shape[0] == n_train and z["test_obs"].shape[0] == n_test:
                return
    tr, te = hopper_arrays(n_train, 0), hopper_arrays(n_test, 1)
    np.savez(path, **tr, **{f"test_{k}": v for k, v in te.items()})


# ------------------------------------------------------------------------------------------------
# the mbrl-lib side (child process, mbrl venv)
# ------------------------------------------------------------------------------------------------


class MbrlSide:
    def __init__(self, data: Path, n_real: int, threads: int):
        import gymnasium
        import mbrl
        import mbrl.algorithms.mbpo as mbpo
        import mbrl.env.termination_fns as term_fns
        import mbrl.models
        import mbrl.planning
        import mbrl.third_party.pytorch_sac_pranz24 as pranz24
        import mbrl.util
        import mbrl.util.common
        import omegaconf
        from mbrl.planning.sac_wrapper import SACAgent
        from omegaconf import OmegaConf

        torch.set_num_threads(threads)
        self.mbpo, self.common, self.util = mbpo, mbrl.util.common, mbrl.util
        conf = Path(mbrl.__file__).parent / "examples" / "conf"
        self.cfg = cfg = OmegaConf.create(
            {
                "dynamics_model": OmegaConf.load(conf / "dynamics_model" / "gaussian_mlp_ensemble.yaml"),
                "algorithm": OmegaConf.load(conf / "algorithm" / "mbpo.yaml"),
                "overrides": OmegaConf.load(conf / "overrides" / "mbpo_hopper.yaml"),
                "device": "cpu",
                "seed": 0,
                "log_frequency_agent": 1000,
            }
        )
        # hydra-core 1.0.3 (mbrl's pin) did not instantiate nested configs; 1.3 does unless told not to
        cfg.dynamics_model._recursive_ = False
        ov = cfg.overrides
        z = np.load(data)
        self.z = {k: z[k] for k in z.files}
        self.n_real = n_real
        # --- real data buffer and model, as mbrl.algorithms.mbpo.train builds them
        dtype = np.double if cfg.algorithm.get("normalize_double_precision", False) else np.float32
        self.rng = np.random.default_rng(seed=cfg.seed)
        self.replay = self.common.create_replay_buffer(
            cfg, (OBS,), (ACT,), rng=self.rng, obs_type=dtype, action_type=dtype, reward_type=dtype
        )
        self._add(0, n_real)
        self.model = self.common.create_one_dim_tr_model(cfg, (OBS,), (ACT,))
        self.trainer = mbrl.models.ModelTrainer(
            self.model, optim_lr=ov.model_lr, weight_decay=ov.model_wd, logger=None
        )
        # --- SAC agents: mbrl's own Hopper settings and ours (identical settings)
        space = gymnasium.spaces.Box(-1.0, 1.0, (ACT,), np.float32)
        obs_space = gymnasium.spaces.Box(-np.inf, np.inf, (OBS,), np.float64)
        own_args = cfg.algorithm.agent.args
        same_args = OmegaConf.create(OmegaConf.to_container(own_args, resolve=True))
        same_args.hidden_size, same_args.target_update_interval = 256, 1
        same_args.automatic_entropy_tuning, same_args.target_entropy, same_args.alpha = True, -1.0, 1.0
        same_args.gamma, same_args.tau, same_args.lr = 0.99, 5e-3, 3e-4
        torch.manual_seed(0)
        self.agents = {
            "own": SACAgent(pranz24.SAC(OBS, space, own_args)),
            "same": SACAgent(pranz24.SAC(OBS, space, same_args)),
        }
        self.ratio = {"own": float(cfg.algorithm.real_data_ratio), "same": 0.05}
        self.batch = {"own": int(ov.sac_batch_size), "same": BATCH}
        self.updates = {"own": 0, "same": 0}
        self.sac_buffers: dict = {}
        import tempfile

        self.logdir = tempfile.mkdtemp(prefix="mbrl_compare_log_")
        self.logger = self.util.Logger(self.logdir, enable_back_compatible=True)
        self.model_env = mbrl.models.ModelEnv(
            type("EnvSpaces", (), {"observation_space": obs_space, "action_space": space})(),
            self.model,
            term_fns.hopper,
            None,
            generator=torch.Generator().manual_seed(0),
        )
        self.settings = {
            "overrides/mbpo_hopper.yaml": OmegaConf.to_container(ov, resolve=True),
            "algorithm/mbpo.yaml (not agent)": {
                k: v for k, v in OmegaConf.to_container(cfg.algorithm, resolve=True).items() if k != "agent"
            },
            "dynamics_model/gaussian_mlp_ensemble.yaml": OmegaConf.to_container(
                cfg.dynamics_model, resolve=True
            ),
            "same_settings_sac_args": OmegaConf.to_container(same_args, resolve=True),
            "versions": {
                "mbrl": mbrl.__version__,
                "torch": torch.__version__,
                "omegaconf": omegaconf.__version__,
                "gymnasium": gymnasium.__version__,
                "threads": torch.get_num_threads(),
            },
        }

    def _add(self, lo: int, hi: int) -> None:
        z = self.z
        n = hi - lo
        self.replay.add_batch(
            z["obs"][lo:hi],
            z["act"][lo:hi],
            z["next_obs"][lo:hi],
            z["rew"][lo:hi],
            z["term"][lo:hi],
            np.zeros(n, bool),
        )

    def test_mse(self) -> float:
        """Mean over the elites of the per-member MSE of the mean prediction on the test set (raw units)."""
        z = self.z
        with torch.no_grad():
            x = self.model._get_model_input(z["test_obs"], z["test_act"])
            mean, _ = self.model.model.forward(x, use_propagation=False)
            y = torch.as_tensor(
                np.concatenate([z["test_next_obs"] - z["test_obs"], z["test_rew"][:, None]], 1)
            )
            mse = (mean - y).square().mean(dim=(1, 2))
            el = self.model.model.elite_models
            return float(mse[list(el)].mean() if el is not None else mse.mean())

    def fit(self, extra: int = 0) -> dict:
        if extra:
            self._add(self.n_real, self.n_real + extra)
        epochs, best = [0], [float("nan")]

        def cb(_model, _it, epoch, _loss, _score, best_score):
            epochs[0] = epoch + 1
            best[0] = float(best_score.mean())

        n = self.replay.num_stored
        n_train = n - int(n * self.cfg.overrides.validation_ratio)
        t = time.perf_counter()
        self.common.train_model_and_save_model_and_data(
            self.model, self.trainer, self.cfg.overrides, self.replay, work_dir=None, callback=cb
        )
        dt = time.perf_counter() - t
        steps = epochs[0] * math.ceil(n_train / self.cfg.overrides.model_batch_size)
        return {
            "seconds": dt,
            "epochs": epochs[0],
            "updates": steps,
            "val_mse": best[0],
            "test_mse": self.test_mse(),
            "data": n,
        }

    def rollout(self, which: str, starts: int, horizon: int) -> dict:
        ov = self.cfg.overrides
        trains_per_epoch = int(np.ceil(ov.epoch_length / ov.freq_train_model))
        cap = horizon * starts * trains_per_epoch * ov.num_epochs_to_retain_sac_buffer
        buf = self.mbpo.maybe_replace_sac_buffer(None, (OBS,), (ACT,), cap, self.cfg.seed)
        t = time.perf_counter()
        self.mbpo.rollout_model_and_populate_sac_buffer(
            self.model_env,
            self.replay,
            self.agents[which],
            buf,
            self.cfg.algorithm.sac_samples_action,
            horizon,
            starts,
        )
        dt = time.perf_counter() - t
        self.sac_buffers[which] = buf
        return {"seconds": dt, "predicted": starts * horizon, "stored": len(buf)}

    def sac(self, which: str, n: int) -> dict:
        """n SAC updates as mbrl.algorithms.mbpo.train makes them; seconds per update."""
        agent = self.agents[which].sac_agent
        sac_buf = (
            self.sac_buffers[which] if which in self.sac_buffers else next(iter(self.sac_buffers.values()))
        )
        ratio, batch = self.ratio[which], self.batch[which]
        t = time.perf_counter()
        for _ in range(n):
            use_real = self.rng.random() < ratio
            buf = self.replay if use_real else sac_buf
            agent.update_parameters(buf, batch, self.updates[which], self.logger, reverse_mask=True)
            self.updates[which] += 1
            if self.updates[which] % self.cfg.log_frequency_agent == 0:
                self.logger.dump(self.updates[which], save=True)
        return {"seconds_per_update": (time.perf_counter() - t) / n}


def child_main(args) -> int:
    side = MbrlSide(Path(args.data), args.n_real, args.threads)

    def answer(obj) -> None:
        sys.stdout.write(TAG + json.dumps(obj) + "\n")
        sys.stdout.flush()

    answer({"ready": True, "settings": side.settings})
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd.pop("op")
        if op == "quit":
            break
        answer(getattr(side, op)(**cmd))
    return 0


# ------------------------------------------------------------------------------------------------
# the driver (this venv) and our side
# ------------------------------------------------------------------------------------------------


class Child:
    def __init__(self, argv: list[str], env: dict):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def read(self) -> dict:
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError(f"the mbrl-lib side exited (code {self.p.wait()})")
            if line.startswith(TAG):
                return json.loads(line[len(TAG) :])
            sys.stderr.write("[mbrl side] " + line)

    def __call__(self, op: str, **kw) -> dict:
        self.p.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.p.stdin.flush()
        return self.read()

    def close(self) -> None:
        try:
            self.p.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.p.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        self.p.wait(timeout=60)


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        name = next(
            (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), name
        )
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--mbrl-python", default="/tmp/mbrl-venv/bin/python", help="python of the venv holding mbrl 0.2.0"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads on both sides")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    p.add_argument("--data", default=None, help="npz with the Hopper data (made if missing)")
    p.add_argument("--side", choices=["ours", "mbrl"], default="ours", help=argparse.SUPPRESS)
    p.add_argument("--n-real", type=int, default=10_000, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side == "mbrl":
        return child_main(args)

    n_real, extra, n_test = (2000, 250, 500) if args.quick else (10_000, 250, 2000)
    starts = 5000 if args.quick else 100_000
    n_upd, reps = (20, 2) if args.quick else (200, 4)
    data = Path(args.data or f"/tmp/mbrl_compare_hopper_{n_real + extra}_{n_test}.npz")

    check = [
        args.mbrl_python,
        "-c",
        "import mbrl, hydra, omegaconf, gymnasium, termcolor, tqdm, imageio, torch",
    ]
    try:
        ok = subprocess.run(check, capture_output=True, check=False).returncode == 0
    except OSError:
        ok = False
    if not ok:
        print(INSTALL.format(py=args.mbrl_python), file=sys.stderr)
        return 2

    from core_throughput import timed_fit  # this script's folder is on sys.path

    from mbpo_ros.core.config import preset
    from mbpo_ros.core.rollout import branched_rollout
    from mbpo_ros.core.tasks import get_task
    from mbpo_ros.core.trainer import MBPO

    torch.set_num_threads(args.threads)
    print("command:", " ".join([".venv/bin/python"] + sys.argv))
    print(
        f"machine: {machine()}, torch {torch.__version__}, threads {args.threads}, load at start {load()}",
        flush=True,
    )
    make_data(data, n_real + extra, n_test)
    z = np.load(data)
    z = {k: z[k] for k in z.files}

    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
        PYTHONWARNINGS="ignore",
    )
    child = Child(
        [
            args.mbrl_python,
            os.path.abspath(__file__),
            "--side",
            "mbrl",
            "--threads",
            str(args.threads),
            "--data",
            str(data),
            "--n-real",
            str(n_real),
        ],
        env,
    )
    try:
        hello = child.read()
        s = hello["settings"]
        print("mbrl-lib settings read from its shipped configs:")
        for k, v in s.items():
            print(f"  {k}: {json.dumps(v)}")

        cfg = preset("Hopper-v5")
        cfg.device = "cpu"
        agent = MBPO(OBS, ACT, cfg, get_task("Hopper-v5"))
        for i in range(n_real):
            agent.add(z["obs"][i], z["act"][i], float(z["rew"][i]), z["next_obs"][i], bool(z["term"][i]))
        agent.env_steps = cfg.mbpo.init_random_steps  # as benchmarks/core_throughput.py
        tx = torch.as_tensor(np.concatenate([z["test_obs"], z["test_act"]], 1))
        ty = torch.as_tensor(np.concatenate([z["test_next_obs"] - z["test_obs"], z["test_rew"][:, None]], 1))

        def our_test_mse() -> float:
            mse, _ = agent.ensemble.evaluate(tx, ty)
            return float(mse[agent.ensemble.elites].mean())

        def our_fit(cap: int | None = None) -> dict:
            """One retrain; cap overrides mbpo.max_model_updates for it (0 = none: early stopping only)."""
            dt, f = timed_fit(agent, cap)
            return {
                "seconds": dt,
                "epochs": f["model_epochs"],
                "updates": f["model_updates"],
                "val_mse": f["model_holdout_mse"],
                "test_mse": our_test_mse(),
                "data": agent.real_buffer.size,
            }

        loads = [load()]
        res: dict = {}
        # --- 1. first model fit, then 2. steady-state refit after +250 transitions (interleaved).
        # Ours stops a retrain at max_model_updates (2000) gradient steps; mbrl-lib's first fit runs to
        # early stopping. So that both refits start from a converged model (steady state), ours then
        # trains on without the cap until early stopping ends it ("conv"), as mbrl-lib's first fit did.
        res["fit0_ours"] = our_fit()
        print("fit0 ours", res["fit0_ours"], flush=True)
        res["conv_ours"] = our_fit(cap=0)
        print("conv ours (no cap, to early stopping)", res["conv_ours"], flush=True)
        res["fit0_mbrl"] = child("fit")
        print("fit0 mbrl", res["fit0_mbrl"], flush=True)
        loads.append(load())
        for i in range(n_real, n_real + extra):
            agent.add(z["obs"][i], z["act"][i], float(z["rew"][i]), z["next_obs"][i], bool(z["term"][i]))
        res["fit1_ours"] = our_fit()
        print("fit1 ours", res["fit1_ours"], flush=True)
        res["fit1_mbrl"] = child("fit", extra=extra)
        print("fit1 mbrl", res["fit1_mbrl"], flush=True)
        loads.append(load())

        # --- 3. rollouts, starts x horizon 15
        agent.model_buffer.resize(agent._model_capacity(HORIZON))
        t = time.perf_counter()
        ro = branched_rollout(
            agent.ensemble,
            agent.sac.actor,
            agent.task,
            agent.real_buffer,
            agent.model_buffer,
            starts,
            HORIZON,
            0.0,
            agent.generator,
            cfg.mbpo.rollout_chunk,
        )
        res["roll_ours"] = {
            "seconds": time.perf_counter() - t,
            "predicted": ro["rollout_predicted"],
            "stored": ro["rollout_samples"],
        }
        print("rollout ours", res["roll_ours"], flush=True)
        res["roll_mbrl_same"] = child("rollout", which="same", starts=starts, horizon=HORIZON)
        print("rollout mbrl (SAC 2x256)", res["roll_mbrl_same"], flush=True)
        res["roll_mbrl_own"] = child("rollout", which="own", starts=starts, horizon=HORIZON)
        print("rollout mbrl (SAC 2x512, own)", res["roll_mbrl_own"], flush=True)
        loads.append(load())

        # --- 4. SAC updates, interleaved repeats, best of each
        agent.update(10, sync=True)
        child("sac", which="same", n=10)
        child("sac", which="own", n=10)
        t_ours = t_same = t_own = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            agent.update(n_upd, sync=False)
            agent.sac_metrics()
            t_ours = min(t_ours, (time.perf_counter() - t) / n_upd)
            t_same = min(t_same, child("sac", which="same", n=n_upd)["seconds_per_update"])
            t_own = min(t_own, child("sac", which="own", n=n_upd)["seconds_per_update"])
            print(
                f"SAC rep: ours {t_ours * 1e3:.2f} ms, mbrl same {t_same * 1e3:.2f} ms, "
                f"mbrl own {t_own * 1e3:.2f} ms (best so far)",
                flush=True,
            )
        loads.append(load())
    finally:
        child.close()

    # --- report
    ov = s["overrides/mbpo_hopper.yaml"]
    f0o, f0m, f1o, f1m = res["fit0_ours"], res["fit0_mbrl"], res["fit1_ours"], res["fit1_mbrl"]
    cvo = res["conv_ours"]
    ro_o, ro_s, ro_w = res["roll_ours"], res["roll_mbrl_same"], res["roll_mbrl_own"]
    retrains = 1000 // cfg.mbpo.model_train_freq
    utd = cfg.mbpo.utd
    own_utd = int(ov["num_sac_updates_per_step"]) // int(ov["sac_updates_every_steps"])
    per_ours = retrains * (f1o["seconds"] + ro_o["seconds"]) + 1000 * utd * t_ours
    per_ours_cap = retrains * (f0o["seconds"] + ro_o["seconds"]) + 1000 * utd * t_ours
    per_same = retrains * (f1m["seconds"] + ro_s["seconds"]) + 1000 * utd * t_same
    per_own = retrains * (f1m["seconds"] + ro_w["seconds"]) + 1000 * own_utd * t_own

    def row(name, a, b, unit="s", fmt="{:.2f}"):
        ratio = b / a if a > 0 else float("nan")
        print(f"| {name} | {fmt.format(a)} {unit} | {fmt.format(b)} {unit} | {ratio:.2f}x |")

    print()
    print(f"threads {args.threads}; load average (1/5/15 min) during the run: {'; '.join(loads)}")
    print("| figure | ours | mbrl-lib 0.2.0 | mbrl / ours |")
    print("|---|---|---|---|")
    row(
        "SAC update, identical settings (2x256, batch 256, auto entropy, target every step)",
        t_ours * 1e3,
        t_same * 1e3,
        "ms",
    )
    row(
        f"SAC update, mbrl's own Hopper settings (2x{ov['sac_hidden_size']}, "
        f"target every {ov['sac_target_update_interval']}, fixed alpha) vs ours",
        t_ours * 1e3,
        t_own * 1e3,
        "ms",
    )
    row(
        f"first model fit, {n_real} transitions (ours {f0o['epochs']} ep / {f0o['updates']} steps; "
        f"mbrl {f0m['epochs']} ep / ~{f0m['updates']} steps)",
        f0o["seconds"],
        f0m["seconds"],
    )
    row(
        f"first fit to convergence (ours: the capped fit + {cvo['epochs']} ep / {cvo['updates']} steps "
        f"without cap; mbrl as above)",
        f0o["seconds"] + cvo["seconds"],
        f0m["seconds"],
    )
    row(
        f"refit of the converged model after +{extra} (ours {f1o['epochs']} ep / {f1o['updates']} steps; "
        f"mbrl {f1m['epochs']} ep / ~{f1m['updates']} steps)",
        f1o["seconds"],
        f1m["seconds"],
    )
    print(
        f"| test-set MSE after first fit / convergence / refit ({n_test} seed-1 transitions, elites, raw units) | "
        f"{f0o['test_mse']:.4f} / {cvo['test_mse']:.4f} / {f1o['test_mse']:.4f} | "
        f"{f0m['test_mse']:.4f} / - / {f1m['test_mse']:.4f} | |"
    )
    print(
        f"| own hold-out MSE after first fit / convergence / refit | {f0o['val_mse']:.4f} / {cvo['val_mse']:.4f} / "
        f"{f1o['val_mse']:.4f} | {f0m['val_mse']:.4f} / - / {f1m['val_mse']:.4f} | |"
    )
    row(
        f"rollout {starts} x {HORIZON}, policy 2x256 (ours stores {ro_o['stored']}, mbrl {ro_s['stored']})",
        ro_o["seconds"],
        ro_s["seconds"],
    )
    row(
        f"rollout {starts} x {HORIZON}, mbrl with its own 2x{ov['sac_hidden_size']} policy",
        ro_o["seconds"],
        ro_w["seconds"],
    )
    sps = [r["stored"] / r["seconds"] for r in (ro_o, ro_s, ro_w)]
    pps = [r["predicted"] / r["seconds"] for r in (ro_o, ro_s, ro_w)]
    print(
        f"| model samples/s stored (predicted); mbrl: 2x256 / 2x{ov['sac_hidden_size']} policy | "
        f"{sps[0]:,.0f} ({pps[0]:,.0f}) | {sps[1]:,.0f} ({pps[1]:,.0f}) / {sps[2]:,.0f} ({pps[2]:,.0f}) | |"
    )
    row(
        f"per 1,000 env steps, identical settings ({retrains} refits + rollouts, {1000 * utd} SAC updates)",
        per_ours,
        per_same,
        fmt="{:.0f}",
    )
    row(
        f"per 1,000 env steps, bound: every one of ours at the {cfg.mbpo.max_model_updates}-step cap (large data) "
        "vs mbrl's steady state",
        per_ours_cap,
        per_same,
        fmt="{:.0f}",
    )
    row(
        f"per 1,000 env steps, mbrl at its own Hopper settings ({retrains} refits + rollouts, "
        f"{1000 * own_utd} SAC updates of 2x{ov['sac_hidden_size']})",
        per_ours,
        per_own,
        fmt="{:.0f}",
    )
    print(
        json.dumps(
            {
                "threads": args.threads,
                "loads": loads,
                "sac_ms": [t_ours * 1e3, t_same * 1e3, t_own * 1e3],
                "per_1000": [per_ours, per_same, per_own],
                "per_1000_ours_cap": per_ours_cap,
                **res,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
