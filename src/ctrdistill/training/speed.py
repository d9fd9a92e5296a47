"""Inference throughput of a model on real batches (the cost figure of every results table)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.utils.benchmark as benchmark
from torch import nn

from ctrdistill.data.dataset import ColumnData
from ctrdistill.training.inference import model_device

MIN_TIME_S = 0.2  # each figure: blocks of calls until this much time, as torch.utils.benchmark


def _seconds_per_call(call: Callable[[], object], min_time: float) -> float:
    """Median seconds of one `call` over blocks of repeated calls lasting `min_time` in all
    (torch.utils.benchmark's blocked_autorange: warm-up, CUDA synchronised, one thread)."""
    timer = benchmark.Timer(stmt="call()", globals={"call": call},
                            num_threads=torch.get_num_threads())
    return float(timer.blocked_autorange(min_run_time=min_time).median)


@torch.no_grad()
def inference_samples_per_second(model: nn.Module, data: ColumnData, batch_size: int = 4096,
                                 max_rows: int = 100_000, min_time: float = MIN_TIME_S) -> float:
    """Rows scored per second by `model` on its device, batches already there: one pass over
    up to `max_rows` rows, timed over at least `min_time` seconds of passes (the median)."""
    model.eval()
    device = model_device(model)
    rows = min(len(data), max_rows)
    batches = [data.take(slice(s, min(s + batch_size, rows))).to(device)
               for s in range(0, rows, batch_size)]

    def one_pass() -> None:
        for batch in batches:
            model(batch)

    return rows / _seconds_per_call(one_pass, min_time)


@torch.no_grad()
def batch1_latency_ms(model: nn.Module, data: ColumnData, requests: int = 200,
                      min_time: float = MIN_TIME_S) -> float:
    """Milliseconds to score one row alone (a request of one row, as a server sees it): the
    median over blocks of the mean over `requests` different rows."""
    model.eval()
    device = model_device(model)
    rows = [data.take(slice(i, i + 1)).to(device) for i in range(min(requests, len(data)))]

    def every_row() -> None:
        for row in rows:
            model(row)

    return 1000 * _seconds_per_call(every_row, min_time) / len(rows)


def side_by_side(models: Mapping[str, nn.Module], data: ColumnData, rounds: int = 3,
                 min_time: float = MIN_TIME_S) -> dict[str, dict[str, float]]:
    """Cost figures of the models of one results table, timed in alternation at the end: each
    round times every model once, and a figure is the median of its rounds, so load that comes
    and goes (other processes, clocks) falls on all of them alike and a speed-up compares like
    with like. {name: {inference_samples_per_second, latency_ms}}."""
    taken: dict[str, dict[str, list[float]]] = {
        name: {"inference_samples_per_second": [], "latency_ms": []} for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            taken[name]["inference_samples_per_second"].append(
                inference_samples_per_second(model, data, min_time=min_time))
            taken[name]["latency_ms"].append(batch1_latency_ms(model, data, min_time=min_time))
    return {name: {key: float(np.median(values)) for key, values in figures.items()}
            for name, figures in taken.items()}


def model_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers: what serving it holds in memory."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)
