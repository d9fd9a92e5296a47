"""Inference throughput of a model on real batches (the cost figure of every results table)."""

from __future__ import annotations

import time

import torch
from torch import nn

from ctrdistill.data.dataset import ColumnData


@torch.no_grad()
def inference_samples_per_second(model: nn.Module, data: ColumnData, batch_size: int = 4096,
                                 max_rows: int = 100_000, repeats: int = 2) -> float:
    model.eval()
    rows = min(len(data), max_rows)
    batches = [data.take(slice(s, min(s + batch_size, rows))) for s in range(0, rows, batch_size)]
    model(batches[0])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for batch in batches:
            model(batch)
        best = min(best, time.perf_counter() - started)
    return rows / best
