"""The training rows of a run: in memory (placed for the device) or streamed, checked before
any training."""

from __future__ import annotations

import logging

import polars as pl
import torch

from ctrdistill.data.dataset import ColumnData, PreparedData
from ctrdistill.data.loader import BatchLoader, Loader, StreamingLoader
from ctrdistill.errors import CtrDistillError
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.device import fits_on_device, resolve_device

logger = logging.getLogger(__name__)


def place(rows: ColumnData, device: torch.device) -> ColumnData:
    """Training rows where batches are cut fastest: in GPU memory when they fit (batches are
    then index slices there, no copy per step), else page-locked for asynchronous copies."""
    if device.type != "cuda":
        return rows
    if fits_on_device(rows.nbytes, device):
        logger.info("training rows placed on %s (%.2f GB)", device, rows.nbytes / 1e9)
        return rows.to(device)
    return rows.pin_memory()


def train_loader(data: PreparedData, config: TrainConfig) -> Loader:
    """In-memory batches of the train split (placed for the device), or streaming over its
    shards."""
    if config.streaming:
        return StreamingLoader(data.shards("train"), data.feature_map, config.batch_size,
                               config.buffer_rows, config.seed)
    return BatchLoader(place(data.load("train"), resolve_device(config.device)),
                       config.batch_size, shuffle=True, seed=config.seed)


def _label_values(rows: ColumnData | Loader) -> list[float]:
    """The distinct labels of in-memory rows, of a loader's rows, or of a streamed loader's
    shards (read as one column)."""
    if isinstance(rows, BatchLoader):
        rows = rows.data
    if isinstance(rows, ColumnData):
        return torch.unique(rows.label).tolist()
    if isinstance(rows, StreamingLoader):
        return pl.scan_parquet(rows.shards).select("label").unique().collect()["label"].to_list()
    return []  # a loader of another kind: nothing to check up front


def check_labels(name: str, loader: Loader, reports: dict[str, ColumnData]) -> None:
    """Refuse training rows of one label value (nothing to learn, every AUC undefined); warn
    about a reported split of one label value (its AUC is undefined)."""
    values = _label_values(loader)
    if len(values) == 1:
        raise CtrDistillError(f"run {name}: every training row has label {values[0]:g}; a CTR "
                              "model needs both clicks (1) and non-clicks (0) to learn from")
    for split, rows in reports.items():
        values = _label_values(rows)
        if len(values) == 1:
            logger.warning("run %s: every %s row has label %g, so its AUC is undefined (nan)",
                           name, split, values[0])
