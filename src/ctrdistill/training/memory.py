"""Keep freed tensor memory in the process heap instead of handing it back to the OS.

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh mmap and
unmaps it on free. A CPU training step allocates the same large activations every step, so
each step page-faults them in again and the kernel zeroes every page: FiBiNET's (4096, 741, 16)
pair tensors made that 40% of its step (BENCHMARKS.md §2.2). Served from the heap, and with the
heap not trimmed, freed blocks are reused at once. Blocks kept for one working set do not fit
another (evaluation batches are 4 times the training batch), so phases with other tensor sizes
run inside `new_working_set`, which hands the kept memory back before and after. Setting
CTRDISTILL_KEEP_FREED_MEMORY=0 in the environment leaves glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# mallopt parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # mallopt takes a C int; 2 GB of free heap top before any trimming
OPT_OUT = "CTRDISTILL_KEEP_FREED_MEMORY"

_libc: ctypes.CDLL | None = None  # set once keep_freed_memory took effect


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed ones (glibc only; idempotent).

    Returns whether the setting took effect: False on other platforms and C libraries, and
    when the environment opts out, where allocation is left as it is.
    """
    global _libc
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT) == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        return False
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return False
    # musl's mallopt is a stub that returns 0, so the result also tells glibc apart.
    if libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM):
        _libc = libc
    return _libc is not None


def release_freed_memory() -> None:
    """Hand every freed page of the heap back to the OS (a no-op unless memory is kept)."""
    if _libc is not None:
        _libc.malloc_trim(0)


@contextmanager
def new_working_set() -> Iterator[None]:
    """Run a phase whose tensors differ in size from those around it (evaluation inside
    training) without the heap holding both phases' peaks at once."""
    release_freed_memory()
    try:
        yield
    finally:
        release_freed_memory()
