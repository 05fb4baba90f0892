"""Soak: the twin at real-time factor 1 with training, for a long time; RSS, open files, run-dir size.

Run:  nice -n 10 .venv/bin/python benchmarks/soak.py --minutes 60 --run-dir /tmp/soak [--buffer 20000]

Starts the train graph (mbpo_ros/graph.py: twin_node + agent_node, real_time_factor 1, the
Reach preset at 20 Hz) as `mbpo-ros train` does, and every --interval seconds samples, for every
process of the graph (twin_node, agent_node and the agent's learner child): resident memory
(VmRSS), open file descriptors, threads; plus the run directory's size. The real replay buffer
is --buffer transitions (20,000 = 17 minutes at 20 Hz), so that it fills during the soak: a
buffer fills its preallocated pages as it fills, which is growth by design, not a leak. At the end
it prints, per process, the growth per 10 minutes after the buffer filled (a least-squares slope
over those samples) and writes every sample to <run-dir>/soak.csv.

Wall-clock to competence (issue 13): with --snapshot-every S the agent checkpoints every S seconds and
the soak keeps each checkpoint's policy with its env step; after the run every kept policy is
evaluated as benchmarks/sample_efficiency.py evaluates (deterministic, the 50 fixed episodes
`reset(seed=10_000 + k)`, 3 cm), and the first env step at 90 % or more is reported in robot minutes
(env steps / control rate), beside the first time 9 of 10 training episodes (exploring) succeeded.
Results go to <run-dir>/competence.csv.

    .venv/bin/python benchmarks/soak.py --minutes 4 --interval 60 --snapshot-every 10 \
        --run-dir runs/wall0 --set seed=0
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mbpo_ros import graph
from mbpo_ros.core.config import parse_overrides


def _status(pid: int) -> dict[str, int]:
    out = {"rss_kb": -1, "threads": -1, "fds": -1}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_kb"] = int(line.split()[1])
            elif line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass  # exited between two reads
    return out


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(x) for x in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return kids


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    p.add_argument("--run-dir", type=Path, required=True, help="run directory (outside the source tree)")
    p.add_argument("--buffer", type=int, default=20_000, help="real replay buffer capacity (transitions)")
    p.add_argument("--domain", type=int, default=87, help="ROS_DOMAIN_ID of the soak graph")
    p.add_argument("--summary-only", action="store_true", help="only print the summary of <run-dir>/soak.csv")
    p.add_argument("--snapshot-every", type=float, default=0.0, metavar="S",
                   help="checkpoint every S seconds and evaluate each checkpoint's policy after the run "
                        "(wall-clock to competence); 0 = off")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="an agent_node parameter (JSON value, e.g. sac.gamma=0.85); repeatable")
    args = p.parse_args(argv)
    if args.summary_only:
        with open(args.run_dir / "soak.csv", newline="") as f:
            rows = [{**r, "t_min": float(r["t_min"]), "env_steps": int(r["env_steps"]),
                     **{k: float(r[k]) for k in ("rss_kb", "fds", "threads", "run_dir_mb")}}
                    for r in csv.DictReader(f)]
        _summary(rows, args.buffer)
        return 0
    run_dir = args.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        extra = parse_overrides(args.set)
    except ValueError as exc:
        p.error(str(exc))
    # seed=S seeds the twin (goals, start poses) as well as the learner, as `mbpo-ros train --seed` does
    specs = graph.train_graph(graph.TrainArgs(run_dir=str(run_dir), real_time_factor=1.0, device="cpu",
                                              seed=int(extra.pop("seed", 0))))
    if args.snapshot_every > 0:
        extra = {"checkpoint_period": args.snapshot_every, **extra}
    specs = [dataclasses.replace(s, parameters={**s.parameters, "mbpo.real_buffer_size": args.buffer, **extra})
             if s.name == "agent_node" else s for s in specs]
    env = graph.local_env(ROS_DOMAIN_ID=str(args.domain))
    procs = {}
    for s in specs:
        log = open(run_dir / f"{s.name}.log", "w")  # noqa: SIM115 - lives as long as the process
        procs[s.name] = subprocess.Popen(graph.command_line(s), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    rows: list[dict] = []
    snapshots: list[tuple[int, object]] = []  # (env steps, PolicySnapshot)
    t0 = time.monotonic()
    next_sample = t0 + args.interval
    tick = min(args.interval, args.snapshot_every / 3) if args.snapshot_every > 0 else args.interval
    path = run_dir / "soak.csv"
    fields = ["t_min", "process", "pid", "rss_kb", "fds", "threads", "run_dir_mb", "env_steps"]
    try:
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            while time.monotonic() - t0 < 60.0 * args.minutes:
                time.sleep(tick)
                if any(pr.poll() is not None for pr in procs.values()):
                    print(f"a node exited: { {n: pr.poll() for n, pr in procs.items()} }", file=sys.stderr)
                    break
                if args.snapshot_every > 0:
                    _keep_snapshot(run_dir, snapshots)
                if time.monotonic() < next_sample:
                    continue
                next_sample += args.interval
                t = (time.monotonic() - t0) / 60.0
                size = _du(run_dir) / 1e6
                learner = [c for c in _children(procs["agent_node"].pid)]
                pids = {**{n: pr.pid for n, pr in procs.items()}, **{f"learner ({c})": c for c in learner}}
                steps = _env_steps(run_dir)
                for name, pid in pids.items():
                    row = {"t_min": round(t, 2), "process": name.split(" ")[0], "pid": pid, **_status(pid),
                           "run_dir_mb": round(size, 2), "env_steps": steps}
                    rows.append(row)
                    w.writerow(row)
                f.flush()
                print(f"{t:6.1f} min  " + "  ".join(f"{r['process']} {r['rss_kb'] / 1024:.0f} MB/{r['fds']} fds"
                                                      for r in rows[-len(pids):]) + f"  run dir {size:.1f} MB",
                      flush=True)
    finally:
        for name in sorted(procs, key=lambda n: n != "agent_node"):
            spec = next(s for s in specs if s.name == name)
            for sig, wait in spec.stop_sequence():
                if procs[name].poll() is not None:
                    break
                procs[name].send_signal(getattr(signal, sig))
                try:
                    procs[name].wait(wait)
                except subprocess.TimeoutExpired:
                    continue
    _summary(rows, args.buffer)
    if args.snapshot_every > 0:
        _competence(run_dir, snapshots)
    return 0


def _keep_snapshot(run_dir: Path, snapshots: list) -> None:
    """Keep the policy of the run's checkpoint if it is new (env steps moved on). A checkpoint being
    swapped in is skipped (the next tick reads it): the counters are read before and after the policy."""
    from mbpo_ros.io.checkpoint import CheckpointError, load_meta, load_policy

    ckpt = run_dir / "checkpoint"
    try:
        before = load_meta(ckpt)["counters"]
        policy = load_policy(ckpt)
        after = load_meta(ckpt)["counters"]
    except (OSError, CheckpointError, KeyError):
        return
    steps = int(after["env_steps"])
    if before == after and (not snapshots or snapshots[-1][0] < steps):
        snapshots.append((steps, policy))


def _competence(run_dir: Path, snapshots: list) -> None:
    """Evaluate every kept policy (deterministic, the 50 fixed episodes of sample_efficiency.py) and print
    the first env step at 90 %; write <run-dir>/competence.csv."""
    from mbpo_ros import sim_eval
    from mbpo_ros.core.reach import ReachConfig

    period = ReachConfig().control_period
    env = sim_eval.make_env()
    out = []
    for steps, policy in snapshots:
        r = sim_eval.evaluate(policy, 50, 0, env)
        out.append({"env_steps": steps, "robot_minutes": round(steps * period / 60, 3),
                    "success": r.success_rate, "final_distance_m": round(r.final_distance_m, 4)})
        print(f"policy at {steps:6d} env steps ({steps * period / 60:4.2f} min): {r.success_rate:4.0%} "
              f"({100 * r.final_distance_m:.1f} cm)", flush=True)
    env.close()
    with open(run_dir / "competence.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["env_steps", "robot_minutes", "success", "final_distance_m"])
        w.writeheader()
        w.writerows(out)
    first = next((r for r in out if r["success"] >= 0.9), None)
    held = next((r for i, r in enumerate(out) if all(x["success"] >= 0.9 for x in out[i:])), None)
    print("deterministic policy, 50 fixed episodes: " + (
        f"90 % first at {first['env_steps']} env steps, {first['robot_minutes']:.2f} min of robot time"
        if first else "never 90 %") + (f"; 90 % or more in every later snapshot from {held['env_steps']} env steps, "
                                     f"{held['robot_minutes']:.2f} min" if held else ""))
    wins = _training_competence(run_dir / "episodes.csv")
    print("training episodes (exploring): " + (f"9 of 10 first at {wins} env steps, {wins * period / 60:.2f} min"
                                               if wins is not None else "never 9 of 10"))


def _training_competence(episodes_csv: Path) -> int | None:
    """The env step at which 9 of the last 10 training episodes first succeeded (None: never)."""
    with open(episodes_csv, newline="") as f:
        eps = list(csv.DictReader(f))
    for i in range(9, len(eps)):
        if sum(int(e["success"]) for e in eps[i - 9:i + 1]) >= 9:
            return int(eps[i]["env_steps"])
    return None


def _env_steps(run_dir: Path) -> int:
    try:
        lines = (run_dir / "episodes.csv").read_text().splitlines()
        return int(lines[-1].split(",")[0]) if len(lines) > 1 else 0
    except (FileNotFoundError, ValueError):
        return 0


def _summary(rows: list[dict], buffer: int) -> None:
    full = [r for r in rows if r["env_steps"] >= buffer]
    print(f"\nsamples: {len(rows)}; after the real buffer filled ({buffer} transitions): {len(full)}")
    # One line per process, told apart by pid: the agent has two children named "learner" (the
    # trainer and multiprocessing's resource tracker), and a restarted child is another process.
    for proc, pid in sorted({(r["process"], str(r["pid"])) for r in rows}):
        rs = [r for r in full if r["process"] == proc and str(r["pid"]) == pid]
        proc = f"{proc} ({pid})"
        if len(rs) < 3:
            print(f"{proc}: too few samples after the buffer filled")
            continue
        t = np.array([r["t_min"] for r in rs])
        for key, unit, scale in (("rss_kb", "MB", 1 / 1024), ("fds", "fds", 1.0)):
            y = np.array([r[key] for r in rs], float) * scale
            slope = np.polyfit(t, y, 1)[0] * 10.0
            print(f"{proc:20s} {key:7s}: {y[0]:8.1f} -> {y[-1]:8.1f} {unit} over {t[-1] - t[0]:.0f} min, "
                  f"slope {slope:+.2f} {unit} per 10 min")
    rs = [r for r in full if r["process"] == "agent_node"]
    if len(rs) >= 3:
        t = np.array([r["t_min"] for r in rs])
        y = np.array([r["run_dir_mb"] for r in rs])
        print(f"run dir: {y[0]:.1f} -> {y[-1]:.1f} MB, slope {np.polyfit(t, y, 1)[0] * 10:+.2f} MB per 10 min "
              "(the transition log grows by design)")


if __name__ == "__main__":
    sys.exit(main())
