"""Shared pytest fixtures: an isolated ROS 2 domain per test graph, a small real disk that fills up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

try:  # Hypothesis profiles of the property tests (test_control_properties.py)
    from hypothesis import HealthCheck, settings
except ImportError:  # the property tests skip themselves
    settings = None
if settings is not None:
    _common = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
    # default (make test): a fixed set of examples, the same on every run, inside the suite's time budget
    settings.register_profile("default", max_examples=1000, derandomize=True, **_common)
    # long (make test-long): many more, new ones on every run
    settings.register_profile("long", max_examples=20000, **_common)
    settings.register_profile("quick", max_examples=30, derandomize=True, **_common)
    settings.load_profile(os.environ.get("MBPO_HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config):
    """Session-wide: every process the tests start discovers ROS peers on this host only.

    Set before any test runs (so rclpy contexts in the test process and every child process inherit
    it); together with a ROS_DOMAIN_ID per test graph (``ros_domain``), tests never hear other machines'
    nodes, nor each other.

    Fast DDS carries the tests' traffic over UDP on the loopback interface, not its shared-memory
    transport: the suite kills nodes with SIGKILL on purpose, and a participant killed in the middle of
    a shared-memory operation can leave /dev/shm in a state that stalls the next participant on the
    machine (eProsima/Fast-DDS#1144); nor do the tests open what another run left there. Still real
    DDS, discovery and QoS; a user's own setting wins.
    """
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "UDPv4")


@pytest.fixture
def ros_domain(monkeypatch):
    """A free ROS_DOMAIN_ID for this test, exported so that child processes inherit it.

    Yields the id (int). Every test that starts nodes uses it so that two tests, or a test
    and a stray node on the same machine, never hear each other.
    """
    from domain_coordinator import domain_id

    with domain_id() as did:
        monkeypatch.setenv("ROS_DOMAIN_ID", str(did))
        yield did


@pytest.fixture
def ros_context(ros_domain):
    """An initialised rclpy Context on the test's own domain; shut down afterwards."""
    rclpy = pytest.importorskip("rclpy")
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=ros_domain)
    try:
        yield ctx
    finally:
        if ctx.ok():
            rclpy.shutdown(context=ctx)


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test: on 2 shared cores a second OpenMP thread mostly waits for the
    first (small networks), and it would fight the other tests for the cores. Restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _quiet_threads(monkeypatch):
    """Keep torch from oversubscribing the 2 CI cores when tests spawn processes."""
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))


@pytest.fixture
def kill_after_first_line():
    """Run ``python -c code *args``, wait for its first stdout line, sleep ``delay`` s, SIGKILL it.

    Returns that first line (stripped). The child is always reaped, also when an assertion fails.
    For crash-safety tests of writers: the line says the writer is inside its loop.
    """
    procs: list[subprocess.Popen] = []

    def run(code: str, *args: str, delay: float = 0.0) -> str:
        proc = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        first = proc.stdout.readline().strip()
        assert first, f"the writer exited (code {proc.poll()}) before its first line"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        return first

    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (a real filesystem that fills up); skipped where mounting is not permitted."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True,
                         text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {out.stderr.strip()}; "
                    "test_file_size_limit_is_counted_... covers the failure with RLIMIT_FSIZE")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_disk(path) -> None:
    """Write zeros until the filesystem refuses (ENOSPC)."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass  # full: what we wanted
        try:
            f.close()
        except OSError:
            pass  # its last buffer does not fit either
