"""agent_lifecycle_node: agent_node as a managed (lifecycle) node, for controller-like bring-up.

The same wiring as agent_node (nodes/agent_node.AgentWiring), driven by the ROS 2 lifecycle
(``ros2 lifecycle set /agent_node configure``, or a lifecycle manager):

    unconfigured  parameters declared and validated (a bad one ends the process, exit code 2)
    configure     loads the policy (deploy) or starts the learner child (train), opens the records,
                  subscribes, advertises the command topic and the services -> inactive
    activate      the control thread starts: commands at the control rate, safety as always -> active
    deactivate    the control thread stops and the stop command (zero, or hold per estop_action's
                  rule) is sent last; the learner keeps what it has -> inactive
    cleanup       final checkpoint, records closed, every subscription/publisher/service removed
                  -> unconfigured (configure may follow again)
    shutdown      as deactivate + cleanup, from any state

The plain agent_node stays the simple path (configured and commanding from the start).
"""

from __future__ import annotations

import sys
from typing import Any

from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn

from mbpo_ros.nodes.agent_node import AgentWiring
from mbpo_ros.nodes.params import (
    ParameterError,
    agent_parameter_names,
)
from mbpo_ros.nodes.run import run_node


class ManagedAgentNode(AgentWiring, LifecycleNode):
    """agent_node's wiring behind lifecycle transitions (module docstring)."""

    def __init__(self, **node_kwargs: Any) -> None:
        LifecycleNode.__init__(self, "agent_node", **node_kwargs)
        self._declare()
        self._entities: dict[str, list] = {}
        self._learning_started = self._configured = False

    def _own(self) -> dict[str, set]:
        return {"subscriptions": set(self.subscriptions), "publishers": set(self.publishers),
                "services": set(self.services), "clients": set(self.clients), "timers": set(self.timers)}

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        before = self._own()
        try:
            self._configure()
        except (ParameterError, RuntimeError, TimeoutError, OSError, ValueError) as exc:
            self.get_logger().error(f"configure failed: {type(exc).__name__}: {exc}")
            return TransitionCallbackReturn.FAILURE
        after = self._own()
        self._entities = {kind: list(after[kind] - before[kind]) for kind in after}
        self._learning_started, self._configured = False, True
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._start_control()
        if not self._learning_started:
            self.learning.start()
            self._learning_started = True
        self.get_logger().info("active: commanding")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_control()
        self.get_logger().info("inactive: stop command sent, no more commands")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.learning.close()
        self._destroy_entities()
        self._configured = False
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        if self._configured:  # from active or inactive: stop command, final checkpoint, records closed
            self.close()
            self._destroy_entities()
            self._configured = False
        return TransitionCallbackReturn.SUCCESS

    def _destroy_entities(self) -> None:
        for timer in self._entities.get("timers", []):
            self.destroy_timer(timer)
        for sub in self._entities.get("subscriptions", []):
            self.destroy_subscription(sub)
        for pub in self._entities.get("publishers", []):
            self.destroy_publisher(pub)
        for srv in self._entities.get("services", []):
            self.destroy_service(srv)
        for cli in self._entities.get("clients", []):
            self.destroy_client(cli)
        self._entities = {}


def main(args: list[str] | None = None) -> int:
    """Run the managed agent until SIGINT/SIGTERM (shutdown transition first); exit 0 (2 on bad parameters)."""
    sys.setswitchinterval(0.001)  # the control thread needs the GIL promptly when its deadline comes

    def close(node: ManagedAgentNode, code: int) -> int:
        try:  # the shutdown transition: stop command, final checkpoint (when configured)
            node.trigger_shutdown()
        except Exception as exc:  # noqa: BLE001 - already finalized, or the context is gone
            node.get_logger().warning(f"shutdown transition: {exc}")
            if node._configured:
                node.close()
        return code

    return run_node("agent_node", agent_parameter_names(), ManagedAgentNode, args, close=close)


if __name__ == "__main__":
    sys.exit(main())
