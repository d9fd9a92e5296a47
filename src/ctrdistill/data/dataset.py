"""Prepared datasets as column tensors: a split is loaded once, batches are slices of columns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import torch

from ctrdistill.data.batch import DAY, GROUP, Batch
from ctrdistill.data.schema import FEATURE_MAP_FILE, SPLITS, FeatureMap
from ctrdistill.errors import CtrDistillError, unknown_name
from ctrdistill.files import PREPARE, read_parquet, reading


@dataclass
class ColumnData:
    """The rows of one split as tensors; `optional` holds passthrough and joined per-row columns
    (group, day, p_true, teacher outputs)."""

    feature_map: FeatureMap
    cat: torch.Tensor
    num: torch.Tensor
    seq: torch.Tensor
    label: torch.Tensor
    row_id: torch.Tensor
    optional: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.label)

    def take(self, index: torch.Tensor | slice) -> Batch:
        """Rows by slice (views) or by an index tensor (index_select: much faster than [])."""
        pick = (lambda t: t[index]) if isinstance(index, slice) else (
            lambda t: gather(t, index))
        return Batch.of(pick(self.cat), pick(self.num), pick(self.label), pick(self.row_id),
                        pick(self.seq) if self.seq.shape[1] else None,
                        {name: pick(values) for name, values in self.optional.items()})

    def _map(self, fn) -> ColumnData:
        return replace(self, cat=fn(self.cat), num=fn(self.num), seq=fn(self.seq),
                       label=fn(self.label), row_id=fn(self.row_id),
                       optional={k: fn(v) for k, v in self.optional.items()})

    def to(self, device: torch.device | str) -> ColumnData:
        """The same rows in `device` memory (batches are then slices there, with no copy)."""
        return self._map(lambda t: t.to(device))

    def pin_memory(self) -> ColumnData:
        """The same rows in page-locked host memory (copies to a GPU can overlap compute)."""
        return self._map(lambda t: t.pin_memory())

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in (self.cat, self.num, self.seq, self.label, self.row_id,
                                      *self.optional.values()))

    def subset(self, mask: torch.Tensor) -> ColumnData:
        return self._map(lambda t: t[mask])

    def join(self, frame: pl.DataFrame, columns: list[str] | None = None) -> ColumnData:
        """Attach per-row columns of `frame` (keyed by `row_id`); every row must be present."""
        if "row_id" not in frame.columns:
            raise CtrDistillError("cannot join: the frame has no row_id column")
        columns = columns or [c for c in frame.columns if c != "row_id"]
        # a sorted lookup in NumPy, with no copy of the data's columns into a Polars frame
        keys = self.row_id.numpy()
        found = frame["row_id"].to_numpy()
        if np.array_equal(found, keys):
            take = np.arange(len(keys))
            matched = np.ones(len(keys), dtype=bool)
        elif len(found):
            order = np.argsort(found, kind="stable")
            take = order[np.searchsorted(found, keys, sorter=order).clip(max=len(found) - 1)]
            matched = found[take] == keys
        else:
            take, matched = np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
        if columns and frame[columns[0]].null_count():
            matched &= frame[columns[0]].is_not_null().to_numpy()[take]
        missing = int((~matched).sum()) if columns else 0
        if missing:
            raise CtrDistillError(f"cannot join: {missing} of {len(self)} rows have no "
                                  f"{columns[0]} (row ids do not match this data)")
        optional = dict(self.optional)
        for name in columns:
            values = _column_array(frame[name])[take]
            optional[name] = torch.from_numpy(np.ascontiguousarray(values))
        return replace(self, optional=optional)

    @staticmethod
    def concat(parts: list[ColumnData]) -> ColumnData:
        first = parts[0]
        keys = first.optional.keys()
        return replace(
            first,
            cat=torch.cat([p.cat for p in parts]), num=torch.cat([p.num for p in parts]),
            seq=torch.cat([p.seq for p in parts]), label=torch.cat([p.label for p in parts]),
            row_id=torch.cat([p.row_id for p in parts]),
            optional={k: torch.cat([p.optional[k] for p in parts]) for k in keys})


def gather(column: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`column`'s rows at `index`; page-locked when `column` is: `index_select` alone returns
    pageable memory, from which a "non-blocking" copy to the GPU waits."""
    if not column.is_pinned():
        return column.index_select(0, index)
    out = torch.empty((len(index), *column.shape[1:]), dtype=column.dtype, pin_memory=True)
    return torch.index_select(column, 0, index, out=out)


