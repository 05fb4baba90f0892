"""`mbpo-ros train`: train Reach on the bundled MuJoCo twin, twin_node + agent_node over ROS 2.

What `make demo` runs. With no arguments it

0. checks every argument and the params file first (unknown parameter, YAML syntax, ``--device``,
   an existing ``--out`` without ``--resume``, the checkpoint to resume): one line, exit code 2;
1. measures the random policy's success rate and return on the gym twin (same seed, a few
   episodes): the level the learning curve must rise above;
2. starts twin_node and agent_node as subprocesses, exactly as ``launch/train.launch.py`` would
   (mbpo_ros/graph.py renders the same node specs into ``--ros-args``), in lock-step simulated
   time, in the user's ROS_DOMAIN_ID when set, else in one of their own (domain_coordinator,
   else a random one);
3. shows a tqdm progress bar by tailing ``<out>/episodes.csv`` (written by agent_node, one row
   per episode; agent_node itself writes ``metrics.csv`` + TensorBoard ``train/`` and ``model/`` scalars);
4. after ``--steps`` env steps, SIGINTs the agent (it writes its final checkpoint), then the twin;
5. evaluates the final checkpoint's deterministic policy (``--eval-episodes``, default 50) and
   writes ``summary.json`` and ``learning_curve.png``; ends with a one-line summary.

It exits non-zero with the node's last log lines if a node dies. Node logs are in ``<out>/logs/``.

Run directory: checkpoint/, transitions/ (a rosbag2 directory), episodes.csv (agent_node), metrics.csv, tb/,
learning_curve.png, summary.json, logs/. ``--resume`` continues such a directory: the agent resumes
from checkpoint/, metrics.csv keeps the rows up to the checkpoint, the node logs are appended to, the
twin gets a seed drawn from ``--seed`` and the steps done (its goals go on rather than repeat the first
run's), and training goes on until the run has ``--steps`` env steps in all.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from mbpo_ros import graph

#: Default training budget in env steps (20 Hz control, 100 steps per episode): sized so that
#: the whole demo (baseline, training, final evaluation) stays well under 15 minutes on 2 CPU cores.
#: 2,000 since issue 13's eighth-round preset (learning from the 250th step): seeds 0 and 1 at 100 %
#: over 50 episodes in about 6 minutes (docs/benchmarks.md, "Reach demo").
DEFAULT_STEPS = 2000

#: Episodes in the rolling window that gives the training success rate shown live.
WINDOW = 20


@dataclass
class GraphProcess:
    """One running node of the graph and its log file."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    log_file: io.TextIOBase | None = None

    def start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # appended: a resumed run keeps the node logs of the run it continues
        self.log_file = open(self.log_path, "a", buffering=1)  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(self.argv, env=env, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, sequence: list[tuple[str, float]]) -> int | None:
        """Signals and waits as NodeSpec.stop_sequence() says (SIGINT, SIGTERM, SIGKILL, as ros2 launch).
        Returns the exit code (negative = signal)."""
        if self.proc is None:
            return None
        for name, wait in sequence:
            sig = getattr(signal, name)
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                if sig == signal.SIGKILL:
                    os.killpg(self.proc.pid, sig)  # the node and any child it left behind
                else:
                    self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        if self.log_file is not None:
            self.log_file.close()
        return self.proc.poll()

    def tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in lines[-n:])


