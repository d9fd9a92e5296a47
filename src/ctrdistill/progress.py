"""Progress bars for long work: rate (rows/s, samples/s) and ETA, on stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

_quiet = False


def set_quiet(quiet: bool) -> None:
    """`--quiet`: no progress bar in this process, whatever the callers ask."""
    global _quiet
    _quiet = quiet


@contextmanager
def progress(
    total: int | None, description: str, unit: str, enabled: bool = True, initial: int = 0
) -> Iterator[tqdm]:
    # Off a terminal (CI logs, pipes) a line every 30 s is progress enough.
    interval = 1.0 if sys.stderr.isatty() else 30.0
    bar = tqdm(total=total, desc=description, unit=unit, unit_scale=True, dynamic_ncols=True,
               disable=not enabled or _quiet, file=sys.stderr, mininterval=interval, leave=False,
               initial=initial)
    try:
        yield bar
    finally:
        bar.close()
