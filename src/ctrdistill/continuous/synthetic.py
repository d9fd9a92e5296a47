"""The synthetic generator as a live source: partitions of raw rows written into a landing
zone one after another, as a log shipper would (data files first, then the `_SUCCESS`
marker), drifting per partition, with ids that first appear late.

Partition p holds rows of generator day p (the hidden model rotates by `drift` per partition)
under `dt=YYYY-MM-DD/hour=HH/` counted in hours from 2026-01-01, so names sort in time order.
With `new_ids_rate` y, a fraction y of each field's ids is born late, evenly over partitions
1 .. N-1: before its birth such an id is missing in the rows (and in the hidden model, so the
click probabilities stay exact for what a model sees).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from ctrdistill.data.prepare import uniform_hash
from ctrdistill.data.synthetic import HiddenClickModel, SynthConfig, _frame
from ctrdistill.storage import atomic_file

START = datetime(2026, 1, 1)
MARKER = "_SUCCESS"


def partition_name(index: int) -> str:
    moment = START + timedelta(hours=index)
    return f"dt={moment:%Y-%m-%d}/hour={moment:%H}"


def _birth(ids: np.ndarray, field: int, rate: float, partitions: int, seed: int) -> np.ndarray:
    """The partition at which each id of a field first appears (0: from the start)."""
    u = uniform_hash(ids + np.int64(field) * (1 << 40), seed)
    late = u < rate
    return np.where(late, 1 + np.floor(u / max(rate, 1e-12) * max(partitions - 1, 1)), 0)


def partition_rows(model: HiddenClickModel, index: int, rows: int, partitions: int,
                   new_ids_rate: float) -> pl.DataFrame:
    """Raw rows of partition `index` (as `_exact_chunk`, with unborn ids missing)."""
    config = model.config
    rng = np.random.default_rng([config.seed, 3, index])
    ids, numerics = model._mask(rng, *model._draw_inputs(rng, rows))
    missing = np.asarray(model.vocab_sizes)
    if new_ids_rate > 0:
        for j in range(ids.shape[1]):
            unborn = _birth(ids[:, j], j, new_ids_rate, partitions, config.seed) > index
            ids[:, j] = np.where(unborn, missing[j], ids[:, j])
    p_true = 1 / (1 + np.exp(-model.logit(ids, numerics, index)))
    label = rng.random(rows) < p_true
    return _frame(label, numerics, np.isnan(numerics), ids, ids == missing, index, p_true)


def write_landing(config: SynthConfig, landing: Path, partitions: int, rows_per_partition: int,
                  new_ids_rate: float = 0.0, interval_seconds: float = 0.0, first: int = 0,
                  on_partition: Callable[[str], None] | None = None) -> list[str]:
    """Write partitions `first` .. `first + partitions - 1` into `landing`; returns their names.
    A partition's data file appears whole (renamed into place), then its marker."""
    model = HiddenClickModel(config)
    total = first + partitions
    names = []
    for index in range(first, total):
        if index > first and interval_seconds:
            time.sleep(interval_seconds)
        name = partition_name(index)
        folder = Path(landing) / name
        with atomic_file(folder / "part-0.parquet") as tmp:
            partition_rows(model, index, rows_per_partition, total, new_ids_rate
                           ).write_parquet(tmp)
        (folder / MARKER).touch()
        names.append(name)
        if on_partition:
            on_partition(name)
    return names
