"""How a training process's C heap treats freed memory (`host_memory` in the config).

An update allocates and frees the same large CPU tensors dozens of times (a tiny model's
imagined critic logits, [16, 1024, 256] floats, are 16 MiB). By default glibc gives freed
memory at the top of its heap back to the OS beyond 128 KiB (`M_TRIM_THRESHOLD`) and maps
large blocks afresh, so every such tensor page-faults in again, zero-filled by the kernel:
45,600 minor faults and 0.14 s of kernel time in a 0.77 s tiny CPU update at batch 16,
130,000 and 0.38 s of 1.53 s at batch 32 (`benchmarks/RESULTS.md`). `retain` keeps freed
memory in the process for the next tensor (trimming off, blocks up to glibc's 32 MiB
ceiling from the heap, the heap grown 64 MiB at a time); the peak size is the same, it is
just not handed back. `system` leaves the C library's defaults.

glibc only (`mallopt`); elsewhere (macOS, musl) `retain` is a logged no-op. Only the
processes that train call this, never the robot-side actor.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

# mallopt(3) parameters, from glibc's malloc.h
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc refuses more on 64-bit (HEAP_MAX_SIZE / 2)
TOP_PAD = 64 * 1024 * 1024
HOST_MEMORY_MODES = ("retain", "system")


def configure_host_memory(mode: str) -> bool:
    """Apply `mode` (`retain` or `system`) to this process's allocator; returns whether `retain` took effect."""
    if mode not in HOST_MEMORY_MODES:
        raise ValueError(f"host_memory must be one of {HOST_MEMORY_MODES}, got {mode!r}")
    if mode == "system":
        return False
    mallopt = _glibc_mallopt()
    if mallopt is None:
        log.debug("host_memory=retain: no glibc mallopt on this platform; the allocator keeps its defaults")
        return False
    # -1 turns trimming off (mallopt(3)); a fixed mmap threshold also stops glibc adapting it
    settings = ((M_TRIM_THRESHOLD, -1), (M_TOP_PAD, TOP_PAD), (M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX))
    refused = [param for param, value in settings if mallopt(param, value) != 1]
    if refused:
        log.warning("host_memory=retain: mallopt refused parameters %s; freed memory may still go back to the OS "
                    "(set host_memory: system to silence this)", refused)
    return not refused


def _glibc_mallopt() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 -- musl has no such symbol, and its mallopt does nothing
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt
