"""A prepared dataset's days as the partitions of a follow run (what `stream` follows): each day
is one partition, every split's rows of the day together (so a random split and a split by day
give the same partitions), ordered by row id. The rows are already encoded with the dataset's
own vocabularies, which therefore can neither grow nor hash ids they lack.
"""

from __future__ import annotations

import polars as pl

from ctrdistill.continuous.source import Partition
from ctrdistill.continuous.vocabulary import Counts
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.encode import PrepareState
from ctrdistill.data.schema import FEATURE_MAP_FILE
from ctrdistill.errors import CtrDistillError


def day_partition(day: int) -> str:
    """The partition name of a day."""
    return f"day={day}"


class DaySource:
    """Days of `data` (default: all of them, in order) as complete partitions."""

    def __init__(self, data: PreparedData, days: list[int] | None = None) -> None:
        if not data.feature_map.has_day:
            raise CtrDistillError(f"{data.path} has no day column, so no days to follow: "
                                  "prepare data whose schema has a `day` (e.g. synth --days)")
        held = data.days()
        days = held if days is None else days
        missing = sorted(set(days) - set(held))
        if missing:
            raise CtrDistillError(f"{data.path} has no rows on day(s) "
                                  f"{', '.join(map(str, missing))} (its days: {held})")
        if days != sorted(set(days)):
            raise CtrDistillError(f"days must be listed in increasing order, each once, not "
                                  f"{days}")
        self.data = data
        self.days = days
        self.location = str(data.path)
        self.modified = (data.path / FEATURE_MAP_FILE).stat().st_mtime

    def complete(self) -> list[Partition]:
        return [Partition(day_partition(day), (), self.modified) for day in self.days]

    def waiting(self) -> list[Partition]:
        return []

    def rows(self, partition: Partition, state: PrepareState, count_unseen: bool = False
             ) -> tuple[pl.DataFrame, Counts | None]:
        if count_unseen or state.feature_map.oov_buckets:
            raise CtrDistillError("a prepared dataset's days are encoded with its own "
                                  "vocabularies: they cannot grow or hash (vocabulary.oov: "
                                  "single)")
        day = next(d for d in self.days if day_partition(d) == partition.name)
        splits = [split for split, rows in self.data.feature_map.splits.items() if rows]
        frame = pl.concat([self.data.scan(split, [day]) for split in splits]).sort("row_id")
        return frame.collect(), None
