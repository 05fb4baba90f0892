"""`mbpo-ros eval`: a checkpoint's deterministic policy on the twin, success rate and final distance.

The twin here is the Gymnasium env ``mbpo_ros/ArmReach-v0`` in-process: the same ArmTwin physics
and the same ReachTask (observation, reward, success) that twin_node and agent_node use over
ROS 2, without the transport. An episode succeeds when the end effector ends it within
``success_threshold`` (3 cm) of the goal, the definition agent_node's episodes.csv uses.

    mbpo-ros eval --checkpoint runs/reach-20261125-120000/checkpoint --episodes 50 --seed 0

Python API (used by `mbpo-ros train` and the tests): :func:`load_policy`, :func:`evaluate`,
:func:`random_policy_baseline`; :class:`FixedEpisodes`, the same episodes stepped side by side for a
policy in training (benchmarks/sample_efficiency.py, the learning tests).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mbpo_ros import REACH_ENV_ID as ENV_ID  # registered with gymnasium by `import mbpo_ros`

#: seeds for evaluation episodes are drawn from this offset so they never coincide with training seeds.
EVAL_SEED_OFFSET = 10_000


@dataclass
class EvalResult:
    """Outcome of N evaluation episodes."""

    episodes: int
    """number of episodes run"""
    success_rate: float
    """fraction of episodes that ended within the success threshold of the goal"""
    final_distance_m: float
    """mean end-effector-to-goal distance at the end of an episode [m]"""
    final_distance_median_m: float
    """median end-effector-to-goal distance at the end of an episode [m]"""
    mean_return: float
    """mean undiscounted episode return"""
    wall_seconds: float
    """time the evaluation took"""

    @classmethod
    def of(cls, successes, distances, returns, started: float) -> EvalResult:
        """The result of episodes with these outcomes, begun at ``time.perf_counter()`` = ``started``."""
        return cls(episodes=len(successes), success_rate=float(np.mean(successes)),
                   final_distance_m=float(np.mean(distances)), final_distance_median_m=float(np.median(distances)),
                   mean_return=float(np.mean(returns)), wall_seconds=time.perf_counter() - started)

    def line(self) -> str:
        return (f"success {self.success_rate:.0%} over {self.episodes} episodes, final distance "
                f"{100 * self.final_distance_m:.1f} cm mean / {100 * self.final_distance_median_m:.1f} cm median, "
                f"return {self.mean_return:.2f}")


def read_identity(checkpoint: str | Path) -> dict:
    """The arm and task a checkpoint was trained for: {"task": ..., "robot": ...} (core/identity.py);
    both None for a checkpoint written before identities were recorded (Reach on the bundled arm)."""
    from mbpo_ros.io.checkpoint import load_identity

    return load_identity(checkpoint)


def load_policy(checkpoint: str | Path):
    """The PolicySnapshot stored in a training checkpoint or run directory (io.checkpoint.load_policy:
    NumPy only, no torch, no replay buffers)."""
    from mbpo_ros.io.checkpoint import load_policy as _load_policy

    return _load_policy(checkpoint)


def env_kwargs_for(identity: dict, robot: str = "", servo: str = "", ee_body: str = "", task: str = "") -> dict:
    """gym.make keyword arguments of the twin env a checkpoint was trained on (its identity), or of the
    arm named by `robot` (then checked against the identity: ValueError naming the difference)."""
    from mbpo_ros.core.arm_task import get_task_class
    from mbpo_ros.core.identity import check_robot, check_task
    from mbpo_ros.sim.arm_twin import ArmTwin, TwinConfig
    from mbpo_ros.sim.reach_env import twin_identity

    rec_task, rec_robot = identity.get("task"), identity.get("robot")
    kw: dict = {}
    if robot:
        kw.update(robot=str(Path(robot).expanduser().resolve()), servo=servo, ee_body=ee_body)
    elif rec_robot and rec_robot.get("model"):
        kw.update(robot=rec_robot["model"], servo=rec_robot.get("servo", ""), ee_body=rec_robot.get("ee_body", ""))
    # the arm first: a checkpoint for another arm is refused naming the joints, before the task is built
    twin = ArmTwin(TwinConfig(model_path=kw.get("robot", ""), servo=kw.get("servo", ""),
                              ee_body=kw.get("ee_body", "")))
    try:
        check_robot(rec_robot, twin_identity(twin, float((rec_robot or {}).get("control_rate", 20.0))))
    except ValueError as exc:
        if robot or (rec_robot or {}).get("model"):
            raise
        raise ValueError(f"{exc} (the checkpoint names no model file: give the arm with --robot FILE)") from None
    if rec_task:
        if task and task != rec_task.get("name"):
            raise ValueError(f"the checkpoint was trained for task {rec_task.get('name')!r}, not {task!r}")
        cls = get_task_class(rec_task["name"])
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in (rec_task.get("config") or {}).items()}
        kw.update(task=cls, task_cfg=cls.config_class(**values))
    elif task:
        kw["task"] = task
    env = make_env(**kw)
    try:
        actual = env.unwrapped.identity
        check_robot(rec_robot, actual["robot"])
        t = env.unwrapped.task
        check_task(rec_task, t.name, t.obs_dim, t.act_dim)
    finally:
        env.close()
    return kw


def make_env(**env_kwargs):
    """The arm gym env (registered by ``import mbpo_ros``); keyword arguments as ArmReachEnv's."""
    import gymnasium as gym

    return gym.make(ENV_ID, **env_kwargs)


