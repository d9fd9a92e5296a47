"""A finished run opened from its directory: its config, metrics and served model, ready to
evaluate or score prepared data."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from ctrdistill.data.batch import Batch
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.encode import PrepareState
from ctrdistill.data.schema import FeatureMap
from ctrdistill.errors import CtrDistillError
from ctrdistill.files import RETRAIN
from ctrdistill.models.base import CTRModel
from ctrdistill.rundir import RunDirectory
from ctrdistill.training.checkpoint import load_checkpoint
from ctrdistill.training.device import resolve_device
from ctrdistill.training.inference import score
from ctrdistill.training.metrics import sigmoid
from ctrdistill.training.trainer import evaluate_outputs


def blocks_batch(cat: torch.Tensor, num: torch.Tensor, seq: torch.Tensor | None) -> Batch:
    """A batch of input blocks alone (label and row id are placeholders): what scoring raw
    rows and an exported model feed the model."""
    rows = cat.shape[0]
    zeros = torch.zeros(rows, dtype=torch.float32, device=cat.device)
    return Batch(cat=cat, num=num, label=zeros, row_id=zeros.long(), seq=seq)


def empty_blocks(rows: int, num_cat: int, num_num: int) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.zeros(rows, num_cat, dtype=torch.long),
            torch.zeros(rows, num_num, dtype=torch.float32))


@dataclass
class Run:
    """A finished run (or any directory holding a servable checkpoint, e.g. the last student of
    a follow or stream, `students/NAME/`)."""

    path: Path
    model: CTRModel
    feature_map: FeatureMap

    @property
    def directory(self) -> RunDirectory:
        return RunDirectory(self.path)

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config the run was trained with ({} for a bare checkpoint)."""
        return self.directory.config()

    @property
    def metrics(self) -> dict[str, Any]:
        """Per-split metrics, parameters, speeds ({} for a bare checkpoint)."""
        return self.directory.metrics()

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


    @property
    def prepare_state(self) -> PrepareState:
        """The fitted preprocessing copied into the run (`prepare/`): encodes new raw logs."""
        return PrepareState.load(self.path, RETRAIN)

    @torch.no_grad()
    def score_blocks(self, blocks: dict[str, np.ndarray]) -> np.ndarray:
        """Logits of encoded input blocks (`PrepareState` encoder's `blocks`)."""
        rows = len(next(iter(blocks.values())))
        cat, num = empty_blocks(rows, len(self.feature_map.categorical),
                                len(self.feature_map.numeric))
        device = next(self.model.parameters()).device
        cat = torch.from_numpy(blocks["categorical"]) if "categorical" in blocks else cat
        num = torch.from_numpy(blocks["numeric"]) if "numeric" in blocks else num
        seq = torch.from_numpy(blocks["sequence"]).to(device) if "sequence" in blocks else None
        self.model.eval()
        return self.model(blocks_batch(cat.to(device), num.to(device), seq)).float().cpu().numpy()

    def score_raw(self, path: str | Path, key: str | None = None, chunk_rows: int = 100_000
                  ) -> Iterator[pl.DataFrame]:
        """Scores of new raw logs in the run's recipe format, chunk by chunk: the key column
        (the raw column `key`, else `row_id`, the 0-based row number), logit, probability."""
        state = self.prepare_state
        if state.feature_map.fingerprint() != self.feature_map.fingerprint():
            raise CtrDistillError(f"{self.path}: the saved preprocessing does not match the "
                                  f"checkpoint ({state.feature_map.difference(self.feature_map)})")
        for encoded, keys in state.read(Path(path), chunk_rows, key):
            logits = self.score_blocks(state.encoder.blocks(encoded))
            yield pl.DataFrame([keys, pl.Series("logit", logits, dtype=pl.Float32),
                                pl.Series("probability", sigmoid(logits), dtype=pl.Float32)])


def load_run(path: str | Path, device: str = "auto") -> Run:
    """Open a run directory (its served checkpoint) or a checkpoint file, with the model on
    `device` (auto: a GPU when there is one); a checkpoint loads on any device."""
    path = Path(path)
    model, feature_map = load_checkpoint(RunDirectory(path).checkpoint() if path.is_dir()
                                         else path)
    return Run(path if path.is_dir() else path.parent, model.to(resolve_device(device)),
               feature_map)
