"""Reach on other arms: MBPO (in-process, `mbpo-ros gym --env mbpo_ros/ArmReach-v0`) against the random
policy on the 2-joint reacher, the bundled 6-joint arm and the 7-joint pusher, each converted by
`--servo velocity --ee-body BODY` (Gymnasium's model files, found in the installed package).

For each arm: train `--steps` env steps (the "reach" preset, seed 0), then evaluate the final
checkpoint's deterministic policy and the uniform random policy on the same 50 seeded episodes
(`mbpo-ros eval`'s definition: the end effector ends the episode within the success threshold).
Prints one table row per arm (the docs/benchmarks.md table) and writes <out>/arm_reach.json.

Run:  nice -n 10 .venv/bin/python benchmarks/arm_reach.py [--steps 3000] [--arms reacher,arm6,pusher]
          [--task track] [--set sac.critic_layer_norm=true ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def gym_asset(name: str) -> str:
    import gymnasium

    return os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets", name)


#: the arms by name, as keyword arguments of gym.make("mbpo_ros/ArmReach-v0", ...) (sample_efficiency.py uses them too)
ARMS = {
    "reacher": lambda: {"robot": gym_asset("reacher.xml"), "servo": "velocity", "ee_body": "fingertip"},
    "arm6": lambda: {},
    "pusher": lambda: {"robot": gym_asset("pusher_v5.xml"), "servo": "velocity", "ee_body": "tips_arm"},
}


def cli_args(env_kwargs: dict) -> list[str]:
    """The `mbpo-ros gym` options that name the same arm: {"ee_body": "x"} -> ["--ee-body", "x"]."""
    return [arg for key, value in env_kwargs.items() for arg in (f"--{key.replace('_', '-')}", str(value))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--arms", default="reacher,arm6,pusher")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each training run (default 1)")
    parser.add_argument("--out", default="", help="keep the runs here (default: a temporary directory)")
    parser.add_argument("--task", default="reach", help="task of the registry (reach, track, a plugin's; default reach)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override passed to `mbpo-ros gym --set` (e.g. mbpo.utd=20); repeatable")
    args = parser.parse_args()

    import torch

    from mbpo_ros import sim_eval

    torch.set_num_threads(args.threads)

    out_root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="arm_reach-"))
    rows = []
    print("| arm | joints | env steps | MBPO success | random success | MBPO final distance | random final distance "
          "| train minutes |", flush=True)
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for arm in args.arms.split(","):
        run = out_root / arm
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "mbpo_ros.cli", "gym", "--env", "mbpo_ros/ArmReach-v0", *cli_args(ARMS[arm]()),
               "--steps", str(args.steps), "--seed", str(args.seed), "--out", str(run), "--threads", str(args.threads),
               "--task", args.task, "--no-tensorboard", "--eval-episodes", "1", *(f"--set={kv}" for kv in args.set)]
        print(f"{arm}: training {args.steps} steps into {run} (progress on stderr)", file=sys.stderr, flush=True)
        # The child's progress bar goes to our stderr (every 30 s when not a terminal), its errors too.
        proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
        minutes = (time.monotonic() - t0) / 60
        if proc.returncode != 0:
            print(f"{arm}: training failed (exit {proc.returncode}, its error is above)", file=sys.stderr)
            return 1
        print(f"{arm}: trained in {minutes:.1f} min; evaluating {args.episodes} episodes", file=sys.stderr, flush=True)
        kw = sim_eval.env_kwargs_for(sim_eval.read_identity(run / "checkpoint"))
        env = sim_eval.make_env(**kw)
        trained = sim_eval.evaluate(sim_eval.load_policy(run / "checkpoint"), args.episodes, args.seed, env)
        rand = sim_eval.random_policy_baseline(args.episodes, args.seed, env)
        env.close()
        n = len(sim_eval.read_identity(run / "checkpoint")["robot"]["joint_names"])
        row = {"arm": arm, "task": args.task, "settings": args.set, "joints": n, "steps": args.steps, "success": trained.success_rate,
               "random_success": rand.success_rate, "final_distance_m": trained.final_distance_m,
               "random_final_distance_m": rand.final_distance_m, "train_minutes": minutes}
        rows.append(row)
        print(f"| {arm} | {n} | {args.steps} | {trained.success_rate:.0%} | {rand.success_rate:.0%} | "
              f"{100 * trained.final_distance_m:.1f} cm | {100 * rand.final_distance_m:.1f} cm | {minutes:.1f} |",
              flush=True)
    (out_root / "arm_reach.json").write_text(json.dumps({"rows": rows, "argv": sys.argv[1:]}, indent=2) + "\n")
    print(f"runs and arm_reach.json in {out_root}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