@dataclass
class EpisodeTail:
    """Reads rows appended to episodes.csv since the last call (complete lines only)."""

    path: Path
    offset: int = 0
    header: list[str] | None = None
    rows: list[dict[str, float]] = field(default_factory=list)

    def poll(self) -> list[dict[str, float]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        new = []
        for line in chunk[: end + 1].decode(errors="replace").splitlines():
            if not line.strip():
                continue
            cells = next(csv.reader([line]))
            if self.header is None:
                self.header = [c.strip() for c in cells]
                continue
            row = {}
            for k, v in zip(self.header, cells):
                try:
                    row[k] = float(v)
                except ValueError:
                    row[k] = math.nan
            new.append(row)
        self.rows.extend(new)
        return new


@contextlib.contextmanager
def ros_domain():
    """The user's ROS_DOMAIN_ID when set; else a free one (domain_coordinator when installed, else a
    random one in 1..101), so that the graph does not talk to other graphs on the host."""
    given = os.environ.get("ROS_DOMAIN_ID", "").strip()
    if given:
        if not given.isdigit() or not 0 <= int(given) <= 232:
            raise ValueError(f"ROS_DOMAIN_ID = {given!r} is not a ROS domain id (an integer in 0..232)")
        yield int(given)
        return
    try:
        from domain_coordinator import domain_id
    except ImportError:
        yield random.SystemRandom().randint(1, 101)
        return
    with domain_id() as did:
        yield int(did)


def default_out_dir() -> Path:
    return Path("runs") / time.strftime("reach-%Y%m%d-%H%M%S")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, metavar="N",
                        help=f"env steps (control steps at 20 Hz) to train for (default {DEFAULT_STEPS})")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of twin and learner (default 0)")
    parser.add_argument("--robot", default="", metavar="FILE",
                        help="MJCF or URDF arm to train on (default: the bundled 6-DOF arm); check it first with "
                             "mbpo-ros check-model FILE")
    parser.add_argument("--servo", default="", choices=("", "velocity", "position"),
                        help="with --robot: turn its torque motors (or a URDF's missing actuators) into servos")
    parser.add_argument("--ee-body", default="", metavar="BODY",
                        help="with --robot: add the end-effector site at this body")
    parser.add_argument("--task", default="reach", metavar="NAME",
                        help="task to learn: reach (default) or a task plugin taking a 3-D goal point")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="run directory (default runs/reach-<timestamp>); an existing run is refused "
                             "unless --resume")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint until it has --steps env steps in all")
    parser.add_argument("--eval-episodes", type=int, default=50, metavar="N",
                        help="episodes of the final deterministic evaluation (default 50)")
    parser.add_argument("--baseline-episodes", type=int, default=10, metavar="N",
                        help="episodes that measure the random policy's level (default 10)")
    parser.add_argument("--device", default="auto",
                        help="torch device of the learner: auto, cpu, cuda, cuda:N (default auto)")
    parser.add_argument("--config", default="", metavar="YAML",
                        help="agent_node parameters file (default config/mbpo.yaml of the package)")
    parser.add_argument("--max-minutes", type=float, default=0.0, metavar="M",
                        help="stop training after M minutes of wall time even if --steps is not reached (0 = no limit)")
    parser.add_argument("--startup-timeout", type=float, default=120.0, metavar="SEC",
                        help="fail if the agent has not logged its first episode after this long (default 120)")


