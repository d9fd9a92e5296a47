"""Inference throughput of a model on real batches (the cost figure of every results table)."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ctrdistill.data.dataset import ColumnData
from ctrdistill.training.device import synchronize
from ctrdistill.training.inference import model_device


@torch.no_grad()
def inference_samples_per_second(model: nn.Module, data: ColumnData, batch_size: int = 4096,
                                 max_rows: int = 100_000, repeats: int = 2) -> float:
    """Rows scored per second by `model` on its device, batches already there (the best of
    `repeats` passes over up to `max_rows` rows)."""
    model.eval()
    device = model_device(model)
    rows = min(len(data), max_rows)
    batches = [data.take(slice(s, min(s + batch_size, rows))).to(device)
               for s in range(0, rows, batch_size)]
    model(batches[0])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        for batch in batches:
            model(batch)
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return rows / best


@torch.no_grad()
def batch1_latency_ms(model: nn.Module, data: ColumnData, requests: int = 200) -> float:
    """Median milliseconds to score one row (one request of one row, as a server sees it), over
    `requests` different rows."""
    model.eval()
    device = model_device(model)
    rows = [data.take(slice(i, i + 1)).to(device) for i in range(min(requests, len(data)))]
    model(rows[0])  # warm-up
    times = []
    for row in rows:
        synchronize(device)
        started = time.perf_counter()
        model(row)
        synchronize(device)
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def model_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers: what serving it holds in memory."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)
