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
    specs = graph.train_graph(graph.TrainArgs(run_dir=str(run_dir), real_time_factor=1.0, device="cpu"))
    try:
        extra = parse_overrides(args.set)
    except ValueError as exc:
        p.error(str(exc))
    specs = [dataclasses.replace(s, parameters={**s.parameters, "mbpo.real_buffer_size": args.buffer, **extra})
             if s.name == "agent_node" else s for s in specs]
    env = graph.local_env(ROS_DOMAIN_ID=str(args.domain))
    procs = {}
    for s in specs:
        log = open(run_dir / f"{s.name}.log", "w")  # noqa: SIM115 - lives as long as the process
        procs[s.name] = subprocess.Popen(graph.command_line(s), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    rows: list[dict] = []
    t0 = time.monotonic()
    path = run_dir / "soak.csv"
    fields = ["t_min", "process", "pid", "rss_kb", "fds", "threads", "run_dir_mb", "env_steps"]
    try:
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            while time.monotonic() - t0 < 60.0 * args.minutes:
                time.sleep(args.interval)
                if any(pr.poll() is not None for pr in procs.values()):
                    print(f"a node exited: { {n: pr.poll() for n, pr in procs.items()} }", file=sys.stderr)
                    break
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
    return 0


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
