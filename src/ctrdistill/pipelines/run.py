"""A finished run opened from its directory: its config, metrics and served model, ready to
evaluate or score prepared data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.schema import FeatureMap
from ctrdistill.errors import CtrDistillError
from ctrdistill.models.base import CTRModel
from ctrdistill.pipelines.writer import CONFIG_FILE
from ctrdistill.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
from ctrdistill.training.device import resolve_device
from ctrdistill.training.inference import score
from ctrdistill.training.metrics import sigmoid
from ctrdistill.training.trainer import evaluate_outputs


@dataclass
class Run:
    """A run directory (or any directory holding a checkpoint.pt, e.g. a stream's daily
    models)."""

    path: Path
    model: CTRModel
    feature_map: FeatureMap

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config the run was trained with ({} for a bare checkpoint)."""
        file = self.path / CONFIG_FILE
        return yaml.safe_load(file.read_text()) if file.is_file() else {}

    @property
    def metrics(self) -> dict[str, Any]:
        """metrics.json: per-split metrics, parameters, speeds ({} for a bare checkpoint)."""
        file = self.path / "metrics.json"
        return json.loads(file.read_text()) if file.is_file() else {}

    def _rows(self, data: PreparedData | str | Path, split: str):
        prepared = data if isinstance(data, PreparedData) else PreparedData(data)
        if prepared.feature_map.fingerprint() != self.feature_map.fingerprint():
            raise CtrDistillError(
                f"{self.path}: the prepared dataset's feature map does not match the checkpoint "
                f"({prepared.feature_map.difference(self.feature_map)}); use the data the model "
                "was trained on, or retrain")
        return prepared.load(split)

    def predict(self, data: PreparedData | str | Path, split: str = "test") -> pl.DataFrame:
        """Scores of every row of `split`: row_id, logit, probability."""
        rows = self._rows(data, split)
        logits = score(self.model, rows)
        return pl.DataFrame({"row_id": rows.row_id.numpy(), "logit": logits.astype(np.float32),
                             "probability": sigmoid(logits).astype(np.float32)})

    def evaluate(self, data: PreparedData | str | Path, split: str = "test") -> dict[str, float]:
        """AUC, logloss, calibration (and gAUC, gaps to the Bayes-optimal model when the data
        has groups or the true click probability)."""
        rows = self._rows(data, split)
        return evaluate_outputs(rows, {"served": score(self.model, rows)})


def load_run(path: str | Path, device: str = "auto") -> Run:
    """Open a run directory (its served checkpoint) or a checkpoint file, with the model on
    `device` (auto: a GPU when there is one); a checkpoint loads on any device."""
    path = Path(path)
    model, feature_map = load_checkpoint(path)
    return Run(path if path.is_dir() else path.parent, model.to(resolve_device(device)),
               feature_map)


__all__ = ["CHECKPOINT_FILE", "Run", "load_run"]