def run_episodes(act: Callable[[np.ndarray, np.random.Generator], np.ndarray], episodes: int, seed: int,
                 env=None, on_episode: Callable[[], object] | None = None,
                 on_frame: Callable[[Callable[[], np.ndarray]], object] | None = None,
                 frame_episodes: int = 0) -> EvalResult:
    """Run ``episodes`` episodes with ``act(obs [obs_dim], rng) -> action [act_dim]``.

    Episode i resets with seed ``seed + EVAL_SEED_OFFSET + i`` (fixed goals for a given seed); its outcome
    is the env's own ``info`` at its last step (``is_success``: within the task's threshold; ``distance``).
    ``on_episode()`` is called after each episode (e.g. a progress bar's ``update``);
    ``on_frame(env.render)`` after the reset and every step of the first ``frame_episodes``
    episodes (the env must have ``render_mode="rgb_array"``; e.g. ``VideoWriter.add``, which renders
    only the frames it keeps).
    """
    if episodes < 1:
        raise ValueError(f"episodes = {episodes} must be at least 1")
    own_env = env is None
    env = make_env() if own_env else env
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    successes, distances, returns = [], [], []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=int(seed) + EVAL_SEED_OFFSET + i)
            record = on_frame is not None and i < frame_episodes
            if record:
                on_frame(env.render)
            ret, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, info = env.step(act(obs, rng))
                ret += float(reward)
                done = terminated or truncated
                if record:
                    on_frame(env.render)
            distances.append(float(info["distance"]))
            successes.append(bool(info["is_success"]))
            returns.append(ret)
            if on_episode is not None:
                on_episode()
    finally:
        if own_env:
            env.close()
    return EvalResult.of(successes, distances, returns, t0)


class FixedEpisodes:
    """The episodes :func:`run_episodes` runs (episode i resets with seed ``seed + EVAL_SEED_OFFSET + i``),
    stepped side by side, each in its own env, so a policy in training is called once per control step
    on all of them: ``act(obs [episodes, obs_dim]) -> actions [episodes, act_dim]``.

    The envs are made once and reused by every call, which evaluates from the same resets, so a learning
    curve's evaluations differ only in the policy; an episode's outcome is its env's ``info``, as there.

        evaluator = FixedEpisodes(50, seed=0, task="track")   # keyword arguments as gym.make's
        result = evaluator(lambda obs: actor(obs))             # an EvalResult
    """

    def __init__(self, episodes: int = 50, seed: int = 0, **env_kwargs):
        if episodes < 1:
            raise ValueError(f"episodes = {episodes} must be at least 1")
        self.seed = int(seed)
        self.envs = [make_env(**env_kwargs).unwrapped for _ in range(episodes)]

    def __call__(self, act: Callable[[np.ndarray], np.ndarray]) -> EvalResult:
        t0 = time.perf_counter()
        n = len(self.envs)
        obs = np.stack([env.reset(seed=self.seed + EVAL_SEED_OFFSET + i)[0] for i, env in enumerate(self.envs)])
        returns = np.zeros(n)
        final: list[dict | None] = [None] * n
        while any(f is None for f in final):
            actions = act(obs)
            for i, env in enumerate(self.envs):
                if final[i] is None:  # an episode that ended keeps its last observation
                    obs[i], reward, terminated, truncated, info = env.step(actions[i])
                    returns[i] += float(reward)
                    if terminated or truncated:
                        final[i] = info
        return EvalResult.of([f["is_success"] for f in final], [f["distance"] for f in final], returns, t0)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def evaluate(policy, episodes: int = 50, seed: int = 0, env=None,
             on_episode: Callable[[], object] | None = None,
             on_frame: Callable[[Callable[[], np.ndarray]], object] | None = None,
             frame_episodes: int = 0) -> EvalResult:
    """Deterministic ``policy`` (PolicySnapshot) on the gym twin for ``episodes`` episodes
    (``on_episode``, ``on_frame``, ``frame_episodes``: see :func:`run_episodes`)."""
    return run_episodes(lambda obs, rng: policy.act(obs, deterministic=True, rng=rng), episodes, seed, env,
                        on_episode, on_frame, frame_episodes)


