"""glibc malloc settings that keep freed memory for reuse instead of handing it back to the kernel.

Why: registration, resampling and the network allocate and free arrays of 1-30 MB hundreds of times per
case.  glibc serves such blocks with mmap and unmaps them on free, so every new array is faulted in page
by page again: a detection case took 3.3 M page faults and 11 s of its 70 s in the kernel (2-core dev
machine, docs/benchmarks.md "Session 12").  Serving blocks up to 32 MB (glibc's maximum) from the heap
and never trimming it cut that to 0.5 M faults and 2.6 s, peak memory +12 %.  Other C libraries: a no-op.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit
TOP_PAD = 256 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Apply the settings to this process (True if glibc took them all)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the interpreter's own symbols, libc's among them
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(mallopt(p, v) == 1 for p, v in ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                                             (_M_TOP_PAD, TOP_PAD)))
    log.debug("malloc: keep freed memory %s", "on" if ok else "not (all) taken")
    return ok
