"""glibc malloc tuning: keep freed memory in the process instead of returning it to the OS.

With glibc's defaults, every large tensor freed during a step is unmapped and the next step maps
(and page-faults) it again: a CPU probe found half the time spent in the kernel. Raising the mmap
and trim thresholds and the top pad (what MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ and
MALLOC_TOP_PAD_ do, but set at run time with mallopt) removes that churn. Set
DISTILXLSR_MALLOC_TUNING=0 to keep the defaults; environment variables set by the user win.

The same call bounds oneDNN's primitive cache (ONEDNN_PRIMITIVE_CACHE_CAPACITY, default 1024):
the CPU's convolutions keep one primitive per input shape, with buffers sized to it, and batches
of varying length make a new shape almost every step, so a pretraining run's memory grew by tens
of MB a step to 11 GB and the kernel killed it. 64 primitives hold a few steps' shapes (and every
shape of a static-shape run); measured on the shipped teacher, 30 steps of random lengths: 1.6
GB flat against 2.6 GB and growing, 1.06x the time (two other jobs on the cores).
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

ONEDNN_CACHE = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
"""Read by oneDNN when it creates its first primitive: set before any convolution runs."""

_applied: bool | None = None


def tune_malloc() -> bool:
    """Apply the settings once (Linux/glibc only); True if they are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("DISTILXLSR_MALLOC_TUNING", "1") == "0":
        return False
    os.environ.setdefault(*ONEDNN_CACHE)
    if not sys.platform.startswith("linux"):
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
