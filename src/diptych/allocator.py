"""Keep freed heap memory in the process (glibc only), so XLA:CPU's per-step buffers stop page-faulting.

XLA:CPU allocates the temporary buffers of a compiled step afresh with ``malloc`` at every call
and frees them at its end. With glibc's defaults, buffers above the mmap threshold come straight
from ``mmap`` and go back with ``munmap``, and the freed top of a heap is handed back to the
kernel, so every step touches fresh pages again: measured on mnist-rnn and chars-lstm, ~9,000-
11,000 minor page faults per training step and a third of the JAX twin's CPU time in the kernel
(``benchmarks/rnn_gap.py``). Three ``mallopt`` settings keep those pages mapped for reuse: buffers up
to 32 MiB (glibc's largest mmap threshold) come from the heap, the heap is not trimmed, and up to
256 MiB of free memory stays at its top (set through mallopt, the pad alone, or the two thresholds
alone, still faulted here). It must run before numpy or a framework starts threads: arenas made
earlier kept faulting, so ``import diptych`` calls it first. Limit: glibc mmaps any block over
32 MiB whatever the settings, so a step whose temporaries exceed that per device (mnist-rnn on one
XLA device: 33.8 MiB) still faults; ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` at process start then
cut its kernel time from 25 to 4 ms per step (transparent huge pages). Pages never touched cost
nothing; the process keeps its peak heap instead of returning it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc's mallopt parameter numbers (malloc.h) and the values set.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 2**31 - 1, M_TOP_PAD: 256 << 20}
USER_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Apply :data:`SETTINGS` with ``mallopt`` when the C library is glibc. ``False`` (nothing done)
    elsewhere, or when the user tuned glibc's malloc through the environment (their choice stands)."""
    if not sys.platform.startswith("linux") or any(k in os.environ for k in USER_ENV):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return all(libc.mallopt(k, ctypes.c_int(v)) == 1 for k, v in SETTINGS.items())  # musl: no mallopt
    except (OSError, AttributeError):
        return False
