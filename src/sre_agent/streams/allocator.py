"""glibc's allocator in the worker: large blocks mapped on their own (issue 18).

glibc serves a request of at least ``M_MMAP_THRESHOLD`` bytes with its own ``mmap`` and
gives it back to the kernel when freed. The threshold starts at 128 KiB but *rises* to
the size of each such block freed (up to 32 MiB): after the first 256 KiB state leaf,
fetch response or request body is freed, every later one comes from the heap arenas,
and what they leave free between live objects stays in the worker's RSS. Measured at
100,000 series (docs/benchmarks.md): 1.9-2.0 KB per series of free memory held in
the arenas with the rising threshold, 0.8 KB with it fixed at 128 KiB.

``worker.malloc_mmap_threshold`` fixes it (``mallopt(M_MMAP_THRESHOLD)``, as the
``MALLOC_MMAP_THRESHOLD_`` variable does, which also stops the rise), set by the worker
command before its threads and tables start. No-op off glibc, or at 0.
"""

from __future__ import annotations

import ctypes
import logging

__all__ = ["M_MMAP_THRESHOLD", "configure"]

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3


def configure(mmap_threshold: int) -> bool:
    """Fix glibc's mmap threshold (bytes; 0 leaves glibc's rising default). True if set."""
    if mmap_threshold <= 0:
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    if not mallopt(M_MMAP_THRESHOLD, mmap_threshold):
        log.warning("mallopt(M_MMAP_THRESHOLD, %d) refused", mmap_threshold)
        return False
    return True
