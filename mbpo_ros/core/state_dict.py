"""Nested ``state_dict()`` (optimiser state) <-> flat tensors plus a JSON-safe skeleton.

Plain torch, no file format: ``core`` returns these pieces as state, ``io.checkpoint`` writes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["StateDictError", "flatten_state_dict", "unflatten_state_dict"]


class StateDictError(ValueError):
    """A skeleton refers to a tensor that is missing, or holds a node this module did not write."""



def _encode(obj: Any, prefix: str, rel: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Turn a nested state dict into JSON-safe data, moving tensors into ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix + rel] = obj
        return {"__tensor__": rel}
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, np.generic):
        return _encode(obj.item(), prefix, rel, tensors)
    if isinstance(obj, torch.dtype):
        return {"__dtype__": str(obj).removeprefix("torch.")}
    if isinstance(obj, Mapping):
        items = []
        for k, v in obj.items():
            if not (isinstance(k, (str, int)) and not isinstance(k, bool)):
                raise TypeError(f"state dict key {k!r} at '{rel or '/'}' is a {type(k).__name__}; only str/int keys")
            items.append([k, _encode(v, prefix, f"{rel}.{k}" if rel else str(k), tensors)])
        return {"__dict__": items}
    if isinstance(obj, (list, tuple)):
        enc = [_encode(v, prefix, f"{rel}.{i}" if rel else str(i), tensors) for i, v in enumerate(obj)]
        return {"__tuple__": enc} if isinstance(obj, tuple) else enc
    raise TypeError(f"state dict value at '{rel or '/'}' is a {type(obj).__name__}, which has no checkpoint encoding")


def _decode(obj: Any, prefix: str, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, prefix, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            key = prefix + obj["__tensor__"]
            if key not in tensors:
                raise StateDictError(f"state dict refers to tensor '{key}', which the checkpoint lacks")
            return tensors[key]
        if "__dict__" in obj:
            return {k: _decode(v, prefix, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, prefix, tensors) for v in obj["__tuple__"])
        if "__float__" in obj:
            return float(obj["__float__"])
        if "__dtype__" in obj:
            dtype = getattr(torch, obj["__dtype__"], None)
            if not isinstance(dtype, torch.dtype):
                raise StateDictError(f"unknown torch dtype {obj['__dtype__']!r} in state dict")
            return dtype
        raise StateDictError(f"unrecognised state dict node {sorted(obj)!r}")
    return obj


def flatten_state_dict(sd: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a nested ``state_dict()`` into flat tensors and a JSON-safe skeleton.

    sd:     e.g. ``torch.optim.Adam.state_dict()`` - nested dicts (str/int keys), lists,
            tuples, tensors and Python scalars.
    prefix: prepended to every tensor name, e.g. "optim/actor/", so several state dicts
            can share one checkpoint.
    Returns ``(tensors, skeleton)``: put ``tensors`` into the checkpoint's tensors and
    ``skeleton`` under a key of its meta; ``unflatten_state_dict`` reverses it.
    """
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(sd, prefix, "", tensors)
    return tensors, skeleton


def unflatten_state_dict(tensors: Mapping[str, torch.Tensor], meta: Any, prefix: str = "") -> Any:
    """Rebuild the nested state dict from ``flatten_state_dict``'s output (tensors may hold other keys too)."""
    return _decode(meta, prefix, tensors)
