"""Batch iterators: in-memory (permute once per epoch, slice columns) and streaming over shards
with a shuffle buffer. Both are deterministic for a seed and yield dicts of tensors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import torch

from ctrdistill.data.dataset import Batch, ColumnData, frame_to_columns
from ctrdistill.data.schema import FeatureMap


class BatchLoader:
    """Batches sliced from in-memory column tensors; a fresh seeded permutation each epoch."""

    def __init__(self, data: ColumnData, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False) -> None:
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_rows(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.data)
        order = None
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=generator)
        self.epoch += 1
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            end = min(start + self.batch_size, n)
            yield self.data.take(order[start:end] if order is not None else slice(start, end))


class StreamingLoader:
    """Batches from Parquet shards read one at a time through a shuffle buffer (bounded memory).

    `transform` may join per-row columns (e.g. teacher labels) onto each shard's columns.
    """

    def __init__(self, shards: list[Path], feature_map: FeatureMap, batch_size: int,
                 buffer_rows: int = 1_000_000, seed: int = 0, shuffle: bool = True,
                 transform: Callable[[ColumnData], ColumnData] | None = None) -> None:
        self.shards = list(shards)
        self.feature_map = feature_map
        self.batch_size = batch_size
        self.buffer_rows = buffer_rows
        self.seed = seed
        self.shuffle = shuffle
        self.transform = transform
        self.epoch = 0
        self.num_rows = sum(pl.scan_parquet(s).select(pl.len()).collect().item()
                            for s in self.shards)

    def __len__(self) -> int:
        return -(-self.num_rows // self.batch_size)

    def _columns(self, shard: Path) -> ColumnData:
        data = frame_to_columns(pl.read_parquet(shard), self.feature_map)
        return self.transform(data) if self.transform else data

    def __iter__(self) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.shards), generator=generator).tolist() if self.shuffle \
            else range(len(self.shards))
        buffer: list[ColumnData] = []
        buffered = 0
        for index in order:
            buffer.append(self._columns(self.shards[index]))
            buffered += len(buffer[-1])
            if buffered >= self.buffer_rows:
                data = self._shuffled(ColumnData.concat(buffer), generator)
                usable = len(data) - len(data) % self.batch_size
                yield from self._batches(data, usable)
                # The remainder (less than one batch) waits for the next shard.
                buffer = [data.subset(torch.arange(usable, len(data)))] if usable < len(data) \
                    else []
                buffered = len(data) - usable
        if buffer:
            data = self._shuffled(ColumnData.concat(buffer), generator)
            yield from self._batches(data, len(data))

    def _shuffled(self, data: ColumnData, generator: torch.Generator) -> ColumnData:
        return data.subset(torch.randperm(len(data), generator=generator)) if self.shuffle \
            else data

    def _batches(self, data: ColumnData, rows: int) -> Iterator[Batch]:
        for start in range(0, rows, self.batch_size):
            yield data.take(slice(start, min(start + self.batch_size, rows)))