def _column_array(series: pl.Series) -> np.ndarray:
    if isinstance(series.dtype, pl.List | pl.Array):
        # the flat values reshaped: converting row by row (np.stack, or to_numpy of an Array
        # column of many chunks) took 30 s and 15 GiB for 36M rows of one logit
        return series.explode().to_numpy().astype(np.float32).reshape(len(series), -1)
    array = series.to_numpy()
    return array.astype(np.float32) if array.dtype == np.float64 else array.copy()


def frame_to_columns(frame: pl.DataFrame, feature_map: FeatureMap) -> ColumnData:
    n = len(frame)

    def matrix(names: list[str], dtype) -> np.ndarray:
        if not names:
            return np.zeros((n, 0), dtype=dtype)
        # Row-major straight away: polars' default (column-major) would need a second copy.
        return frame.select(names).to_numpy(order="c").astype(dtype, copy=False)

    cat = matrix([f.name for f in feature_map.categorical], np.int32)
    num = matrix([f.name for f in feature_map.numeric], np.float32)
    seq_fields = feature_map.sequence
    if seq_fields:
        seq = np.stack([np.stack(frame[f.name].to_numpy()) for f in seq_fields], 1)
    else:
        seq = np.zeros((n, 0, 0), dtype=np.int32)
    optional = {}
    if feature_map.has_group and GROUP in frame.columns:
        optional[GROUP] = torch.from_numpy(frame[GROUP].to_numpy().copy())
    if feature_map.has_day and DAY in frame.columns:
        optional[DAY] = torch.from_numpy(frame[DAY].to_numpy().copy())
    for name in feature_map.passthrough:
        optional[name] = torch.from_numpy(frame[name].to_numpy().astype(np.float64))
    return ColumnData(
        feature_map=feature_map,
        cat=torch.from_numpy(np.ascontiguousarray(cat)),
        num=torch.from_numpy(np.ascontiguousarray(num)),
        seq=torch.from_numpy(seq.astype(np.int32)),
        label=torch.from_numpy(frame["label"].to_numpy().astype(np.float32, copy=True)),
        row_id=torch.from_numpy(frame["row_id"].to_numpy().astype(np.int64, copy=True)),
        optional=optional,
    )


def row_ids_digest(row_ids: np.ndarray) -> str:
    """Identity of a sequence of rows, in order."""
    return hashlib.sha256(np.ascontiguousarray(row_ids, dtype=np.int64).tobytes()).hexdigest()[:16]


class PreparedData:
    """A directory written by `prepare`: feature map, vocabularies and Parquet shards per split."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise CtrDistillError(f"prepared data not found: {self.path}")
        self.feature_map = FeatureMap.load(self.path / FEATURE_MAP_FILE)

    def shards(self, split: str) -> list[Path]:
        if split not in SPLITS:
            raise unknown_name("split", split, SPLITS)
        files = sorted((self.path / split).glob("*.parquet"))
        if not files:
            raise CtrDistillError(f"{self.path}: split '{split}' has no rows")
        for file in files:  # the footer: a shard cut short is named here, not deep in a scan
            with reading(file, PREPARE):
                pq.read_metadata(file)
        return files

    def scan(self, split: str, days: list[int] | None = None) -> pl.LazyFrame:
        frame = pl.scan_parquet(self.shards(split))
        if days is not None:
            if not self.feature_map.has_day:
                raise CtrDistillError(f"{self.path}: has no day column to select days from")
            frame = frame.filter(pl.col("day").is_in(days))
        return frame

    def load(self, split: str, days: list[int] | None = None) -> ColumnData:
        with reading(self.path / split, PREPARE):
            frame = self.scan(split, days).collect()
        if not len(frame):
            raise CtrDistillError(f"{self.path}: no rows in split '{split}' for days {days}")
        return frame_to_columns(frame, self.feature_map)

    def fingerprint(self, splits: tuple[str, ...] = SPLITS) -> str:
        """Feature map plus every shard's row ids of `splits`: changes whenever those rows do."""
        digest = hashlib.sha256(self.feature_map.fingerprint().encode())
        for split in sorted(splits):
            if not self.feature_map.splits.get(split):
                continue
            for shard in self.shards(split):
                ids = read_parquet(shard, PREPARE, columns=["row_id"])["row_id"].to_numpy()
                digest.update(f"{split}/{shard.name}:{row_ids_digest(ids)}".encode())
        return digest.hexdigest()[:16]

    def days(self) -> list[int]:
        if not self.feature_map.has_day:
            return []
        frames = [pl.scan_parquet(self.shards(s)).select("day").unique()
                  for s in self.feature_map.splits if self.feature_map.splits[s]]
        with reading(self.path, PREPARE):
            return sorted(pl.concat(frames).unique().collect()["day"].to_list())
