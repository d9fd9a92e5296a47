"""Dynamic batching: concurrent requests scored in one onnxruntime call, as Triton's batcher.

A request's rows wait at most `max_delay` seconds for others; a batch is scored as soon as it
holds `max_rows` rows. Each request gets its own slice of the batch's outputs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

Feeds = dict[str, np.ndarray]
Scores = tuple[np.ndarray, np.ndarray]


@dataclass
class Batcher:
    score: Callable[[Feeds], Scores]
    max_delay: float
    max_rows: int
    observe: Callable[[int], None]  # told each batch's rows
    executor: Executor  # where `score` runs, off the event loop
    pending: list[tuple[Feeds, asyncio.Future[Scores]]] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None

    async def __call__(self, feeds: Feeds) -> Scores:
        """The scores of `feeds` (one request's rows), scored with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        count = len(next(iter(feeds.values())))
        if self.rows + count > self.max_rows:
            self._flush()
        future: asyncio.Future[Scores] = loop.create_future()
        self.pending.append((feeds, future))
        self.rows += count
        if self.rows >= self.max_rows:
            self._flush()
        elif self.timer is None:
            self.timer = loop.call_later(self.max_delay, self._flush)
        return await future

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending, self.rows = self.pending, [], 0
        if batch:
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[Feeds, asyncio.Future[Scores]]]) -> None:
        names = batch[0][0].keys()
        joined = {n: np.concatenate([feeds[n] for feeds, _ in batch]) for n in names}
        self.observe(len(next(iter(joined.values()))))
        try:
            logit, probability = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.score, joined)
        except Exception as error:  # every request of the batch gets the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        start = 0
        for feeds, future in batch:
            end = start + len(next(iter(feeds.values())))
            if not future.done():  # a client that went away cancelled its future
                future.set_result((logit[start:end], probability[start:end]))
            start = end
