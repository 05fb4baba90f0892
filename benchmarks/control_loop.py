"""Control-loop timing while MBPO trains flat out on the same cores: child process vs thread.

A control loop in this (parent) process wakes at absolute deadlines (time.sleep to the deadline),
evaluates a PolicySnapshot for a Reach-sized observation (obs 21, act 6, SAC actor 2x256, NumPy)
and submits one transition per tick to the trainer, as agent_node does. Beside it, one of:

- idle:    nothing (the machine's own timer jitter),
- process: TrainerProcess (the product: MBPO in a spawned child, nice +10, torch threads auto),
- idleproc: TrainerProcess with WorkerOptions(sched_idle=True) (the child under SCHED_IDLE),
- thread:  the same MBPO work in a thread of this process (the design we rejected).

The trainer runs the reach preset's networks (ensemble 7x4x200, SAC 2x256) and is kept saturated:
it starts with a backlog of random transitions so that SAC updates are always due, and retrains
the ensemble on TrainerProcess's async schedule. Both trainers are alive for the whole run but only
the one under test trains (the other is paused between two pieces of work); the modes alternate
in short slices per rate, so the drifting load of a shared machine hits every mode alike.

Reported per mode and rate: achieved rate, period error (wake-up time minus deadline) p50/p99/max,
missed deadlines (late by more than one period), policy inference latency p50/p99, and the
trainer's SAC updates/s during the run (to show the trainer was not starved).

    .venv/bin/python benchmarks/control_loop.py                  # all modes, 20/100/200 Hz, 8 s each (4 slices)
    .venv/bin/python benchmarks/control_loop.py --modes process --rates 100 --seconds 20
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import queue
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from mbpo_ros.core.config import preset
from mbpo_ros.core.tasks import get_task
from mbpo_ros.graph import LOCAL_DISCOVERY
from mbpo_ros.learner.supervisor import TrainerProcess
from mbpo_ros.learner.worker import WorkerOptions
from mbpo_ros.learner.worker import auto_threads as _auto_threads

TASK = get_task("reach")
OBS, ACT = TASK.obs_dim, TASK.act_dim


def bench_cfg(backlog: int):
    """preset("reach") networks; learning starts at once so that the backlog is all trainable."""
    cfg = preset("reach")
    return dataclasses.replace(
        cfg,
        device="cpu",
        mbpo=dataclasses.replace(cfg.mbpo, init_random_steps=min(200, backlog), max_model_train_seconds=20.0),
    )


def random_transition(rng: np.random.Generator):
    obs = rng.normal(size=OBS).astype(np.float32)
    return (obs, rng.uniform(-1, 1, ACT).astype(np.float32), float(rng.normal()),
            obs + 0.01 * rng.normal(size=OBS).astype(np.float32), False, False)


# ----------------------------------------------------------------------------- trainers under test


class ThreadTrainer:
    """The rejected design: TrainerProcess's async schedule, in a thread of this process."""

    def __init__(self, cfg, torch_threads: int, chunk: int = 25):
        import torch

        from mbpo_ros.core.trainer import MBPO

        torch.set_num_threads(torch_threads)
        self.cfg, self.chunk = cfg, chunk
        self.mbpo = MBPO(OBS, ACT, cfg, TASK)
        self.q: queue.Queue = queue.Queue(maxsize=10000)
        self.snapshot = self.mbpo.policy_snapshot()
        self.stop = threading.Event()
        self.pause = threading.Event()
        self.idle = threading.Event()  # set by the thread while it honours a pause
        self.error = ""
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def submit(self, *tr) -> bool:
        try:
            self.q.put_nowait(tr)
            return True
        except queue.Full:
            return False

    def latest_snapshot(self):
        return self.snapshot

    def sac_updates(self) -> int:
        return int(self.mbpo.sac_updates)

    def set_paused(self, paused: bool) -> None:
        """Pause (and wait until the current piece of work is over) or resume."""
        if paused:
            self.pause.set()
            self.idle.wait(timeout=300)
        else:
            self.idle.clear()
            self.pause.clear()

    def _run(self):
        m = self.mbpo
        try:
            while not self.stop.is_set():
                if self.pause.is_set():
                    self.idle.set()
                    time.sleep(0.05)
                    continue
                while True:
                    try:
                        obs, act, rew, nxt, term, _ = self.q.get_nowait()
                    except queue.Empty:
                        break
                    m.add(obs, act, rew, nxt, term)
                kind, _ = m.work(self.chunk)  # the learner's schedule (core/schedule.py)
                if kind == "update":
                    self.snapshot = m.policy_snapshot()
                elif kind == "idle":
                    time.sleep(0.005)
        except Exception as e:  # reported in the benchmark's output
            self.error = f"{type(e).__name__}: {e}"
        self.idle.set()

    def close(self):
        self.stop.set()
        self.thread.join(timeout=120)


