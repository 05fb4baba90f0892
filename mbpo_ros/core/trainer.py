"""MBPO: the algorithm loop (Janner et al. 2019), as calls that a synchronous loop or a worker can drive.

    mbpo = MBPO(obs_dim, act_dim, preset("Hopper-v5"), get_task("Hopper-v5"))
    obs, _ = env.reset(seed=0)
    while mbpo.env_steps < n:
        act = mbpo.act(obs, deterministic=False)   # uniform random during init_random_steps
        next_obs, rew, term, trunc, _ = env.step(act)
        mbpo.add(obs, act, rew, next_obs, term)
        metrics = mbpo.step()                      # retrain + roll out when due, then UTD updates
        obs = env.reset()[0] if term or trunc else next_obs

Schedule of :meth:`step` (official MBPO): nothing during ``init_random_steps`` (or before
``learning_starts`` when that is set, see core/schedule.py); from then on the
ensemble is retrained on all real data and ``rollout_batch_size`` branched rollouts are made every
``model_train_freq`` env steps (first at the first trained env step), and every env step does
``utd`` SAC updates on batches mixing ``real_ratio`` real and the rest model data.
Epochs (for the rollout-length schedule) count ``epoch_length`` env steps after ``init_random_steps``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from mbpo_ros.core import schedule
from mbpo_ros.core.allocator import retain_freed_memory
from mbpo_ros.core.buffer import ReplayBuffer
from mbpo_ros.core.config import Config, config_to_dict, resolve_device, validate
from mbpo_ros.core.ensemble import ProbabilisticEnsemble
from mbpo_ros.core.policy import PolicySnapshot
from mbpo_ros.core.rollout import branched_rollout, rollout_length
from mbpo_ros.core.sac import SAC
from mbpo_ros.core.schedule import Counters
from mbpo_ros.core.state_dict import flatten_state_dict, unflatten_state_dict
from mbpo_ros.core.tasks import TaskSpec

__all__ = ["MBPO", "STATE_FORMAT"]

STATE_FORMAT = "mbpo_ros.core.MBPO/1"
_GATHER_CHUNK = 256  # SAC batches gathered at once by update()


class MBPO:
    """Model-Based Policy Optimization on one task.

    Args:
        obs_dim, act_dim: observation and action sizes (actions live in [-1, 1]^act_dim).
        cfg: Config (validated here; copied).
        task: TaskSpec giving the termination (and optionally reward) function for rollouts.
    Attributes:
        env_steps, sac_updates, model_trains: counters. real_buffer, model_buffer: ReplayBuffer.
        ensemble: ProbabilisticEnsemble. sac: SAC. device: torch.device.
    """

    def __init__(self, obs_dim: int, act_dim: int, cfg: Config, task: TaskSpec):
        validate(cfg)
        if task.obs_dim != obs_dim or task.act_dim != act_dim:
            raise ValueError(
                f"task {task.name!r} has obs_dim {task.obs_dim}, act_dim {task.act_dim}; MBPO was given {obs_dim}, {act_dim}"
            )
        self.cfg = copy.deepcopy(cfg)
        self.task = task
        # goal relabelling (mbpo.*relabel*) where the task offers it; tasks without goals ignore it
        self.relabels = task.has_goals
        if cfg.mbpo.goal_free_model and self.relabels:
            task.check_goal_free()
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu":
            retain_freed_memory()
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.seed)
        self.np_rng = np.random.default_rng(cfg.seed)
        self.ensemble = ProbabilisticEnsemble(obs_dim + act_dim, obs_dim + 1, cfg.ensemble, self.device, self.generator)
        # target_entropy 0 = -act_dim (minus the number of joints of an arm)
        self.target_entropy = float(cfg.mbpo.target_entropy) or -float(act_dim)
        self.sac = SAC(obs_dim, act_dim, cfg.sac, self.target_entropy, self.device, self.generator)
        self.real_buffer = ReplayBuffer(cfg.mbpo.real_buffer_size, obs_dim, act_dim, self.device)
        self.model_buffer = ReplayBuffer(self._model_capacity(1), obs_dim, act_dim, self.device)
        self.env_steps = 0
        self.sac_updates = 0
        self.model_trains = 0
        self.last_model_train_step = -1
        self._sac_metrics: dict[str, torch.Tensor] | None = None
        self._updates_at_retrain: int | None = None  # sac_updates at this session's last retrain

    # ------------------------------------------------------------------ schedule
    @property
    def epoch(self) -> int:
        """Epochs of ``epoch_length`` env steps completed after the initial random steps."""
        m = self.cfg.mbpo
        return max(0, self.env_steps - m.init_random_steps) // m.epoch_length

    @property
    def rollout_horizon(self) -> int:
        return rollout_length(self.epoch, self.cfg.mbpo.rollout_schedule)

    def _model_capacity(self, horizon: int) -> int:
        """Model pool size as in official MBPO: retain_epochs * rollouts per epoch * horizon."""
        m = self.cfg.mbpo
        per_epoch = m.rollout_batch_size * math.ceil(m.epoch_length / m.model_train_freq)
        return max(1, m.model_retain_epochs * per_epoch * horizon)

    # ------------------------------------------------------------------ data and acting
    def add(self, obs, act, reward: float, next_obs, terminated: bool) -> None:
        """Store one real transition (NumPy). obs, next_obs: [obs_dim]; act: [act_dim] in [-1, 1]."""
        self.real_buffer.add(obs, act, reward, next_obs, terminated)
        self.env_steps += 1

    @torch.no_grad()
    def act(self, obs, deterministic: bool = False) -> np.ndarray:
        """obs: [obs_dim] or [B, obs_dim] -> action [act_dim] or [B, act_dim] in [-1, 1] (float32).

        Stochastic actions are uniform random during the initial random steps (MBPO's exploration).
        """
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        x2 = x.reshape(1, -1) if single else x
        if x2.shape[-1] != self.obs_dim:
            raise ValueError(f"observation has {x2.shape[-1]} values, the agent expects {self.obs_dim}")
        if not deterministic and self.env_steps < self.cfg.mbpo.init_random_steps:
            a = self.np_rng.uniform(-1.0, 1.0, (x2.shape[0], self.act_dim)).astype(np.float32)
        else:
            o = torch.as_tensor(x2, device=self.device)
            if deterministic:
                a = self.sac.actor.deterministic(o)
            else:
                noise = torch.randn(o.shape[0], self.act_dim, generator=self.generator, device=self.device)
                a = self.sac.actor.sample(o, noise)[0]
            a = a.cpu().numpy()
        return a[0] if single else a

    def policy_snapshot(self) -> PolicySnapshot:
        """Immutable NumPy copy of the current actor."""
        actor = self.sac.actor
        return PolicySnapshot(
            [w.detach().cpu().numpy() for w in actor.weights],
            [b.detach().cpu().numpy() for b in actor.biases],
            actor.log_std_min,
            actor.log_std_max,
            version=self.sac_updates,
        )

    # ------------------------------------------------------------------ the three kinds of work
    def train_model(self) -> dict:
        """Fit the ensemble on all real data (hold-out early stopping, elites). Returns metrics."""
        m = self.cfg.mbpo
        if self.real_buffer.size < 2:
            raise ValueError(f"cannot train the model on {self.real_buffer.size} real transitions; need >= 2")
        obs, act, rew, next_obs, _ = self.real_buffer.chronological()
        if m.model_relabel and self.relabels:
            obs, next_obs, rew = self.task.relabel(obs, act, next_obs, self.generator)
        if m.goal_free_model and self.relabels:
            obs, next_obs = self.task.strip_goal(obs), self.task.strip_goal(next_obs)
        inputs = torch.cat([obs, act], dim=-1)
        targets = torch.cat([next_obs - obs, rew.unsqueeze(-1)], dim=-1)
        out = self.ensemble.fit(
            inputs, targets, self.generator, m.max_model_epochs, m.max_model_train_seconds, m.max_model_updates
        )
        self.model_trains += 1
        self.last_model_train_step = self.env_steps
        return out

    def rollout(self) -> dict:
        """Branched rollouts from real states into the model buffer (resized with the horizon)."""
        m = self.cfg.mbpo
        horizon = self.rollout_horizon
        self.model_buffer.resize(self._model_capacity(horizon))
        return branched_rollout(
            self.ensemble,
            self.sac.actor,
            self.task,
            self.real_buffer,
            self.model_buffer,
            m.rollout_batch_size,
            horizon,
            m.uncertainty_threshold,
            self.generator,
            m.rollout_chunk,
            m.rollout_relabel_ratio if self.relabels else 0.0,
            m.goal_free_model and self.relabels,
        )

    def update(self, n: int, sync: bool = True) -> dict:
        """``n`` SAC updates on mixed real/model batches; one host sync at the end (none if not sync).

        Returns {"critic_loss", "actor_loss", "alpha", "entropy", "q_mean"} of the last update as
        floats (empty dict when n == 0 or not sync), plus "sac_updates".
        """
        if n <= 0:
            return {"sac_updates": self.sac_updates}
        if self.real_buffer.size == 0:
            raise ValueError("cannot update SAC: no real transitions yet")
        B = self.cfg.sac.batch_size
        n_real = int(B * self.cfg.mbpo.real_ratio) if self.model_buffer.size > 0 else B
        n_model = B - n_real
        g = self.generator
        done_updates = 0
        while done_updates < n:
            k = min(_GATHER_CHUNK, n - done_updates)
            parts = []
            if n_real:
                parts.append(self.real_buffer.gather(self.real_buffer.sample_indices((k, n_real), g)))
            if n_model:
                parts.append(self.model_buffer.gather(self.model_buffer.sample_indices((k, n_model), g)))
            obs, act, rew, next_obs, done = (
                parts[0] if len(parts) == 1 else tuple(torch.cat(ts, dim=1) for ts in zip(*parts))
            )
            if self.cfg.mbpo.relabel_ratio > 0 and self.relabels:
                obs, rew, next_obs = self._relabel(obs, act, rew, next_obs)
            noise = torch.randn(k, 2, B, self.act_dim, generator=g, device=self.device)
            for i in range(k):
                self._sac_metrics = self.sac.update(obs[i], act[i], rew[i], next_obs[i], done[i], noise[i])
            done_updates += k
        self.sac_updates += n
        return self.sac_metrics() if sync else {"sac_updates": self.sac_updates}

    def _relabel(self, obs, act, rew, next_obs):
        """A random ``relabel_ratio`` of the batches' transitions ([k, B, ...]) with new goals."""
        k, b = rew.shape
        g = self.generator
        o2, n2, r2 = self.task.relabel(obs.flatten(0, 1), act.flatten(0, 1), next_obs.flatten(0, 1), g)
        mask = torch.rand(k, b, generator=g, device=self.device) < self.cfg.mbpo.relabel_ratio
        m3 = mask.unsqueeze(-1)
        return (torch.where(m3, o2.view_as(obs), obs), torch.where(mask, r2.view_as(rew), rew),
                torch.where(m3, n2.view_as(next_obs), next_obs))

    def sac_metrics(self) -> dict:
        """The last SAC update's metrics as floats (a host sync)."""
        out = {k: float(v) for k, v in (self._sac_metrics or {}).items()}
        out["sac_updates"] = self.sac_updates
        return out

    @property
    def counters(self) -> Counters:
        return Counters(self.env_steps, self.sac_updates, self.model_trains, self.last_model_train_step)

    def retrain(self) -> dict:
        """Retrain the model and roll it out (core.schedule says when); with ``real_ratio`` 1 no model
        is needed and only the retrain step is recorded. Returns the model and rollout metrics."""
        m = self.cfg.mbpo
        self._updates_at_retrain = self.sac_updates
        if m.real_ratio < 1.0 and self.real_buffer.size >= 2:
            out = self.train_model()
            out.update(self.rollout())
            return out
        self.last_model_train_step = self.env_steps
        return {}

    def step(self) -> dict:
        """Everything due after one env step (call after :meth:`add`): a retrain when
        core.schedule says one is due, then ``utd`` SAC updates. Returns the metrics of what ran:
        model and rollout metrics (plus the last SAC metrics) after a retrain, else {}.
        Host syncs only at retrains."""
        m = self.cfg.mbpo
        c = self.counters
        if not schedule.training_started(c, m):
            return {}
        out: dict = {}
        if schedule.retrain_due(c, m):
            if self._sac_metrics is not None and m.real_ratio < 1.0 and self.real_buffer.size >= 2:
                out.update(self.sac_metrics())
            out.update(self.retrain())
        if m.utd > 0:
            self.update(m.utd, sync=False)
        return out

    def work(self, chunk: int) -> tuple[str, dict]:
        """One bounded piece of asynchronous training (core.schedule.next_work): a retrain, at most
        ``chunk`` SAC updates, or nothing. Returns (kind, metrics); kind is "idle" when nothing is due."""
        w = schedule.next_work(self.counters, self.cfg.mbpo, self._updates_at_retrain, chunk)
        if w.kind == "retrain":
            return w.kind, self.retrain()
        if w.kind == "update":
            self.update(w.updates, sync=False)
        return w.kind, {}

    # ------------------------------------------------------------------ state
    def state(self, drop_last_real: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray], dict]:
        """Everything needed to continue exactly: (tensors, arrays, JSON-able meta).

        arrays holds the policy snapshot (``policy/`` + PolicySnapshot.to_arrays()), so a deployed
        policy can be loaded without torch. drop_last_real: leave the newest k real transitions
        out of the state (env_steps counts k fewer; the buffer is stored oldest first): a learner
        whose newest transitions are not yet durable elsewhere (the transition log) checkpoints
        only what it can be given again.
        """
        tensors: dict[str, torch.Tensor] = {}
        for prefix, module in (("ensemble/", self.ensemble), ("sac/", self.sac)):
            for k, v in module.state_dict().items():
                tensors[prefix + k] = v.detach().cpu().contiguous().clone()
        ens_opt, ens_skel = flatten_state_dict(self.ensemble.optimizer.state_dict(), "optim/ensemble/")
        sac_opt, sac_skel = flatten_state_dict(self.sac.optimizer.state_dict(), "optim/sac/")
        for d in (ens_opt, sac_opt):
            tensors.update({k: v.detach().cpu().contiguous().clone() for k, v in d.items()})
        real_t, real_meta = self.real_buffer.state("real", drop_last=drop_last_real)
        model_t, model_meta = self.model_buffer.state("model")
        tensors.update(real_t)
        tensors.update(model_t)
        tensors["rng/torch"] = self.generator.get_state().clone()
        meta = {
            "format": STATE_FORMAT,
            "task": self.task.name,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "config": config_to_dict(self.cfg),
            "identity": self.task.identity,
            "counters": {
                "env_steps": self.env_steps - int(drop_last_real),
                "sac_updates": self.sac_updates,
                "model_trains": self.model_trains,
                "last_model_train_step": self.last_model_train_step,
            },
            "np_rng": self.np_rng.bit_generator.state,
            "optim_ensemble": ens_skel,
            "optim_sac": sac_skel,
            "real_buffer": real_meta,
            "model_buffer": model_meta,
            # +inf = member not evaluated yet (before the first fit): meaningful, not divergence
            "non_finite_ok": ["ensemble/holdout_mse"],
        }
        arrays = {f"policy/{k}": v for k, v in self.policy_snapshot().to_arrays().items()}
        return tensors, arrays, meta

    def load_state(self, tensors: dict[str, torch.Tensor], arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Restore what :meth:`state` returned (the run then continues exactly)."""
        if meta.get("format") != STATE_FORMAT:
            raise ValueError(f"not an MBPO state: format {meta.get('format')!r}, expected {STATE_FORMAT!r}")
        if (meta["obs_dim"], meta["act_dim"]) != (self.obs_dim, self.act_dim):
            raise ValueError(
                f"checkpoint is for obs_dim {meta['obs_dim']}, act_dim {meta['act_dim']}; "
                f"this agent has {self.obs_dim}, {self.act_dim}"
            )
        for prefix, module in (("ensemble/", self.ensemble), ("sac/", self.sac)):
            sd = {k[len(prefix) :]: v.to(self.device) for k, v in tensors.items() if k.startswith(prefix)}
            module.load_state_dict(sd)
        self.ensemble.optimizer.load_state_dict(unflatten_state_dict(tensors, meta["optim_ensemble"], "optim/ensemble/"))
        self.sac.optimizer.load_state_dict(unflatten_state_dict(tensors, meta["optim_sac"], "optim/sac/"))
        self.real_buffer.load_state("real", tensors, meta["real_buffer"])
        self.model_buffer.load_state("model", tensors, meta["model_buffer"])
        self.generator.set_state(tensors["rng/torch"].cpu())
        self.np_rng.bit_generator.state = meta["np_rng"]
        c = meta["counters"]
        self.env_steps = int(c["env_steps"])
        self.sac_updates = int(c["sac_updates"])
        self.model_trains = int(c["model_trains"])
        self.last_model_train_step = int(c["last_model_train_step"])
        self._sac_metrics = None
