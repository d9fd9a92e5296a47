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
def collect(fn: Callable[[Batch], Outputs], rows: ColumnData, batch_size: int = 16384,
            device: torch.device | str = "cpu") -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """`fn(batch)` returns (per-row tensors, batch means) for a batch on `device`; the per-row
    ones are concatenated in row order, the means averaged over rows (weighted by batch size).
    Outputs stay on the device until the end: one copy to the host, not one per batch."""
    per_row: dict[str, list[torch.Tensor]] = {}
    sums: dict[str, torch.Tensor] = {}
    for start in range(0, len(rows), batch_size):
        batch = rows.take(slice(start, start + batch_size)).to(device, non_blocking=True)
        values, means = fn(batch)
        for name, tensor in values.items():
            per_row.setdefault(name, []).append(tensor.float())
        for name, mean in means.items():
            sums[name] = sums.get(name, 0.0) + mean.float() * len(batch)
    return ({k: torch.cat(v).cpu().numpy() for k, v in per_row.items()},
            {k: float(v) / max(len(rows), 1) for k, v in sums.items()})


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def score(model: torch.nn.Module, rows: ColumnData, batch_size: int = 16384) -> np.ndarray:
    """The logits of `model` (in eval mode, on its device) on every row."""
    model.eval()
    return collect(lambda batch: ({"logit": model(batch)}, {}), rows, batch_size,
                   model_device(model))[0]["logit"]
