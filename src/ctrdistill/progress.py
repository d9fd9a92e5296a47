"""Progress of long work on stderr: rate (rows/s, samples/s) and ETA.

On a terminal a tqdm bar redraws one line. Off a terminal (a log file, a pipe, CI) a bar's
carriage returns would leave fragments in the log, so a plain line is printed every 30 s
instead, and a last one at the end of work that printed any."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

LOG_INTERVAL_S = 30.0


class LogLines:
    """The part of tqdm's interface the code uses (update, set_postfix, close, n), as lines."""

    def __init__(self, total: int | None, description: str, unit: str, initial: int = 0,
                 interval: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.description, self.unit = total, description, unit
        self.n = self.initial = initial
        self.interval, self.clock = interval, clock
        self.started = self.last = clock()
        self.postfix = ""
        self.printed_at: int | None = None  # the count the last line showed

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval:
            self._line(now)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self, failed: bool = False) -> None:
        if self.printed_at is not None and self.printed_at != self.n and not failed:
            self._line(self.clock())

    def _line(self, now: float) -> None:
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        rate = (self.n - self.initial) / elapsed
        parts = [f"{self.n:,} {self.unit}" + (f" of {self.total:,} ({self.n / self.total:.0%})"
                                               if self.total else "")]
        parts.append(f"{rate:,.0f} {self.unit}/s")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"ETA {_duration((self.total - self.n) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        print(f"{self.description}: {', '.join(parts)}", file=sys.stderr, flush=True)
        self.printed_at = self.n


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


_quiet = False


def set_quiet(quiet: bool) -> None:
    """`--quiet`: no progress bar in this process, whatever the callers ask."""
    global _quiet
    _quiet = quiet


@contextmanager
def progress(
    total: int | None, description: str, unit: str, enabled: bool = True, initial: int = 0
) -> Iterator[Any]:
    enabled = enabled and not _quiet
    if not sys.stderr.isatty():
        lines = LogLines(total, description, unit, initial) if enabled else \
            LogLines(total, description, unit, initial, interval=float("inf"))
        try:
            yield lines
        except BaseException:
            lines.close(failed=True)
            raise
        lines.close()
        return
    bar = tqdm(total=total, desc=description, unit=unit, unit_scale=True, dynamic_ncols=True,
               disable=not enabled, file=sys.stderr, mininterval=1.0, leave=False,
               initial=initial)
    try:
        yield bar
    finally:
        bar.close()
