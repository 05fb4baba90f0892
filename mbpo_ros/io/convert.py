"""Add the policy arrays to a checkpoint written before mbpo_ros stored them (for ``load_policy``).

    python -m mbpo_ros.io.convert runs/reach/checkpoint

Loads the full MBPO state once (torch, buffers: on the training machine), then rewrites the
checkpoint atomically with the same tensors and meta plus ``arrays.npz`` ``policy/*``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mbpo_ros.io.checkpoint import POLICY_PREFIX, load_checkpoint, resolve_checkpoint, save_checkpoint


def add_policy_arrays(path: str | Path) -> Path:
    """Rewrite the checkpoint at ``path`` (or a run directory) with its policy arrays; returns its path."""
    from mbpo_ros.core.config import config_from_dict
    from mbpo_ros.core.tasks import get_task
    from mbpo_ros.core.trainer import MBPO

    path = resolve_checkpoint(path)
    tensors, arrays, meta = load_checkpoint(path)
    if "config" not in meta:
        raise ValueError(f"{path} is not an MBPO training checkpoint (its meta has no 'config')")
    cfg = config_from_dict(meta["config"])
    cfg.device = "cpu"
    task = get_task(meta.get("task", "reach"))
    mbpo = MBPO(int(meta["obs_dim"]), int(meta["act_dim"]), cfg, task)
    mbpo.load_state(tensors, arrays, meta)
    arrays = dict(arrays)
    arrays.update({POLICY_PREFIX + k: v for k, v in mbpo.policy_snapshot().to_arrays().items()})
    return save_checkpoint(path, tensors=tensors, arrays=arrays, meta=meta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mbpo_ros.io.convert", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="checkpoint directory or run directory")
    args = parser.parse_args(argv)
    try:
        print(f"policy arrays added: {add_policy_arrays(args.checkpoint)}")
    except (OSError, ValueError) as e:
        print(f"convert: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