def _fmt(v: float, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def graph_seed(seed: int, done: int) -> int:
    """The seed the graph runs with: ``seed``, or for a run resumed after ``done`` env steps one drawn from
    both, so the twin's goals and start poses go on instead of replaying the first run's episodes (the
    learner's random state comes from the checkpoint, not from the seed)."""
    import numpy as np

    if done == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(done)]).generate_state(1)[0] % 2**31)


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _checkpoint_steps(checkpoint: Path) -> int:
    """env steps of the checkpoint a resumed run continues from; ValueError (one line) when it is
    missing, damaged or not a trainer checkpoint, before any node starts."""
    from mbpo_ros.io.checkpoint import load_checkpoint

    if not checkpoint.is_dir():
        raise ValueError(f"--resume: {checkpoint.parent} has no checkpoint/ to continue from")
    try:
        _tensors, _arrays, meta = load_checkpoint(checkpoint)
        return int(meta["counters"]["env_steps"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"--resume: {checkpoint} is not a trainer checkpoint (no counters.env_steps)") from exc
    except ValueError as exc:  # CheckpointError: damaged, tampered with, unknown format
        raise ValueError(f"--resume: {exc}") from exc


def _prepare(args: argparse.Namespace) -> tuple[Path, int]:
    """Check the arguments before anything runs; returns (run directory, env steps already done)."""
    from mbpo_ros.core.config import resolve_device

    if args.steps < 1:
        raise ValueError(f"--steps {args.steps} must be at least 1")
    resolve_device(args.device)  # `--device cuda` without CUDA: refused here, not in the learner child
    if args.resume and not args.out:
        raise ValueError("--resume needs --out DIR, the run directory to continue")
    out = Path(args.out) if args.out else default_out_dir()
    done = 0
    if args.resume:
        done = _checkpoint_steps(out / "checkpoint")
        if done >= args.steps:
            raise ValueError(f"--resume: {out} already has {done} env steps; give --steps above that to go on")
    elif _is_run_dir(out):
        raise ValueError(f"--out {out} is an existing run directory; add --resume to continue it, "
                         "or choose a new --out")
    return out, done


def run(args: argparse.Namespace) -> int:
    from mbpo_ros.nodes.params import EXIT_BAD_PARAMETER

    with contextlib.ExitStack() as stack:
        try:  # every argument, the params file and the domain are checked before anything is written
            out, done = _prepare(args)
            if (args.servo or args.ee_body) and not args.robot:
                raise ValueError("--servo and --ee-body apply to --robot FILE")
            from mbpo_ros.nodes.params import agent_task_class, check_task_goals

            # an unknown task, or one whose goal the twin's goal topic cannot give, is refused here
            check_task_goals(agent_task_class(args.task), "topic", "train",
                             fix=f"train it on the twin in-process: mbpo-ros gym --env mbpo_ros/ArmReach-v0 "
                                 f"--task {args.task}")
            specs = graph.train_graph(graph.TrainArgs(
                config=args.config, lockstep=True, use_sim_time=True, real_time_factor=0.0,
                device=args.device, run_dir=str(Path(out).resolve()), seed=graph_seed(args.seed, done),
                robot=args.robot, servo=args.servo, ee_body=args.ee_body, task=args.task))
            domain = stack.enter_context(ros_domain())
        except (ValueError, FileNotFoundError) as exc:
            print(f"mbpo-ros train: {exc}", file=sys.stderr)
            return EXIT_BAD_PARAMETER
        return _train(args, out, done, specs, domain)


def _episodes(desc: str, total: int):
    """A progress bar over evaluation episodes (used as ``on_episode=bar.update``)."""
    from mbpo_ros.io.metrics import Progress

    return Progress(total=total, desc=desc, unit="episode")


def _train(args: argparse.Namespace, out: Path, done: int, specs, domain: int) -> int:
    from mbpo_ros.io.metrics import MetricsLogger, Progress
    from mbpo_ros.sim_eval import (
        env_kwargs_for,
        evaluate,
        load_policy,
        make_env,
        random_policy_baseline,
        read_identity,
    )

    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    t_start = time.monotonic()

    print(f"mbpo-ros train: run directory {out}" + (
        f" (resuming at {done} env steps; the twin's seed is now {graph_seed(args.seed, done)}, so its "
        "episodes go on rather than repeat)" if done else ""), flush=True)
    arm = {"robot": str(Path(args.robot).expanduser().resolve()), "servo": args.servo,
           "ee_body": args.ee_body} if args.robot else {}
    env = make_env(task=args.task, **arm)
    with _episodes("random policy", args.baseline_episodes) as bar:
        baseline = random_policy_baseline(episodes=args.baseline_episodes, seed=args.seed, on_episode=bar.update,
                                          env=env)
    env.close()
    print(f"random policy: {baseline.line()}", flush=True)

    nodes = [GraphProcess(s.name, graph.command_line(s), out / "logs" / f"{s.name}.log") for s in specs]
    tail = EpisodeTail(out / "episodes.csv")
    window: deque = deque(maxlen=WINDOW)
    failure = ""
    interrupted = False
    last: dict[str, float] = {}
    for row in tail.poll():  # a resumed run's episodes so far: the success window goes on from them
        if row.get("env_steps", 0) <= done:
            window.append(row.get("success", math.nan))
            last = row
    tail.rows = [r for r in tail.rows if r.get("env_steps", 0) <= done]
    rows_before = len(tail.rows)

    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("PYTHONUNBUFFERED", "1")
    print(f"graph (ROS_DOMAIN_ID={domain}, logs in {out / 'logs'}):", flush=True)
    for n in nodes:
        print("  " + " ".join(n.argv), flush=True)
    progress = Progress(total=args.steps, desc="reach", initial=done)
    try:
        for n in nodes:
            n.start(env)
        t_graph = time.monotonic()
        while True:
            for row in tail.poll():
                window.append(row.get("success", math.nan))
                last = row
                success_rate = float(sum(window) / len(window))
                progress.advance_to(
                    int(row.get("env_steps", 0)), episodes=int(row.get("episodes", 0)),
                    success=f"{success_rate:.0%}", ret=_fmt(row.get("episode_return"), ".2f"),
                    model_loss=_fmt(row.get("model_loss"), ".3g"), utd=_fmt(row.get("achieved_utd"), ".1f"))
            if last.get("env_steps", 0) >= args.steps:
                break
            dead = [(n.name, n.exit_code()) for n in nodes if n.exit_code() is not None]
            if dead:
                failure = "; ".join(f"{name} exited with code {code}" for name, code in dead)
                break
            now = time.monotonic()
            if len(tail.rows) == rows_before and now - t_graph > args.startup_timeout:
                failure = f"no episode logged in {out / 'episodes.csv'} within {args.startup_timeout:.0f} s"
                break
            if args.max_minutes > 0 and now - t_start > 60.0 * args.max_minutes:
                print(f"\nmbpo-ros train: --max-minutes {args.max_minutes} reached", flush=True)
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        interrupted = True
        print("\nmbpo-ros train: interrupted, stopping the graph (final checkpoint)...", flush=True)
    finally:
        progress.close()
        # Agent first: SIGINT makes it write its final checkpoint; then the twin.
        grace = {s.name: s.stop_sequence() for s in specs}
        codes = {n.name: n.stop(grace[n.name]) for n in sorted(nodes, key=lambda n: n.name != "agent_node")}
        tail.poll()
    if failure:
        print(f"mbpo-ros train: FAILED: {failure}", file=sys.stderr)
        for n in nodes:
            print(f"  last lines of {n.name} ({n.log_path}):\n{n.tail()}", file=sys.stderr)
        return 1
    bad = {k: c for k, c in codes.items() if c not in (0, None)}
    if bad and not interrupted:
        print(f"mbpo-ros train: graph did not shut down cleanly: {bad}", file=sys.stderr)

    checkpoint = out / "checkpoint"
    if not checkpoint.is_dir():
        print(f"mbpo-ros train: FAILED: no checkpoint in {out} after shutdown", file=sys.stderr)
        for n in nodes:
            print(f"  last lines of {n.name} ({n.log_path}):\n{n.tail()}", file=sys.stderr)
        return 1
    # the arm and task the checkpoint names (checked against the twin's model: same joints, order, limits)
    env = make_env(**env_kwargs_for(read_identity(checkpoint), **arm))
    with _episodes("final evaluation", args.eval_episodes) as bar:
        result = evaluate(load_policy(checkpoint), episodes=args.eval_episodes, seed=args.seed,
                          on_episode=bar.update, env=env)
    env.close()
    rows = tail.rows
    # The agent wrote metrics.csv and tb/ (train/, model/); the final evaluation goes beside them (eval/).
    with MetricsLogger(out, x_key="env_steps", resume=True) as metrics:
        metrics.log({"env_steps": int(rows[-1]["env_steps"]) if rows else done,
                     "eval/success_rate": result.success_rate, "eval/final_distance_m": result.final_distance_m,
                     "eval/return": result.mean_return, "eval/random_success_rate": baseline.success_rate,
                     "eval/random_return": baseline.mean_return})
        metrics.plot(["train/success_rate", "train/episode_return"],
                     baselines={"train/success_rate": baseline.success_rate,
                                "train/episode_return": baseline.mean_return},
                     title=(f"{args.task} on the MuJoCo twin"
                            f"{' (' + Path(args.robot).name + ')' if args.robot else ''}, MBPO seed {args.seed}: "
                            f"training episodes (success over the last {WINDOW});\nfinal deterministic evaluation "
                            f"{result.success_rate:.0%} success over {result.episodes} episodes"))
    summary = {
        "env_steps": int(rows[-1]["env_steps"]) if rows else 0,
        "episodes": int(rows[-1]["episodes"]) if rows else 0,
        "success_rate": result.success_rate,
        "final_distance_m": result.final_distance_m,
        "final_distance_median_m": result.final_distance_median_m,
        "eval_episodes": result.episodes,
        "eval_return": result.mean_return,
        "train_success_rate_last_window": float(sum(window) / len(window)) if window else None,
        "random_success_rate": baseline.success_rate,
        "random_return": baseline.mean_return,
        "random_final_distance_m": baseline.final_distance_m,
        "achieved_utd": rows[-1].get("achieved_utd") if rows else None,
        "wall_seconds": time.monotonic() - t_start,
        "seed": args.seed,
        "steps_requested": args.steps,
        "interrupted": interrupted,
        "node_exit_codes": codes,
    }
    summary = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"mbpo-ros train: {summary['env_steps']} steps, {summary['episodes']} episodes in "
          f"{summary['wall_seconds'] / 60:.1f} min: {result.line()} "
          f"(random policy {baseline.success_rate:.0%}); {out}", flush=True)
    return 130 if interrupted else 0
