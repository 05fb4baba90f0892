"""`mbpo-ros`: run MBPO without `ros2 launch`.

Subcommands (each module owns its own arguments, so `--help` stays accurate):

- `mbpo-ros train`  train Reach on the bundled MuJoCo twin (twin_node + agent_node, lock-step)
- `mbpo-ros eval`   evaluate a checkpoint's deterministic policy on the twin
- `mbpo-ros gym`    MBPO on a Gymnasium MuJoCo task (the paper's benchmarks)
- `mbpo-ros check-model`  what an MJCF/URDF arm has and lacks for the twin and the agent
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Modules expose add_arguments(parser) and run(args) -> int.
SUBCOMMANDS = {
    "train": ("mbpo_ros.sim_train", "train Reach on the bundled MuJoCo twin in lock-step simulated time"),
    "eval": ("mbpo_ros.sim_eval", "run a checkpoint's deterministic policy on the twin and report success"),
    "gym": ("mbpo_ros.gym_train", "run MBPO on a Gymnasium MuJoCo task (Hopper-v5, InvertedPendulum-v5, ...)"),
    "check-model": ("mbpo_ros.model_check",
                    "check an MJCF/URDF arm: joints, limits, actuators, end-effector site, reach box, what is missing"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mbpo-ros",
        description="Model-Based Policy Optimization for robot arms on ROS 2.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
