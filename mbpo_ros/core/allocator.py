"""Keep freed heap memory in the process, so that tensor allocations stop costing page faults (glibc).

An SAC update or an ensemble training step allocates and frees tensors of 0.2-2 MB thousands of
times a second. glibc serves blocks above its mmap threshold with fresh ``mmap`` calls and returns
freed memory at the top of the heap to the kernel, so every such tensor is touched page by page as
new memory: 50-400 minor page faults per step, which cost about 10 % of the step on one thread and
about 15 % on two (the faults serialise the OpenMP threads; measured in docs/benchmarks.md).
:func:`retain_freed_memory` raises both thresholds once per process, after which the same steps run
with no page faults. Blocks above the mmap threshold (replay buffers) still come from ``mmap``.
Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["retain_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_applied: bool | None = None


def retain_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Set glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` (bytes) for this process, once.

    Returns True when they are set (now or by an earlier call), False where there is no glibc.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(
        mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))
    )
    return _applied
