"""Batch iterators: in-memory (permute once per epoch, slice columns) and streaming over shards
with a shuffle buffer. Both are deterministic for a seed and an epoch, so a resumed fit can
replay an epoch from any batch (`epoch_batches(epoch, skip)`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pyarrow.parquet as pq
import torch

from ctrdistill.data.batch import Batch
from ctrdistill.data.dataset import ColumnData, frame_to_columns
from ctrdistill.data.schema import FeatureMap
from ctrdistill.files import PREPARE, read_parquet, reading


class Loader(Protocol):
    """What the trainer reads: batches of an epoch, by epoch number (iterating a loader yields
    the next epoch's)."""

    num_rows: int

    def __len__(self) -> int: ...

    def epoch_batches(self, epoch: int, skip: int = 0) -> Iterator[Batch]: ...


def _rows(shard: Path) -> int:
    with reading(shard, PREPARE):
        return pq.read_metadata(shard).num_rows


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class _Epochs:
    """Iteration over successive epochs: each `iter()` yields the next epoch's batches."""

    epoch = 0

    def epoch_batches(self, epoch: int, skip: int = 0) -> Iterator[Batch]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Batch]:
        self.epoch += 1
        return self.epoch_batches(self.epoch - 1)


class BatchLoader(_Epochs):
    """Batches sliced from in-memory column tensors; a fresh seeded permutation each epoch."""

    def __init__(self, data: ColumnData, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False) -> None:
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_rows(self) -> int:
        return len(self.data)

    def epoch_batches(self, epoch: int, skip: int = 0) -> Iterator[Batch]:
        """The batches of `epoch` (a fresh permutation per epoch), from batch `skip` on."""
        n = len(self.data)
        order = torch.randperm(n, generator=_epoch_generator(self.seed, epoch)) \
            if self.shuffle else None
        if order is not None:
            order = order.to(self.data.label.device)  # data placed on a GPU: index there
        for start in range(skip * self.batch_size, len(self) * self.batch_size, self.batch_size):
            end = min(start + self.batch_size, n)
            yield self.data.take(order[start:end] if order is not None else slice(start, end))


class StreamingLoader(_Epochs):
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
        self.num_rows = sum(_rows(s) for s in self.shards)

    def __len__(self) -> int:
        return -(-self.num_rows // self.batch_size)

    def _columns(self, shard: Path) -> ColumnData:
        data = frame_to_columns(read_parquet(shard, PREPARE), self.feature_map)
        return self.transform(data) if self.transform else data

    def epoch_batches(self, epoch: int, skip: int = 0) -> Iterator[Batch]:
        """The batches of `epoch` from batch `skip` on (the skipped ones are read and dropped:
        the shuffle buffer's order depends on them)."""
        batches = self._epoch(_epoch_generator(self.seed, epoch))
        for _ in range(skip):
            next(batches, None)
        yield from batches

    def _epoch(self, generator: torch.Generator) -> Iterator[Batch]:
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
