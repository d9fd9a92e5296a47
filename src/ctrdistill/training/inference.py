"""The one batched inference loop: outputs of a function over every row of a split, batch by
batch, without gradients (evaluation, scoring, teacher labelling)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ctrdistill.data.batch import Batch
from ctrdistill.data.dataset import ColumnData
from ctrdistill.training.memory import new_working_set

Outputs = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]


@torch.no_grad()
@new_working_set()
def collect(fn: Callable[[Batch], Outputs], rows: ColumnData, batch_size: int = 16384
            ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """`fn(batch)` returns (per-row tensors, batch means); the per-row ones are concatenated in
    row order, the means averaged over rows (weighted by batch size)."""
    per_row: dict[str, list[np.ndarray]] = {}
    sums: dict[str, float] = {}
    for start in range(0, len(rows), batch_size):
        batch = rows.take(slice(start, start + batch_size))
        values, means = fn(batch)
        for name, tensor in values.items():
            per_row.setdefault(name, []).append(tensor.float().cpu().numpy())
        for name, mean in means.items():
            sums[name] = sums.get(name, 0.0) + float(mean) * len(batch)
    return ({k: np.concatenate(v) for k, v in per_row.items()},
            {k: v / max(len(rows), 1) for k, v in sums.items()})


def score(model: torch.nn.Module, rows: ColumnData, batch_size: int = 16384) -> np.ndarray:
    """The logits of `model` (in eval mode) on every row."""
    model.eval()
    return collect(lambda batch: ({"logit": model(batch)}, {}), rows, batch_size)[0]["logit"]
