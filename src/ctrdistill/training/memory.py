"""Keep freed tensor memory in the process heap instead of handing it back to the OS.

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh mmap and
unmaps it on free. A CPU training step allocates the same large activations every step, so
each step page-faults them in again and the kernel zeroes every page: FiBiNET's (4096, 741, 16)
pair tensors made that 40% of its step (BENCHMARKS.md §2.2). Served from the heap, and with the
heap never trimmed, freed blocks are reused at once. The cost is that the process keeps its peak
memory until it exits, as PyTorch's own GPU caching allocator does; setting
CTRDISTILL_KEEP_FREED_MEMORY=0 in the environment leaves glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # mallopt takes a C int; 2 GB of free heap top before any trimming
OPT_OUT = "CTRDISTILL_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed ones (glibc only; idempotent).

    Returns whether the setting took effect: False on other platforms and C libraries, and
    when the environment opts out, where allocation is left as it is.
    """
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT) == "0":
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError):
        return False
    # musl's mallopt is a stub that returns 0, so the result also tells glibc apart.
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
