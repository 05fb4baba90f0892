"""I/O speed: TransitionLog append latency and writer throughput, checkpoint save/load, metrics rows.

Run:  .venv/bin/python benchmarks/io_throughput.py [--transitions 20000] [--buffer 100000]

Sizes follow the Reach task on the 6-DOF twin (obs 21, act 6) and the MBPO defaults
(7-member 4x200 ensemble, 256x256 SAC, Adam state for each, a replay buffer of --buffer steps).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mbpo_ros.io.checkpoint import flatten_state_dict, load_checkpoint, save_checkpoint
from mbpo_ros.io.metrics import MetricsLogger
from mbpo_ros.io.transition_log import TransitionLog, read_transitions

OBS, ACT = 21, 6


def bench_transition_log(tmp: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((n + 1, OBS))
    act = rng.uniform(-1, 1, (n, ACT))
    lat = np.empty(n)
    log = TransitionLog(tmp / "tl", OBS, ACT, queue_size=n + 10)
    t0 = time.perf_counter()
    for i in range(n):
        a = time.perf_counter()
        log.append(obs[i], act[i], 0.5, obs[i + 1], False, i % 100 == 99, i // 100, i % 100, i * 10_000_000)
        lat[i] = time.perf_counter() - a
    t_append = time.perf_counter() - t0
    log.close()
    t_total = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in (tmp / "tl").iterdir())
    t1 = time.perf_counter()
    got = read_transitions(tmp / "tl")
    t_read = time.perf_counter() - t1
    assert len(got["reward"]) == n and log.dropped == 0
    us = lat * 1e6
    print(f"TransitionLog (obs {OBS}, act {ACT}), {n} transitions appended back to back:")
    print(f"  append() latency p50 {np.percentile(us, 50):.1f} us, p99 {np.percentile(us, 99):.1f} us, "
          f"max {us.max():.0f} us  (caller side: {n / t_append:,.0f} appends/s)")
    print(f"  writer thread throughput {n / t_total:,.0f} transitions/s (append..close), "
          f"{size / n:.0f} bytes/transition on disk")
    print(f"  read_transitions: {n / t_read:,.0f} transitions/s")

    # Paced like a control loop: the writer keeps up, so append() only queues.
    rate, m = 500.0, 2000
    log = TransitionLog(tmp / "tl_paced", OBS, ACT)
    lat = np.empty(m)
    t0 = time.perf_counter()
    for i in range(m):
        a = time.perf_counter()
        log.append(obs[i], act[i], 0.5, obs[i + 1], False, False, 0, i, i * 2_000_000)
        lat[i] = time.perf_counter() - a
        deadline = t0 + (i + 1) / rate
        while (left := deadline - time.perf_counter()) > 0:
            time.sleep(left)
    log.close()
    us = lat * 1e6
    print(f"  paced at {rate:.0f} Hz ({m} steps): append() p50 {np.percentile(us, 50):.1f} us, "
          f"p99 {np.percentile(us, 99):.1f} us, max {us.max():.0f} us, dropped {log.dropped}")


def _adam_state(params: list[torch.Tensor]) -> dict:
    opt = torch.optim.Adam(params, lr=1e-3)
    loss = sum((p * p).sum() for p in params)
    loss.backward()
    opt.step()
    return opt.state_dict()


def bench_checkpoint(tmp: Path, buffer: int) -> None:
    torch.manual_seed(0)
    E, H, inp, out = 7, 200, OBS + ACT, 2 * (OBS + 1)
    dims = [inp, H, H, H, H, out]
    ens = [torch.randn(E, a, b, requires_grad=True) for a, b in zip(dims[:-1], dims[1:])]
    sac = [torch.randn(a, b, requires_grad=True) for a, b in [(OBS, 256), (256, 256), (256, 2 * ACT)]]
    sac += [torch.randn(2, a, b, requires_grad=True) for a, b in [(OBS + ACT, 256), (256, 256), (256, 1)]]
    tensors = {f"ensemble/w{i}": t.detach() for i, t in enumerate(ens)}
    tensors.update({f"sac/w{i}": t.detach() for i, t in enumerate(sac)})
    t_opt, m_opt = flatten_state_dict(_adam_state(ens), "optim/ensemble/")
    t_sac, m_sac = flatten_state_dict(_adam_state(sac), "optim/sac/")
    tensors.update(t_opt)
    tensors.update(t_sac)
    rng = np.random.default_rng(0)
    arrays = {
        "buffer/obs": rng.standard_normal((buffer, OBS)).astype(np.float32),
        "buffer/act": rng.standard_normal((buffer, ACT)).astype(np.float32),
        "buffer/rew": rng.standard_normal(buffer).astype(np.float32),
        "buffer/next_obs": rng.standard_normal((buffer, OBS)).astype(np.float32),
        "buffer/done": np.zeros(buffer, bool),
    }
    meta = {"optim": {"ensemble": m_opt, "sac": m_sac}, "env_steps": buffer}
    path = tmp / "ckpt"
    save_checkpoint(path, tensors=tensors, arrays=arrays, meta=meta)  # warm-up (and the "old" one)
    saves, loads = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        save_checkpoint(path, tensors=tensors, arrays=arrays, meta=meta)
        saves.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        load_checkpoint(path)
        loads.append(time.perf_counter() - t0)
    size = sum(p.stat().st_size for p in path.iterdir())
    print(f"Checkpoint: {len(tensors)} tensors + replay buffer of {buffer} steps = {size / 2**20:.1f} MiB")
    print(f"  save (atomic, fsynced, sha256) median {np.median(saves) * 1e3:.0f} ms; "
          f"load (verified) median {np.median(loads) * 1e3:.0f} ms")


def bench_metrics(tmp: Path, rows: int = 500) -> None:
    for tb in (False, True):
        log = MetricsLogger(tmp / f"m{int(tb)}", tensorboard=tb)
        t0 = time.perf_counter()
        for i in range(rows):
            log.log({"env_steps": i * 1000, "eval/return": float(i), "train/q_loss": 0.1, "success_rate": 0.5})
        dt = time.perf_counter() - t0
        log.close()
        print(f"MetricsLogger.log(): {dt / rows * 1e3:.2f} ms/row ({'csv + TensorBoard' if tb else 'csv only'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transitions", type=int, default=20_000)
    parser.add_argument("--buffer", type=int, default=100_000)
    args = parser.parse_args()
    print("command: " + " ".join([".venv/bin/python", "benchmarks/io_throughput.py", *sys.argv[1:]]))
    tmp = Path(tempfile.mkdtemp(prefix="mbpo_io_bench_"))
    try:
        bench_transition_log(tmp, args.transitions)
        bench_checkpoint(tmp, args.buffer)
        bench_metrics(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
