"""`evaluate` and `predict`: a trained run applied to a prepared dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from ctrdistill.data.dataset import ColumnData, PreparedData
from ctrdistill.storage import atomic_file
from ctrdistill.training.checkpoint import load_checkpoint
from ctrdistill.training.memory import new_working_set
from ctrdistill.training.metrics import sigmoid
from ctrdistill.training.trainer import evaluate_outputs


@torch.no_grad()
@new_working_set()
def score(model: torch.nn.Module, rows: ColumnData, batch_size: int = 16384) -> np.ndarray:
    """The logits of `model` on every row, computed batch by batch."""
    return np.concatenate([model(rows.take(slice(s, s + batch_size))).numpy()
                           for s in range(0, len(rows), batch_size)])


def _logits(run: Path, data: PreparedData, split: str):
    model, _ = load_checkpoint(run, data.feature_map)
    rows = data.load(split)
    return rows, score(model, rows)


def evaluate(run: Path, data_path: Path, split: str = "test") -> dict[str, float]:
    rows, logits = _logits(run, PreparedData(data_path), split)
    return evaluate_outputs(rows, {"served": logits})


def predict(run: Path, data_path: Path, output: Path, split: str = "test") -> int:
    """Scores keyed by row id, written atomically to Parquet. Returns the row count."""
    rows, logits = _logits(run, PreparedData(data_path), split)
    frame = pl.DataFrame({"row_id": rows.row_id.numpy(), "logit": logits.astype(np.float32),
                          "probability": sigmoid(logits).astype(np.float32)})
    with atomic_file(output) as tmp:
        frame.write_parquet(tmp)
    return len(frame)
