"""How long agent_node's final checkpoint takes, so the launch files can give it the grace it needs.

Run:  .venv/bin/python benchmarks/final_checkpoint.py [--fills 0,72000,1000000] [--repeats 3]

What is timed is the learner's part of a shutdown: ``MBPO.state()`` (copies of the networks, Adam
state and both replay buffers) and ``io.checkpoint.save_checkpoint`` (safetensors + npz, sha256
manifest, fsync, atomic swap), the same calls the worker makes on close. The networks and
buffers are the Reach preset's (``preset("reach")``: 7x(4x200) ensemble, 256x256 SAC, real buffer
capacity 1,000,000, model buffer of 4 rollout batches of 20,000); the real buffer holds ``fill``
transitions (72,000 = one hour at 20 Hz; 1,000,000 = a full buffer) and the model buffer is full.
Also timed: ``io.checkpoint.load_policy`` of the result (deploy's start-up).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def one(fill: int, tmp: Path) -> dict:
    from mbpo_ros.core.config import preset
    from mbpo_ros.core.tasks import get_task
    from mbpo_ros.core.trainer import MBPO
    from mbpo_ros.io.checkpoint import load_policy, save_checkpoint

    task = get_task("reach")
    cfg = dataclasses.replace(preset("reach"), device="cpu")
    m = MBPO(task.obs_dim, task.act_dim, cfg, task)
    g = torch.Generator().manual_seed(0)
    for buf, n in ((m.real_buffer, fill), (m.model_buffer, m.model_buffer.capacity)):
        for lo in range(0, n, 100_000):
            k = min(100_000, n - lo)
            o = torch.randn(k, task.obs_dim, generator=g)
            buf.add_batch(o, torch.rand(k, task.act_dim, generator=g) * 2 - 1, torch.randn(k, generator=g),
                          o + 0.01, torch.zeros(k))
    m.env_steps = fill
    t0 = time.perf_counter()
    tensors, arrays, meta = m.state()
    t1 = time.perf_counter()
    path = save_checkpoint(tmp / "checkpoint", tensors=tensors, arrays=arrays, meta=meta)
    t2 = time.perf_counter()
    load_policy(path)
    t3 = time.perf_counter()
    size = sum(f.stat().st_size for f in path.iterdir())
    return {"state_s": t1 - t0, "save_s": t2 - t1, "total_s": t2 - t0, "load_policy_s": t3 - t2, "mb": size / 1e6,
            "model_buffer": m.model_buffer.size}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fills", default="0,72000,1000000", help="real-buffer fills to time (comma-separated)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}")
    print("fill      | state() s | save s | total s (median, max) | checkpoint MB | load_policy s")
    for fill in (int(x) for x in args.fills.split(",")):
        runs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(dir=args.dir) as d:
                runs.append(one(fill, Path(d)))
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{fill:>9,} | {med['state_s']:9.2f} | {med['save_s']:6.2f} | {med['total_s']:6.2f}, "
              f"{max(r['total_s'] for r in runs):6.2f}       | {med['mb']:13.0f} | {med['load_policy_s']:.3f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
