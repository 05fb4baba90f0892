"""A fleet over real DDS: two twins and two agents (namespaces /arm1, /arm2, learner:=remote) and one
learner_node, each a separate process on this machine, on the test's own ROS_DOMAIN_ID.

- test_two_arm_fleet_shares_one_policy: both arms install the same snapshots of the one learner, which
  trains on both arms' transitions (SAC updates made and the newer policy installed on both arms).
- test_learner_restart_and_cut_lose_nothing: the learner is killed (SIGKILL) for 30 s and restarted from
  its checkpoint; later it is frozen (SIGSTOP: its DDS traffic stops in both directions, and the kernel
  drops what its sockets cannot buffer) for 30 s. Afterwards its real buffer holds every transition of
  every arm exactly once: its checkpoint's ids are exactly arm x 0..n-1, and its env step count is the sum.
  /arm2 keeps only 100 transitions in memory, so its 30 s gaps come from its MCAP transition log.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from graph_helpers import Graph, spin_until

from mbpo_ros import graph

pytestmark = pytest.mark.slow

ARMS = ("/arm1", "/arm2")


def _specs(root: Path, retain: dict[str, int] | None = None, learner_kw: dict | None = None):
    specs = graph.learner_graph(graph.LearnerArgs(run_dir=str(root / "learner"), device="cpu",
                                                  checkpoint_period=5.0, **(learner_kw or {})))
    for i, ns in enumerate(ARMS):
        twin, agent = graph.train_graph(graph.TrainArgs(run_dir=str(root / ns.strip("/")), device="cpu", namespace=ns,
                                                        learner="remote", use_sim_time=False, seed=i))
        params = dict(agent.parameters)
        if retain and ns in retain:
            params["fleet_retain"] = retain[ns]
        specs += [twin, graph.dataclasses.replace(agent, parameters=params)]
    return specs


class Diagnostics:
    """The newest /diagnostics values per (hardware_id, status name)."""

    def __init__(self, ctx):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray

        self.node = rclpy.create_node("fleet_probe", context=ctx)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self.latest: dict[tuple[str, str], dict[str, str]] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on, 50)

    def _on(self, msg):
        for st in msg.status:
            self.latest[(st.hardware_id, st.name)] = {"level": int.from_bytes(st.level, "little") if isinstance(
                st.level, bytes) else int(st.level), "message": st.message, **{kv.key: kv.value for kv in st.values}}

    def agent(self, ns: str) -> dict[str, str]:
        return self.latest.get((f"{ns}/agent_node", "agent_node: learner"), {})

    def learner(self) -> dict[str, str]:
        return self.latest.get(("/learner_node", "learner_node: fleet"), {})

    def spin_until(self, predicate, timeout: float, alive=lambda: True) -> bool:
        return spin_until(self.executor, predicate, timeout, alive)

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def close(self):
        self.executor.remove_node(self.node)
        self.node.destroy_node()


def _caught_up(d: Diagnostics, since: dict[str, int] | None = None) -> bool:
    """The learner holds everything the arms announced (HEAD frames), with no open gap; with `since`,
    it heard each arm announce more than since[arm] transitions (it is talking to them again)."""
    lv = d.learner()
    if not lv or lv.get("open_gaps") != "0" or lv.get("arms") != str(len(ARMS)):
        return False
    for ns in ARMS:
        held, head = int(lv.get(f"{ns}/agent_node.held", -1)), int(lv.get(f"{ns}/agent_node.head", -1))
        if held < head or (since is not None and head <= since[ns]):
            return False
    return True


def _heads(d: Diagnostics) -> dict[str, int]:
    return {ns: int(d.agent(ns).get("next_seq", 0)) for ns in ARMS}


def test_two_arm_fleet_shares_one_policy(ros_context, tmp_path):
    # a small start: SAC begins after 300 fleet transitions (7.5 s of two arms at 20 Hz)
    cfg = tmp_path / "learner.yaml"
    cfg.write_text("/**/learner_node:\n  ros__parameters:\n    mbpo:\n      init_random_steps: 300\n"
                   "      model_train_freq: 200\n      max_model_train_seconds: 5.0\n      utd: 2\n"
                   "      rollout_batch_size: 2000\n")
    g = Graph(_specs(tmp_path, learner_kw={"config": str(cfg)}), tmp_path / "logs")
    d = Diagnostics(ros_context)
    try:
        versions = {}

        def trained_policy_on_both() -> bool:
            for ns in ARMS:
                a = d.agent(ns)
                versions[ns] = (a.get("policy_learner"), int(a.get("policy_version") or 0))
            return all(v[1] > 0 for v in versions.values()) and len({v[0] for v in versions.values()}) == 1

        ok = d.spin_until(trained_policy_on_both, 240.0, g.alive)
        assert ok, f"no trained policy on both arms: {versions}, learner {d.learner()}\n{g.log_text()}"
        # the learner's own diagnostics (1 Hz, published apart from the agents') say the same
        assert d.spin_until(lambda: int(d.learner().get("sac_updates") or 0) > 0, 10.0), d.learner()
        lv = d.learner()
        assert lv["arms"] == "2", lv
        for ns in ARMS:  # each arm's transitions reached the one learner
            assert int(lv[f"{ns}/agent_node.held"]) > 50, lv
            assert d.agent(ns)["level"] in (0, 1), d.agent(ns)
        first = dict(versions)
        # the learner keeps training on both: a newer policy reaches both arms
        assert d.spin_until(lambda: trained_policy_on_both() and all(versions[ns][1] > first[ns][1] for ns in ARMS),
                            120.0, g.alive), f"no newer policy: {first} -> {versions}\n{g.log_text()}"
    finally:
        d.close()
        codes = g.stop()
    assert all(c == 0 for c in codes.values()), f"{codes}\n{g.log_text()}"


def test_learner_restart_and_cut_lose_nothing(ros_context, tmp_path):
    from mbpo_ros.io.checkpoint import load_meta
    from mbpo_ros.io.transition_log import read_transitions
    from mbpo_ros.learner.catchup import fleet_id
    from mbpo_ros.learner.log_ids import IdSet

    g = Graph(_specs(tmp_path, retain={"/arm2": 100}), tmp_path / "logs")
    d = Diagnostics(ros_context)
    try:
        assert d.spin_until(lambda: _caught_up(d, {ns: 100 for ns in ARMS}), 120.0,
                            g.alive), f"fleet did not start: {d.learner()}\n{g.log_text()}"
        d.spin_for(6.0)  # a periodic checkpoint (every 5 s) holds part of the run
        # 1. the learner dies (SIGKILL: no final checkpoint) and comes back 30 s later
        os.killpg(g.procs["learner_node"].pid, signal.SIGKILL)
        g.procs["learner_node"].wait(10)
        before = _heads(d)
        d.spin_for(30.0)
        during = _heads(d)
        for ns in ARMS:
            assert during[ns] > before[ns] + 300  # the arms went on (20 Hz, 30 s)
        g.start("learner_node")
        assert d.spin_until(lambda: _caught_up(d, during), 120.0), f"no catch-up after restart: {d.learner()}"
        # 2. the learner is cut off: frozen for 30 s, its traffic stops both ways
        p = g.procs["learner_node"]
        os.kill(p.pid, signal.SIGSTOP)
        try:
            d.spin_for(30.0)
            during = _heads(d)
        finally:
            os.kill(p.pid, signal.SIGCONT)
        assert d.spin_until(lambda: _caught_up(d, during), 120.0), f"no catch-up after the cut: {d.learner()}"
        # the arms stop making transitions (their twins go), the learner takes the last ones, then exits in order
        for ns in ARMS:
            twin = g.procs[f"{ns.strip('/')}_twin_node"]
            twin.send_signal(signal.SIGINT)
            twin.wait(30)
        d.spin_for(3.0)
        heads = _heads(d)  # final: no new transitions without joint states
        d.spin_for(2.0)
        assert _heads(d) == heads
        assert d.spin_until(lambda: _caught_up(d) and all(
            d.learner().get(f"{ns}/agent_node.held") == str(heads[ns]) for ns in ARMS), 60.0), \
            f"no final catch-up: {heads} {d.learner()}"
        streams = {ns: int(d.agent(ns)["stream"]) for ns in ARMS}
        served = {ns: int(d.agent(ns)["served"]) for ns in ARMS}
        lp = g.procs["learner_node"]
        lp.send_signal(signal.SIGINT)
        assert lp.wait(120) == 0
    finally:
        d.close()
        codes = g.stop()
    assert all(c == 0 for k, c in codes.items() if "twin" not in k), f"{codes}\n{g.log_text()}"
    meta = load_meta(tmp_path / "learner" / "checkpoint")
    expected = IdSet()
    for ns in ARMS:
        for s in range(heads[ns]):
            expected.add(fleet_id(f"{ns}/agent_node", streams[ns], s))
    assert IdSet.from_ranges(meta["log_ids"]) == expected  # every transition of every arm, none twice
    assert meta["counters"]["env_steps"] == sum(heads.values())  # what the buffer took, duplicates dropped
    for ns in ARMS:  # every transition the agent made is in its log, and the learner asked for the gaps
        assert len(read_transitions(tmp_path / ns.strip("/"))["reward"]) == heads[ns]
        assert served[ns] > 0
