"""glibc malloc tuning: keep freed memory in the process instead of returning it to the OS.

With glibc's defaults, every large tensor freed during a step is unmapped and the next step maps
(and page-faults) it again: a CPU probe found half the time spent in the kernel. Raising the mmap
and trim thresholds and the top pad (what MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ and
MALLOC_TOP_PAD_ do, but set at run time with mallopt) removes that churn. Set
DISTILXLSR_MALLOC_TUNING=0 to keep the defaults; environment variables set by the user win.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameter numbers from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

SETTINGS = {
    M_MMAP_THRESHOLD: ("MALLOC_MMAP_THRESHOLD_", 1 << 30),  # allocations up to 1 GiB from the heap
    M_TRIM_THRESHOLD: ("MALLOC_TRIM_THRESHOLD_", 1 << 30),  # return memory only past 1 GiB free
    M_TOP_PAD: ("MALLOC_TOP_PAD_", 256 << 20),  # grow the heap in 256 MiB steps
}

_applied: bool | None = None


def tune_malloc() -> bool:
    """Apply the settings once (Linux/glibc only); True if they are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if (
        not sys.platform.startswith("linux")
        or os.environ.get("DISTILXLSR_MALLOC_TUNING", "1") == "0"
    ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (e.g. musl): nothing to tune
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = True
    for param, (env, value) in SETTINGS.items():
        if env not in os.environ:
            ok &= mallopt(param, value) == 1
    _applied = ok
    return ok
