"""How far a call raises this process's peak resident memory, as the kernel counts it: for readers that
allocate in C (Pillow's pixel buffers), which ``tracemalloc`` does not see.

``import diptych`` makes glibc keep freed memory for reuse (:mod:`diptych.allocator`), so a call could
allocate a gigabyte unseen, inside memory freed earlier. While :class:`PeakRSS` measures, glibc is set to
map every block over 128 KiB afresh and return it when freed (its own defaults, without the dynamic
threshold), and diptych's settings are restored after. Linux only; elsewhere ``grew`` stays ``None``."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import re
import sys
from pathlib import Path

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MEASURING = {M_MMAP_THRESHOLD: 128 << 10, M_TRIM_THRESHOLD: 128 << 10, M_TOP_PAD: 0}


@functools.cache
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def _kb(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


class PeakRSS:
    """``with PeakRSS() as m: call()``; then ``m.grew``: the bytes by which the peak resident memory rose
    above what the process held at the start (``None`` where it cannot be measured)."""

    def __enter__(self):
        self.grew, self._libc, self._start = None, _libc(), None
        if self._libc is not None:
            for k, v in MEASURING.items():
                self._libc.mallopt(k, ctypes.c_int(v))
            self._libc.malloc_trim(ctypes.c_size_t(0))
            try:
                Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from now
                self._start = _kb("VmRSS")
            except OSError:
                self._start = None
        return self

    def __exit__(self, *exc):
        if self._start is not None:
            self.grew = _kb("VmHWM") - self._start
        from diptych.allocator import SETTINGS, USER_ENV

        if self._libc is not None and not any(k in os.environ for k in USER_ENV):
            for k, v in SETTINGS.items():  # diptych's settings again (as keep_freed_memory sets them)
                self._libc.mallopt(k, ctypes.c_int(v))
        return False


def peak_rss_growth(call):
    """``call()``'s result and :attr:`PeakRSS.grew` while it ran."""
    with PeakRSS() as m:
        result = call()
    return result, m.grew