class ProcessTrainer:
    """The product: TrainerProcess."""

    def __init__(self, cfg, torch_threads: int, run_dir: str, sched_idle: bool = False):
        self.tp = TrainerProcess(OBS, ACT, cfg, "reach", run_dir, resume=False,
                                 options=WorkerOptions(torch_threads=torch_threads, sched_idle=sched_idle))

    def start(self):
        self.tp.start()

    def submit(self, *tr) -> bool:
        return self.tp.submit(*tr)

    def latest_snapshot(self):
        return self.tp.latest_snapshot()

    def sac_updates(self) -> int:
        return int(self.tp.stats()["sac_updates"])

    def set_paused(self, paused: bool) -> None:
        """Pause (and wait until the child reports it is paused, i.e. between two pieces of work) or resume."""
        self.tp.set_paused(paused)
        deadline = time.monotonic() + 300
        while self.tp.stats()["paused"] != paused and time.monotonic() < deadline and not self.error:
            time.sleep(0.01)

    @property
    def error(self) -> str:
        return self.tp.stats()["error"]

    def close(self):
        self.tp.close(checkpoint=False, timeout=30)


# ----------------------------------------------------------------------------- the control loop


def control_loop(rate: float, seconds: float, trainer, snapshot, rng, transitions) -> dict:
    """Absolute-deadline loop for `seconds`; returns raw period errors and inference latencies (s)."""
    period = 1.0 / rate
    n = int(round(rate * seconds))
    errors = np.empty(n)
    latency = np.empty(n)
    submit = np.zeros(n)
    missed = 0
    obs = transitions[0][0]
    start = time.perf_counter()
    deadline = start + period
    for i in range(n):
        delay = deadline - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        woke = time.perf_counter()
        errors[i] = woke - deadline
        snap = trainer.latest_snapshot() if trainer is not None else snapshot
        t0 = time.perf_counter()
        snap.act(obs, deterministic=False, rng=rng)
        latency[i] = time.perf_counter() - t0
        if trainer is not None:
            t1 = time.perf_counter()
            trainer.submit(*transitions[i % len(transitions)])
            submit[i] = time.perf_counter() - t1
        deadline += period
        late = woke - deadline
        if late > 0:  # more than a whole period late: skip the missed ticks, keep the phase
            skipped = int(late // period) + 1
            missed += skipped
            deadline += skipped * period
    return {"errors": errors, "latency": latency, "submit": submit, "missed": missed,
            "elapsed": time.perf_counter() - start}


def summarize(mode: str, rate: float, parts: list[dict], updates: float, seconds: float) -> dict:
    e = np.concatenate([p["errors"] for p in parts]) * 1e3
    lat = np.concatenate([p["latency"] for p in parts]) * 1e3
    sub = np.concatenate([p["submit"] for p in parts]) * 1e3
    return {
        "mode": mode,
        "rate_hz": rate,
        "achieved_hz": e.size / sum(p["elapsed"] for p in parts),
        "ticks": int(e.size),
        "err_p50": float(np.percentile(e, 50)),
        "err_p99": float(np.percentile(e, 99)),
        "err_max": float(e.max()),
        "missed": int(sum(p["missed"] for p in parts)),
        "inf_p50": float(np.percentile(lat, 50)),
        "inf_p99": float(np.percentile(lat, 99)),
        "submit_p99": float(np.percentile(sub, 99)) if mode != "idle" else math.nan,
        "updates_per_s": updates / seconds if mode != "idle" else math.nan,
        "load1": os.getloadavg()[0],
    }


def run_interleaved(modes, rates, seconds: float, rounds: int, torch_threads: int, backlog: int,
                    seed: int, sched_idle: bool = False) -> list[dict]:
    """Both trainers alive, only one training at a time; modes alternate in short slices per rate.

    The machine is shared and its load drifts, so each (mode, rate) gets `rounds` slices of
    seconds / rounds, interleaved with the other modes: drift hits every mode alike.
    """
    rng = np.random.default_rng(seed)
    cfg = bench_cfg(backlog)
    transitions = [random_transition(rng) for _ in range(64)]
    trainers: dict = {}
    tmp = tempfile.TemporaryDirectory(prefix="control_loop_bench_")
    try:
        if "process" in modes:
            trainers["process"] = ProcessTrainer(cfg, torch_threads, os.path.join(tmp.name, "p"), sched_idle)
        if "idleproc" in modes:
            trainers["idleproc"] = ProcessTrainer(cfg, torch_threads, os.path.join(tmp.name, "i"), True)
        if "thread" in modes:
            trainers["thread"] = ThreadTrainer(cfg, torch_threads)
        for tr in trainers.values():
            tr.start()
            for _ in range(backlog):
                tr.submit(*random_transition(rng))
            deadline = time.monotonic() + 300  # first ensemble fit, then SAC updates are flowing
            while tr.sac_updates() == 0 and time.monotonic() < deadline and not tr.error:
                time.sleep(0.2)
            tr.set_paused(True)
        idle_snapshot = next(iter(trainers.values())).latest_snapshot() if trainers else None
        if idle_snapshot is None:
            from mbpo_ros.core.trainer import MBPO

            idle_snapshot = MBPO(OBS, ACT, cfg, TASK).policy_snapshot()
        rows = []
        for rate in rates:
            parts: dict[str, list] = {m: [] for m in modes}
            updates = dict.fromkeys(modes, 0.0)
            for _ in range(rounds):
                for mode in modes:
                    tr = trainers.get(mode)
                    if tr is not None:
                        tr.set_paused(False)
                        u0 = tr.sac_updates()
                    parts[mode].append(control_loop(rate, seconds / rounds, tr, idle_snapshot, rng, transitions))
                    if tr is not None:
                        tr.set_paused(True)  # waits for the piece of work in progress
                        updates[mode] += tr.sac_updates() - u0
            for mode in modes:
                row = summarize(mode, rate, parts[mode], updates[mode], seconds)
                tr = trainers.get(mode)
                if tr is not None and tr.error:
                    row["error"] = tr.error
                rows.append(row)
                print(format_row(row), flush=True)
        return rows
    finally:
        for tr in trainers.values():
            tr.close()
        tmp.cleanup()


# ----------------------------------------------------------------------------- the real agent_node


def _diagnostics_listener(domain_id: int):
    """An rclpy node on `domain_id` keeping the latest /diagnostics values per status name."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    node = rclpy.create_node("control_loop_bench", context=ctx)
    latest: dict[str, dict[str, str]] = {}

    def on_diag(msg):
        for st in msg.status:
            latest[st.name] = {kv.key: kv.value for kv in st.values}

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    stop = threading.Event()

    def spin():
        while not stop.is_set() and ctx.ok():
            ex.spin_once(timeout_sec=0.1)

    th = threading.Thread(target=spin, daemon=True)
    th.start()

    def close():
        stop.set()
        th.join(timeout=5)
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)

    return latest, close


def _status(latest: dict, suffix: str) -> dict[str, str]:
    return next((v for k, v in latest.items() if k.endswith(suffix)), {})


def _num(d: dict, key: str) -> float:
    try:
        return float(d.get(key, "nan"))
    except ValueError:
        return math.nan


def run_agent_node(rates, seconds: float) -> list[dict]:
    """twin_node + agent_node (train mode, wall clock) as subprocesses; loop figures from /diagnostics.

    The agent measures |period - target| over its last 2000 periods (not lateness to a deadline).
    Measured after training has started (sac_updates > 0) and `seconds` more.
    """
    from domain_coordinator import domain_id

    from mbpo_ros.graph import TrainArgs, command_line, local_env, train_graph

    rows = []
    for rate in rates:
        with domain_id() as did, tempfile.TemporaryDirectory(prefix="control_loop_agent_") as tmp:
            specs = train_graph(TrainArgs(control_rate=rate, use_sim_time=False, real_time_factor=1.0,
                                          lockstep=False, run_dir=tmp, seed=0))
            overrides = {"agent_node": {"mbpo.init_random_steps": 200}}
            specs = [dataclasses.replace(sp, parameters={**sp.parameters, **overrides.get(sp.name, {})})
                     for sp in specs]
            env = local_env(ROS_DOMAIN_ID=str(did), AMENT_PREFIX_PATH=sys.prefix)
            logs = [open(os.path.join(tmp, f"{sp.name}.log"), "w") for sp in specs]  # noqa: SIM115
            procs = [subprocess.Popen(command_line(sp), env=env, stdout=log, stderr=subprocess.STDOUT)
                     for sp, log in zip(specs, logs)]
            latest, close_listener = _diagnostics_listener(did)
            try:
                deadline = time.monotonic() + 180
                while not _num(_status(latest, "learner"), "sac_updates") > 0:  # nan until it reports
                    if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                        raise RuntimeError(f"agent_node did not start training at {rate} Hz; logs in {tmp}")
                    time.sleep(0.5)
                u0, t0 = _num(_status(latest, "learner"), "sac_updates"), time.monotonic()
                time.sleep(seconds)
                loop, learner = _status(latest, "control loop"), _status(latest, "learner")
                rows.append({
                    "mode": "agent", "rate_hz": rate, "achieved_hz": _num(loop, "rate_hz"),
                    "ticks": int(_num(loop, "ticks")), "err_p50": _num(loop, "period_err_p50_ms"),
                    "err_p99": _num(loop, "period_err_p99_ms"), "err_max": _num(loop, "period_err_max_ms"),
                    "missed": -1, "inf_p50": math.nan, "inf_p99": math.nan,
                    "updates_per_s": (_num(learner, "sac_updates") - u0) / (time.monotonic() - t0),
                    "load1": os.getloadavg()[0],
                })
                print(format_row(rows[-1]), flush=True)
                if os.environ.get("CONTROL_LOOP_BENCH_DEBUG"):
                    print(latest, flush=True)
            finally:
                close_listener()
                for p in reversed(procs):
                    p.send_signal(signal.SIGINT)
                for p in reversed(procs):
                    try:
                        p.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
                for log in logs:
                    log.close()
    return rows


HEADER = (
    f"{'mode':8s} {'rate':>5s} {'achieved':>9s} {'err p50':>8s} {'err p99':>8s} {'err max':>8s} "
    f"{'missed':>6s} {'inf p50':>8s} {'inf p99':>8s} {'sub p99':>8s} {'SAC upd/s':>9s} {'load':>5s}"
)


def format_row(r: dict) -> str:
    s = (
        f"{r['mode']:8s} {r['rate_hz']:5.0f} {r['achieved_hz']:8.1f}  {r['err_p50']:7.2f}  {r['err_p99']:7.2f}  "
        f"{r['err_max']:7.2f}  {r['missed'] if r['missed'] >= 0 else '-':>6}  {r['inf_p50']:7.3f}  {r['inf_p99']:7.3f}  {r.get('submit_p99', math.nan):7.3f}  {r['updates_per_s']:8.1f}  {r['load1']:4.1f}"
    )
    return s + (f"   ERROR: {r['error']}" if r.get("error") else "")


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    except (OSError, subprocess.SubprocessError):
        name = platform.processor() or "?"
    return f"{name}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv=None) -> int:
    os.environ.update(LOCAL_DISCOVERY)  # this process's listener and every node it starts: this host only
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", nargs="+", default=["idle", "process", "thread"],
                   choices=["idle", "process", "idleproc", "thread"],
                   help="idleproc = TrainerProcess with WorkerOptions(sched_idle=True)")
    p.add_argument("--rates", nargs="+", type=float, default=[20.0, 100.0, 200.0], help="control rates (Hz)")
    p.add_argument("--seconds", type=float, default=8.0, help="measured seconds per mode and rate")
    p.add_argument("--rounds", type=int, default=4, help="interleaved slices per mode and rate")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="torch threads of the trainer (0 = TrainerProcess's automatic choice: cores - 1)")
    p.add_argument("--backlog", type=int, default=2000, help="random transitions queued before measuring")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sched-idle", action="store_true", help="run the trainer child under SCHED_IDLE")
    p.add_argument("--agent-node", action="store_true",
                   help="instead: run twin_node + agent_node (train mode) and read the agent's loop timing "
                        "from /diagnostics (give --seconds >= 2000 periods, e.g. 25 at 100 Hz)")
    args = p.parse_args(argv)
    threads = args.torch_threads or _auto_threads()
    import torch

    print(f"command: {' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}")
    print(f"machine: {machine()}, torch {torch.__version__}, trainer torch threads {threads}")
    print("period error = wake-up time - deadline (ms); inference = PolicySnapshot.act, one observation (ms);")
    print("sub = TrainerProcess.submit (or the thread's queue put), ms;")
    print("load = 1-min load average at the end of the row (other users of the machine make it noisy)")
    print(HEADER, flush=True)
    t0 = time.monotonic()
    if args.agent_node:
        print("agent: period error = |period - 1/rate| over the agent's last 2000 periods (agent_node diagnostics)")
        run_agent_node(args.rates, args.seconds)
        print(f"total {time.monotonic() - t0:.0f} s")
        return 0
    run_interleaved(args.modes, args.rates, args.seconds, args.rounds, threads, args.backlog, args.seed,
                    args.sched_idle)
    print(f"total {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