def random_policy_baseline(episodes: int = 10, seed: int = 0, env=None,
                           on_episode: Callable[[], object] | None = None) -> EvalResult:
    """Uniform random actions in [-1, 1]^act_dim: the level a learning curve must rise above."""
    own_env = env is None
    env = make_env() if own_env else env
    act_dim = int(np.prod(env.action_space.shape))
    try:
        return run_episodes(lambda obs, rng: rng.uniform(-1.0, 1.0, size=act_dim).astype(np.float32),
                            episodes, seed, env, on_episode)
    finally:
        if own_env:
            env.close()


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="checkpoint directory (<run_dir>/checkpoint) or the run directory itself")
    parser.add_argument("--episodes", type=int, default=50, metavar="N", help="evaluation episodes (default 50)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the episodes' goals and start poses (default 0)")
    parser.add_argument("--robot", default="", metavar="FILE",
                        help="MJCF/URDF arm to evaluate on (default: the one the checkpoint names); refused when "
                             "its joints, order or limits differ from the checkpoint's")
    parser.add_argument("--servo", default="", choices=("", "velocity", "position"),
                        help="with --robot: turn its motors (or a URDF's missing actuators) into servos")
    parser.add_argument("--ee-body", default="", metavar="BODY", help="with --robot: add the end-effector site here")
    parser.add_argument("--task", default="", metavar="NAME",
                        help="task to evaluate (default: the checkpoint's; another one is refused)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--video", default="", metavar="FILE",
                        help="also record the first --video-episodes episodes to FILE (.mp4 needs imageio-ffmpeg; "
                             ".gif always works); headless machines render with MUJOCO_GL=egl (the default here "
                             "when no display is set)")
    parser.add_argument("--video-episodes", type=int, default=3, metavar="N",
                        help="episodes recorded with --video (default 3)")
    parser.add_argument("--video-every", type=int, default=1, metavar="K",
                        help="keep every K-th frame in the video (default 1: all, at the control rate)")


def _gl_probe(platform: str) -> str:
    """'' if MuJoCo renders offscreen with MUJOCO_GL=platform here (tried in a child process), else why not."""
    import os
    import subprocess

    code = ("import mujoco; m = mujoco.MjModel.from_xml_string('<mujoco/>'); "
            "r = mujoco.Renderer(m, 8, 8); r.update_scene(mujoco.MjData(m)); r.render()")
    try:
        proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MUJOCO_GL": platform},
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "the renderer did not start within 60 s"
    if proc.returncode == 0:
        return ""
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else f"exit code {proc.returncode}"


def _choose_gl() -> bool:
    """Before anything imports mujoco: on a headless machine without MUJOCO_GL, use EGL if it renders
    (tried in a child: mujoco picks its GL platform when imported, and one that cannot load breaks the
    import). False, with a one-line note, where nothing renders: the evaluation goes on without video."""
    import os

    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless and "MUJOCO_GL" not in os.environ and "mujoco" not in sys.modules:
        why = _gl_probe("egl")
        if why:
            print(f"mbpo-ros eval: no video (no display, and MuJoCo's EGL renderer failed: {why}); "
                  "evaluating without it", file=sys.stderr)
            return False
        os.environ["MUJOCO_GL"] = "egl"
    return True


def _video_env(args: argparse.Namespace, env_kwargs: dict, writer):
    """The env with rgb_array rendering for --video, or None with a one-line note on stderr where this
    machine cannot render (the evaluation then runs without a video)."""
    size = {"width": 320, "height": 240} if writer.suffix == ".gif" else {"width": 640, "height": 480}
    env = make_env(render_mode="rgb_array", **size, **env_kwargs)
    try:
        env.reset(seed=0)
        env.render()
    except RuntimeError as exc:
        env.close()
        print(f"mbpo-ros eval: no video ({exc}); evaluating without it", file=sys.stderr)
        return None
    writer.fps = env.unwrapped.metadata["render_fps"] / args.video_every
    return env


def run(args: argparse.Namespace) -> int:
    try:
        from mbpo_ros.io.video import VideoWriter

        # --video: the file and encoder are checked, and the GL platform chosen, before mujoco loads
        writer = VideoWriter(args.video, fps=20.0, every=args.video_every) if args.video else None
        if writer is not None and not _choose_gl():
            writer = None
        kw = env_kwargs_for(read_identity(args.checkpoint), args.robot, args.servo, args.ee_body, args.task)
        policy = load_policy(args.checkpoint)
        env = _video_env(args, kw, writer) if writer is not None else None
        if env is None:
            writer = None
            env = make_env(**kw)
        try:
            result = evaluate(policy, episodes=args.episodes, seed=args.seed, env=env,
                              on_frame=writer.add if writer is not None else None,
                              frame_episodes=args.video_episodes)
        finally:
            env.close()
        if writer is not None:
            print(f"mbpo-ros eval: video of {min(args.video_episodes, args.episodes)} episode(s) in {writer.close()}",
                  file=sys.stderr)
    except (FileNotFoundError, ValueError) as exc:
        print(f"mbpo-ros eval: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v)
                          for k, v in asdict(result).items()}))
    else:
        from mbpo_ros.io.checkpoint import resolve_checkpoint

        print(f"{resolve_checkpoint(args.checkpoint)}: {result.line()}")
    return 0
