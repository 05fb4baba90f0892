"""Shared pytest fixtures: an isolated ROS 2 domain per test graph."""

from __future__ import annotations

import os

import pytest


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


@pytest.fixture(autouse=True)
def _quiet_threads(monkeypatch):
    """Keep torch from oversubscribing the 2 CI cores when tests spawn processes."""
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
