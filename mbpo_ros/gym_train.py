"""`mbpo-ros gym`: MBPO on a Gymnasium MuJoCo task (the paper's benchmarks), with exact resume.

    mbpo-ros gym --env Hopper-v5 --steps 125000 --seed 0 --out runs/hopper0
    mbpo-ros gym --env Hopper-v5 --steps 125000 --seed 0 --out runs/hopper0 --resume
    mbpo-ros gym --env mbpo_ros/ArmReach-v0 --steps 3000 --out runs/arm   # the twin, in-process
    mbpo-ros gym --env mbpo_ros/ArmReach-v0 --robot ur5e.urdf --servo velocity --ee-body tool0 --task track

The ``mbpo_ros/...`` envs are the twin with an arm task (sim/reach_env.py): ``--robot`` names
any MJCF/URDF arm, ``--task`` any task of the registry (a plugin's too), with the "reach" preset
and the task's own reward and termination in the model rollouts.

Writes into --out: ``metrics.csv`` (one row per evaluation: env_steps, eval_return, wall_seconds,
...), TensorBoard scalars under ``tb/``, ``learning_curve.png`` and ``checkpoint/`` (rewritten
atomically after every evaluation). The checkpoint holds the whole learner (see MBPO.state) and
the training environment's exact state (MuJoCo integration state, its RNG, the episode so far), so
a run stopped and resumed continues as if never stopped.

Evaluation: every ``epoch_length`` env steps after the initial random steps (and at the end),
``eval_episodes`` episodes of the deterministic policy on a separate environment, seeded from the
run's seed and the env step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

CHECKPOINT_DIR = "checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="Hopper-v5",
                        help="Gymnasium task id (default Hopper-v5), or mbpo_ros/ArmReach-v0 (the twin)")
    parser.add_argument("--robot", default="", metavar="FILE",
                        help="mbpo_ros envs: MJCF or URDF arm (default: the bundled 6-DOF arm)")
    parser.add_argument("--servo", default="", choices=("", "velocity", "position"),
                        help="mbpo_ros envs: turn the arm's motors (or a URDF's missing actuators) into servos")
    parser.add_argument("--ee-body", default="", metavar="BODY",
                        help="mbpo_ros envs: add the end-effector site at this body")
    parser.add_argument("--task", default="", metavar="NAME",
                        help="mbpo_ros envs: task of the registry (reach, track, or a plugin's; default reach)")
    parser.add_argument("--steps", type=int, default=125_000, help="total env steps of the run (default 125000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default runs/<env>-s<seed>)")
    parser.add_argument("--resume", action="store_true", help="continue from --out/checkpoint if it exists")
    parser.add_argument("--device", default=None, help="torch device: auto, cpu, cuda (default: the preset's, auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--eval-episodes", type=int, default=None, help="episodes per evaluation (default: preset)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field by dotted name, VALUE in JSON (e.g. --set mbpo.utd=10); repeatable",
    )
    parser.add_argument(
        "--target-return", type=float, default=None, help="stop once an evaluation's mean return reaches this"
    )
    parser.add_argument("--no-tensorboard", action="store_true", help="write metrics.csv only")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def _build_config(args):
    from mbpo_ros.core.config import flatten, parse_overrides, preset, unflatten, validate

    cfg = preset("reach" if _is_arm_env(args.env) else args.env)
    known = flatten(cfg)
    overrides = parse_overrides(args.set)
    for key in overrides:
        if key not in known:
            raise ValueError(f"--set {key}: unknown config field; known fields: {', '.join(sorted(known))}")
    cfg = unflatten(overrides, cfg)
    cfg.seed = args.seed
    if args.device is not None:
        cfg.device = args.device
    if args.threads is not None:
        cfg.threads = args.threads
    if args.eval_episodes is not None:
        cfg.mbpo.eval_episodes = args.eval_episodes
    return validate(cfg)


def check_env_id(env_id: str) -> None:
    """ValueError (one line) unless ``env_id`` is a registered Gymnasium task, naming the closest ones."""
    import difflib

    import gymnasium as gym

    import mbpo_ros  # noqa: F401  (registers the mbpo_ros envs)

    if env_id.lower() in ("reach", "armreach", "track"):
        raise ValueError(f"--env {env_id}: the arm's tasks run in-process as --env mbpo_ros/ArmReach-v0 "
                         "[--task NAME] [--robot FILE], or over ROS 2 with `mbpo-ros train`")
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.75)
    hint = f"did you mean {' or '.join(close)}?" if close else f"the paper's tasks: {', '.join(_paper_tasks())}"
    raise ValueError(f"--env {env_id}: no such Gymnasium task; {hint}")


def _paper_tasks() -> list[str]:
    from mbpo_ros.core.config import PRESETS

    return [p for p in PRESETS if p != "reach"]


def _is_arm_env(env_id: str) -> bool:
    return env_id.startswith("mbpo_ros/")


def _env_kwargs(args) -> dict:
    """gym.make keyword arguments of an mbpo_ros env from --robot/--servo/--ee-body/--task."""
    kw = {}
    if args.robot:
        kw.update(robot=str(Path(args.robot).expanduser().resolve()), servo=args.servo, ee_body=args.ee_body)
    elif args.servo or args.ee_body:
        raise ValueError("--servo and --ee-body apply to --robot FILE")
    if args.task:
        kw["task"] = args.task
    if kw and not _is_arm_env(args.env):
        raise ValueError(f"--robot/--task apply to the mbpo_ros envs (mbpo_ros/ArmReach-v0), not {args.env}")
    return kw


class GymEnv:
    """A Gymnasium MuJoCo env with actions in [-1, 1], our own time limit and a saveable exact state."""

    def __init__(self, env_id: str, **env_kwargs):
        import gymnasium as gym

        check_env_id(env_id)
        made = gym.make(env_id, **env_kwargs)
        self.max_steps = int(made.spec.max_episode_steps or 1000)
        self.env = made.unwrapped
        space = self.env.action_space
        self.low = np.asarray(space.low, dtype=np.float64)
        self.high = np.asarray(space.high, dtype=np.float64)
        self.obs_dim = int(self.env.observation_space.shape[0])
        self.act_dim = int(space.shape[0])
        self.obs: np.ndarray | None = None
        self.info: dict = {}
        self.success_rate = float("nan")
        self.ep_len = 0
        self.ep_return = 0.0

    def reset(self, seed: int | None = None) -> np.ndarray:
        self.obs, _ = self.env.reset(seed=seed)
        self.ep_len, self.ep_return = 0, 0.0
        return self.obs

    def step(self, action: np.ndarray):
        """action in [-1, 1]^act_dim -> (next_obs, reward, terminated, truncated)."""
        scaled = self.low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (self.high - self.low)
        obs, rew, term, env_trunc, self.info = self.env.step(scaled)
        self.ep_len += 1
        self.ep_return += float(rew)
        self.obs = obs
        # an unwrapped Gymnasium MuJoCo env never truncates (its TimeLimit wrapper does); the arm envs do
        return obs, float(rew), bool(term), self.ep_len >= self.max_steps or bool(env_trunc)

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        st = np.empty(mujoco.mj_stateSize(self.env.model, spec), dtype=np.float64)
        mujoco.mj_getState(self.env.model, self.env.data, st, spec)
        arrays = {"env/mj_state": st, "env/obs": np.asarray(self.obs, dtype=np.float64)}
        meta = {"np_random": self.env.np_random.bit_generator.state, "ep_len": self.ep_len, "ep_return": self.ep_return}
        twin = getattr(self.env, "twin", None)
        if twin is not None:  # the arm env: its goal, episode clock and the twin's held command
            arrays.update({"env/goal": np.asarray(self.env.goal, dtype=np.float64),
                           "env/command": twin._command.copy(), "env/pos_target": twin._pos_target.copy()})
            meta["arm_steps"] = int(self.env._steps)
        return arrays, meta

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        import mujoco

        self.env.reset()  # lets the wrappers-free env initialise its internals
        mujoco.mj_setState(self.env.model, self.env.data, arrays["env/mj_state"], mujoco.mjtState.mjSTATE_INTEGRATION)
        self.env.np_random.bit_generator.state = meta["np_random"]
        self.obs = np.asarray(arrays["env/obs"])
        self.ep_len, self.ep_return = int(meta["ep_len"]), float(meta["ep_return"])
        twin = getattr(self.env, "twin", None)
        if twin is not None:
            self.env.goal = np.asarray(arrays["env/goal"])
            self.env._steps = int(meta["arm_steps"])
            self.env._obs = np.asarray(arrays["env/obs"], dtype=np.float32)
            twin._command, twin._pos_target = np.asarray(arrays["env/command"]), np.asarray(arrays["env/pos_target"])
            twin.set_goal(self.env._target()[:3])


def _eval_seed(seed: int, env_steps: int) -> int:
    """Evaluation episodes are seeded by the run's seed and the env step they happen at, so a resumed
    run evaluates exactly like an uninterrupted one."""
    return (seed + 1) * 100_000_000 + env_steps * 1000


def evaluate(policy, env: GymEnv, episodes: int, seed: int) -> tuple[float, float]:
    """Mean and std of the deterministic policy's return over ``episodes`` seeded episodes; the fraction
    of episodes whose last step reports ``is_success`` is left in ``env.success_rate`` (NaN if none does)."""
    returns, successes = [], []
    for i in range(episodes):
        obs = env.reset(seed=seed + i)
        while True:
            obs, _, term, trunc = env.step(policy.act(obs, deterministic=True))
            if term or trunc:
                break
        returns.append(env.ep_return)
        if "is_success" in env.info:
            successes.append(bool(env.info["is_success"]))
    env.success_rate = float(np.mean(successes)) if successes else float("nan")
    return float(np.mean(returns)), float(np.std(returns))


def train(args) -> dict:
    """The training loop; returns a summary dict (also used by tests)."""

    from mbpo_ros.core.tasks import get_task
    from mbpo_ros.core.trainer import MBPO
    from mbpo_ros.io.checkpoint import is_checkpoint, load_checkpoint
    from mbpo_ros.io.metrics import MetricsLogger, Progress

    env_kwargs = _env_kwargs(args)
    env = GymEnv(args.env, **env_kwargs)  # an unknown --env (or arm, task) fails here, before anything is written
    out = Path(args.out) if args.out is not None else Path("runs") / f"{args.env}-s{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT_DIR
    eval_env = GymEnv(args.env, **env_kwargs)
    if _is_arm_env(args.env):  # the env's own task (arm, settings), its reward and termination in rollouts
        from mbpo_ros.core.tasks import arm_task_spec

        task = arm_task_spec(env.env.task, env.env.identity["robot"])
    else:
        task = get_task(args.env, obs_dim=env.obs_dim, act_dim=env.act_dim)
    resumed = bool(args.resume and is_checkpoint(ckpt))
    if resumed:
        tensors, arrays, meta = load_checkpoint(ckpt)
        from mbpo_ros.core.config import config_from_dict

        cfg = config_from_dict(meta["config"])
        if args.device is not None:
            cfg.device = args.device
        if args.threads is not None:
            cfg.threads = args.threads
        agent = MBPO(env.obs_dim, env.act_dim, cfg, task)
        agent.load_state(tensors, arrays, meta)
        extra = meta["extra"]
        env.load_state(arrays, extra["env"])
        episodes, evals, wall0 = int(extra["episodes"]), int(extra["evals"]), float(extra["wall_seconds"])
        last_eval = extra.get("last_eval_return")
    else:
        cfg = _build_config(args)
        agent = MBPO(env.obs_dim, env.act_dim, cfg, task)
        env.reset(seed=cfg.seed)
        episodes, evals, wall0, last_eval = 0, 0, 0.0, None
    m = cfg.mbpo
    # A resumed run drops the rows (and TensorBoard events) logged after its checkpoint: they are redone.
    logger = MetricsLogger(out, x_key="env_steps", tensorboard=not args.no_tensorboard, resume=resumed,
                           resume_at=agent.env_steps if resumed else None)
    progress = None if args.quiet else Progress(args.steps, desc=args.env, initial=agent.env_steps)
    t_start = time.monotonic()
    last_model: dict = {}
    upd_t, upd_n = time.monotonic(), agent.sac_updates
    updates_per_s = 0.0
    reached = False
    last_success = None

    def save():
        arrays, env_meta = env.state()
        tensors, agent_arrays, meta = agent.state()
        meta["extra"] = {
            "env": env_meta,
            "episodes": episodes,
            "evals": evals,
            "wall_seconds": wall0 + time.monotonic() - t_start,
            "last_eval_return": last_eval,
            "env_id": args.env,
            "env_kwargs": env_kwargs,
        }
        from mbpo_ros.io.checkpoint import save_checkpoint

        save_checkpoint(ckpt, tensors=tensors, arrays={**agent_arrays, **arrays}, meta=meta)

    try:
        while agent.env_steps < args.steps and not reached:
            obs = env.obs
            act = agent.act(obs, deterministic=False)
            next_obs, rew, term, trunc = env.step(act)
            agent.add(obs, act, rew, next_obs, term)
            metrics = agent.step()
            if metrics:
                last_model = metrics
            if term or trunc:
                episodes += 1
                env.reset()
            k = agent.env_steps - m.init_random_steps
            epoch_end = k > 0 and k % m.epoch_length == 0
            if epoch_end or agent.env_steps >= args.steps:
                now = time.monotonic()
                updates_per_s = (agent.sac_updates - upd_n) / max(now - upd_t, 1e-9)
                upd_t, upd_n = now, agent.sac_updates
                eval_ret, eval_std = evaluate(
                    agent.policy_snapshot(), eval_env, m.eval_episodes, _eval_seed(cfg.seed, agent.env_steps)
                )
                evals += 1
                last_eval = eval_ret
                last_success = eval_env.success_rate
                row = {
                    "env_steps": agent.env_steps,
                    "eval_return": eval_ret,
                    "eval_return_std": eval_std,
                    "eval_success_rate": eval_env.success_rate,
                    "wall_seconds": wall0 + now - t_start,
                    "episodes": episodes,
                    "epoch": agent.epoch,
                    "sac_updates": agent.sac_updates,
                    "sac_updates_per_s": updates_per_s,
                    "model_trains": agent.model_trains,
                }
                row.update({k2: v for k2, v in last_model.items() if isinstance(v, (int, float))})
                row.update(agent.sac_metrics())
                logger.log(row)
                save()
                reached = args.target_return is not None and eval_ret >= args.target_return
            if progress is not None and (agent.env_steps % 50 == 0 or agent.env_steps >= args.steps):
                progress.advance_to(
                    agent.env_steps,
                    episodes=episodes,
                    eval_return=last_eval if last_eval is not None else float("nan"),
                    model_loss=last_model.get("model_holdout_mse", float("nan")),
                    upd_s=updates_per_s,
                )
    finally:
        if progress is not None:
            progress.close()
        logger.close()
    try:
        logger.plot(["eval_return"], title=f"MBPO on {args.env}, seed {cfg.seed}")
    except Exception as e:  # plotting must not lose a finished run; report why it failed
        print(f"learning_curve.png not written: {e}", file=sys.stderr)
    return {
        "env_steps": agent.env_steps,
        "last_eval_return": last_eval,
        "last_eval_success_rate": None if last_success is None or np.isnan(last_success) else last_success,
        "evals": evals,
        "episodes": episodes,
        "reached_target": reached,
        "out": str(out),
    }


def run(args) -> int:
    try:
        summary = train(args)
    except ValueError as e:
        print(f"mbpo-ros gym: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0
