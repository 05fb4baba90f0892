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


def test_readme_holds_the_generated_tables():
    readme = (REPO / "README.md").read_text()
    block = reference.render()
    assert block in readme, (
        "README.md's interface tables are out of date: run `python -m mbpo_ros.nodes.reference --write README.md`"
    )


def _offered(node, name: str) -> dict[str, set[tuple[str, str]]]:
    def clean(pairs, defaults=()):
        return {(n, t[0]) for n, t in pairs if n not in defaults and not n.endswith(_DEFAULT_SERVICE_SUFFIXES)}

    return {
        "publishes": clean(node.get_publisher_names_and_types_by_node(name, "/"), _DEFAULT_TOPICS),
        "subscribes": clean(node.get_subscriber_names_and_types_by_node(name, "/"), _DEFAULT_TOPICS),
        "service": clean(node.get_service_names_and_types_by_node(name, "/")),
        "client": clean(node.get_client_names_and_types_by_node(name, "/")),
    }


def _listed(name: str) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {"publishes": set(), "subscribes": set(), "service": set(), "client": set()}
    for e in reference.INTERFACE:
        if e.node == name:
            out[e.kind].add((e.name, e.type))
    return out


@pytest.mark.ros
def test_running_nodes_offer_exactly_the_listed_interface(ros_context, tmp_path):
    import rclpy
    from graph_helpers import Graph
    from rclpy.node import NodeNameNonExistentError

    specs = graph.train_graph(graph.TrainArgs(run_dir=str(tmp_path / "run"), use_sim_time=False))
    # collect mode: the same node wiring without starting a trainer process.
    specs = [dataclasses.replace(s, parameters={**s.parameters, "mode": "collect"}) if s.name == "agent_node" else s
             for s in specs]
    nodes = Graph(specs, tmp_path / "logs")
    probe = rclpy.create_node("reference_probe", context=ros_context)
    try:
        deadline = time.monotonic() + 60.0
        offered = {}
        while time.monotonic() < deadline:
            assert nodes.alive(), nodes.log_text()
            try:
                offered = {n: _offered(probe, n) for n in ("twin_node", "agent_node")}
            except NodeNameNonExistentError:  # not discovered yet
                time.sleep(0.5)
                continue
            if all(offered[n] == _listed(n) for n in offered):
                break
            time.sleep(0.5)
        for name in ("twin_node", "agent_node"):
            assert offered[name] == _listed(name), (
                f"{name}: offered minus listed {_diff(offered[name], _listed(name))}; "
                f"listed minus offered {_diff(_listed(name), offered[name])}"
            )
    finally:
        probe.destroy_node()
        codes = nodes.stop()
    assert codes == {"agent_node": 0, "twin_node": 0}, nodes.log_text()


def _diff(a, b):
    return {k: sorted(a[k] - b[k]) for k in a if a[k] - b[k]}
