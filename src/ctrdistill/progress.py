"""Progress bars for long work: rate (rows/s, samples/s) and ETA, on stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def progress(
    total: int | None, description: str, unit: str, enabled: bool = True
) -> Iterator[tqdm]:
    bar = tqdm(total=total, desc=description, unit=unit, unit_scale=True, dynamic_ncols=True,
               disable=not enabled, file=sys.stderr, mininterval=1.0, leave=False)
    try:
        yield bar
    finally:
        bar.close()
