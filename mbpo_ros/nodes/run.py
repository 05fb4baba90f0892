"""The one ``main()`` of mbpo_ros's long-running nodes (agent_node, its lifecycle variant, learner_node).

The shape of ros2/examples, with the shutdown rules kept in one place:

- a misspelt key in a ``--params-file`` is refused before rclpy starts (rclpy ignores undeclared
  keys), in one line, exit ``EXIT_BAD_PARAMETER`` (2);
- SIGINT and SIGTERM both only set a flag (rclpy's own handler is off): Ctrl-C, ``ros2 launch``'s
  escalation and systemd's default KillMode all end in the same orderly close;
- one executor thread spins the node; the main thread waits for a signal, or for the node or its
  executor to die (exit 1);
- a start-up failure is one line on stderr (exit 1), a bad parameter one line (exit 2);
- the node closes while the executor still spins (its services and publishers still work during a
  final checkpoint), then the executor stops, then what must wait for the callbacks to end is
  released, the node destroyed and rclpy shut down.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from mbpo_ros.nodes.params import ParameterError, check_command_line_params_files, report_bad_parameter

__all__ = ["run_node"]


def run_node(
    name: str,
    param_names: Sequence[str],
    make_node: Callable[[], Any],
    args: list[str] | None = None,
    *,
    start: Callable[[Any], None] | None = None,
    stopped: Callable[[Any], bool] | None = None,
    close: Callable[[Any, int], int] | None = None,
    release: Callable[[Any], None] | None = None,
) -> int:
    """Run the node `make_node()` builds until SIGINT/SIGTERM and return the process exit code.

    name: the node's name in messages and params files; param_names: every parameter it declares;
    start(node): called once the executor spins; stopped(node): True when the node has stopped on
    its own (exit 1); close(node, code) -> code: the node's own shutdown (stop command, final
    checkpoint), called while the executor still spins; it may change the exit code. release(node):
    the close of a node whose callbacks must have stopped first (called once the executor stopped).
    """
    try:
        check_command_line_params_files(sys.argv if args is None else args, name, param_names)
    except ParameterError as exc:
        return report_bad_parameter(name, exc)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    node = executor = spin = None
    code = 0
    try:
        node = make_node()
        executor = SingleThreadedExecutor()  # inputs, services, timers (a control loop has its own thread)
        executor.add_node(node)
        spin = threading.Thread(target=executor.spin, name=f"{name}-executor", daemon=True)
        spin.start()
        if start is not None:
            start(node)
        while not stop.wait(0.2):
            if not spin.is_alive() or (stopped is not None and stopped(node)):
                code = 1
                break
    except ParameterError as exc:
        code = report_bad_parameter(name, exc)
    except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
        print(f"{name}: failed to start: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        if node is not None and close is not None:
            code = close(node, code)
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        if spin is not None:
            spin.join(timeout=5.0)
        if node is not None:
            if release is not None:
                release(node)
            node.destroy_node()
        rclpy.try_shutdown()
    return code
