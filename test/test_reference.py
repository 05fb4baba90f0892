"""The README's tables of topics, services and parameters cannot drift from the code.

1. The generated block in README.md is exactly what `python -m mbpo_ros.nodes.reference` renders
   from the nodes' parameter specs and the interface list.
2. Running nodes offer exactly the interface that list (and so the README) claims: the train
   graph is started as subprocesses and inspected over real DDS with rclpy's graph API.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest

from mbpo_ros import graph
from mbpo_ros.nodes import reference

REPO = Path(__file__).resolve().parents[1]

# What every rclpy node offers on its own (parameters, logging, type descriptions): not ours to list.
_DEFAULT_TOPICS = {"/rosout", "/parameter_events"}
_DEFAULT_SERVICE_SUFFIXES = (
    "/describe_parameters", "/get_parameter_types", "/get_parameters", "/list_parameters",
    "/set_parameters", "/set_parameters_atomically", "/get_type_description",
)


#: Global by convention: these stay at the root whatever the nodes' namespace.
_GLOBAL_NAMES = {"/clock", "/diagnostics"}


def test_readme_holds_the_generated_tables():
    readme = (REPO / "README.md").read_text()
    block = reference.render()
    assert block in readme, (
        "README.md's interface tables are out of date: run `python -m mbpo_ros.nodes.reference --write README.md`"
    )


def _listed(name: str, namespace: str = "") -> dict[str, set[tuple[str, str]]]:
    """The README's interface of ``name`` resolved in ``namespace`` (the table's names are root-resolved;
    /clock and /diagnostics are global whatever the namespace)."""
    out: dict[str, set[tuple[str, str]]] = {"publishes": set(), "subscribes": set(), "service": set(), "client": set()}
    for e in reference.INTERFACE:
        if e.node == name:
            out[e.kind].add((e.name if e.name in _GLOBAL_NAMES else namespace + e.name, e.type))
    return out


def _offered(node, name: str, namespace: str = "") -> dict[str, set[tuple[str, str]]]:
    """What the running node ``name`` in ``namespace`` offers, less what every rclpy node offers."""
    def clean(pairs, defaults=()):
        return {(n, t[0]) for n, t in pairs if n not in defaults and not n.endswith(_DEFAULT_SERVICE_SUFFIXES)}

    ns = namespace or "/"
    return {
        "publishes": clean(node.get_publisher_names_and_types_by_node(name, ns), _DEFAULT_TOPICS),
        "subscribes": clean(node.get_subscriber_names_and_types_by_node(name, ns), _DEFAULT_TOPICS),
        "service": clean(node.get_service_names_and_types_by_node(name, ns)),
        "client": clean(node.get_client_names_and_types_by_node(name, ns)),
    }


def _collect_mode(specs):
    """The same node wiring with agent_node in collect mode: no trainer process."""
    return [dataclasses.replace(s, parameters={**s.parameters, "mode": "collect"}) if s.name == "agent_node" else s
            for s in specs]


def _assert_offers_the_listed_interface(probe_node, nodes, namespace: str, pause) -> None:
    """Wait (up to 60 s, ``pause(seconds)`` between looks) until both nodes in ``namespace`` offer
    exactly their listed interface; assert it, naming what differs."""
    from rclpy.node import NodeNameNonExistentError

    deadline = time.monotonic() + 60.0
    offered = {}
    while time.monotonic() < deadline:
        assert nodes.alive(), nodes.log_text()
        try:
            offered = {n: _offered(probe_node, n, namespace) for n in ("twin_node", "agent_node")}
        except NodeNameNonExistentError:  # not discovered yet
            pause(0.5)
            continue
        if all(offered[n] == _listed(n, namespace) for n in offered):
            break
        pause(0.5)
    for name in ("twin_node", "agent_node"):
        listed = _listed(name, namespace)
        assert offered.get(name) == listed, (
            f"{name}: offered minus listed {_diff(offered.get(name, {}), listed)}; "
            f"listed minus offered {_diff(listed, offered.get(name, {}))}"
        )


@pytest.mark.ros
def test_running_nodes_offer_exactly_the_listed_interface(ros_context, tmp_path):
    import rclpy
    from graph_helpers import Graph

    specs = graph.train_graph(graph.TrainArgs(run_dir=str(tmp_path / "run"), use_sim_time=False))
    nodes = Graph(_collect_mode(specs), tmp_path / "logs")
    probe = rclpy.create_node("reference_probe", context=ros_context)
    try:
        _assert_offers_the_listed_interface(probe, nodes, "", time.sleep)
    finally:
        probe.destroy_node()
        codes = nodes.stop()
    assert codes == {"agent_node": 0, "twin_node": 0}, nodes.log_text()


def _diff(a, b):
    return {k: sorted(a[k] - b[k]) for k in a if a[k] - b[k]}


def _get_parameter(probe, fqn: str, name: str, spin, timeout: float = 20.0):
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    client = probe.node.create_client(GetParameters, f"{fqn}/get_parameters")
    try:
        assert client.wait_for_service(timeout_sec=timeout), f"no {fqn}/get_parameters"
        fut = client.call_async(GetParameters.Request(names=[name]))
        assert spin(fut.done, timeout), f"no answer from {fqn}/get_parameters"
        return parameter_value_to_python(fut.result().values[0])
    finally:
        probe.node.destroy_client(client)


@pytest.mark.ros
def test_namespaced_graph_runs_inside_its_namespace(ros_context, tmp_path):
    """The train graph with namespace /arm1: every listed name but the global /clock and /diagnostics
    resolves under /arm1, nothing is left on the root names, the agent commands (and resets) the twin
    inside the namespace, and the shipped YAML files' `/**/<node>:` sections reach the namespaced nodes."""
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped
    from graph_helpers import Graph, Probe

    ns = "/arm1"
    # The shipped params files with one value changed in each, to see that their sections apply in /arm1.
    agent_yaml, twin_yaml = tmp_path / "mbpo.yaml", tmp_path / "twin.yaml"
    text = (REPO / "config" / "mbpo.yaml").read_text()
    assert "\n    max_velocity_step: 3.0  #" in text
    assert "\n    base_frame: base_link  #" in text  # the agent checks the ee_pose frame against it
    agent_yaml.write_text(text.replace("\n    max_velocity_step: 3.0  #", "\n    max_velocity_step: 2.5  #")
                          .replace("\n    base_frame: base_link  #", "\n    base_frame: arm1_base  #"))
    text = (REPO / "config" / "twin.yaml").read_text()
    assert "\n    frame_id: base_link " in text
    twin_yaml.write_text(text.replace("\n    frame_id: base_link ", "\n    frame_id: arm1_base "))

    specs = graph.train_graph(graph.TrainArgs(run_dir=str(tmp_path / "run"), use_sim_time=False, namespace=ns,
                                              config=str(agent_yaml), twin_config=str(twin_yaml)))
    assert all(s.namespace == ns for s in specs)
    nodes = Graph(_collect_mode(specs), tmp_path / "logs")
    probe = Probe(ros_context, namespace=ns)  # listens on /arm1/joint_states and /arm1/arm_controller/commands
    frames: list[str] = []
    probe.node.create_subscription(PoseStamped, "ee_pose", lambda m: frames.append(m.header.frame_id), 10)
    hardware: set[tuple[str, str]] = set()  # (status name, hardware_id) seen on the global /diagnostics
    probe.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: hardware.update(
        (st.name.split(":")[0], st.hardware_id) for st in m.status), 10)
    try:
        # 1. The interface, resolved in /arm1.
        _assert_offers_the_listed_interface(probe.node, nodes, ns, lambda t: probe.spin_until(lambda: False, t))
        cmd = f"{ns}/arm_controller/commands"
        assert {(i.node_namespace, i.node_name) for i in probe.node.get_publishers_info_by_topic(cmd)} == {
            (ns, "agent_node")}
        assert (ns, "twin_node") in {(i.node_namespace, i.node_name)
                                     for i in probe.node.get_subscriptions_info_by_topic(cmd)}
        # 2. The agent commands the twin in /arm1 and the arm moves; the agent's reset reached the twin.
        ok = probe.spin_until(lambda: len(probe.commands) >= 20 and len(probe.states) >= 20 and frames,
                              60.0, nodes.alive)
        assert ok, f"{len(probe.commands)} commands, {len(probe.states)} states in {ns}\n{nodes.log_text()}"
        assert all(c[1].shape == (6,) for c in probe.commands)
        assert np.abs(probe.states[-1][2] - probe.states[0][2]).max() > 1e-3, "the arm does not move"
        # The first episode (5 s at 20 Hz) ends with the agent calling twin_node/reset, resolved in /arm1.
        reset = probe.spin_until(lambda: ": goal (" in nodes.logs["twin_node"].read_text(), 30.0, nodes.alive)
        assert reset, f"the agent's reset did not reach {ns}/twin_node/reset\n{nodes.log_text()}"
        # 3. Nothing on the root-namespace names, no node at the root.
        topics = {n for n, _ in probe.node.get_topic_names_and_types()}
        services = {n for n, _ in probe.node.get_service_names_and_types()}
        for root in ("/joint_states", "/ee_pose", "/goal", "/arm_controller/commands",
                     "/arm_controller/joint_trajectory"):
            assert root not in topics, f"{root} in the graph: {sorted(topics)}"
        assert not any(s.startswith(("/twin_node/", "/agent_node/")) for s in services), sorted(services)
        placed = set(probe.node.get_node_names_and_namespaces())
        assert {("twin_node", ns), ("agent_node", ns)} <= placed, placed
        assert not {("twin_node", "/"), ("agent_node", "/")} & placed, placed
        # 4. The YAML sections (`/**/agent_node:`, `/**/twin_node:`) were applied inside /arm1.
        assert _get_parameter(probe, f"{ns}/agent_node", "max_velocity_step", probe.spin_until) == 2.5
        assert _get_parameter(probe, f"{ns}/twin_node", "frame_id", probe.spin_until) == "arm1_base"
        assert set(frames) == {"arm1_base"}, set(frames)
        # 5. On the global /diagnostics each node names itself by its namespaced name.
        want = {("agent_node", f"{ns}/agent_node"), ("twin_node", f"{ns}/twin_node")}
        assert probe.spin_until(lambda: want <= hardware, 10.0, nodes.alive), hardware
    finally:
        probe.close()
        codes = nodes.stop()
    assert codes == {"agent_node": 0, "twin_node": 0}, nodes.log_text()
