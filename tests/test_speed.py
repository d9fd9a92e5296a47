"""Cost figures are timed over enough calls, and one table's models side by side."""

from __future__ import annotations

import time

import torch
from tests.conftest import make_batch, make_feature_map
from torch import nn

from ctrdistill.data.dataset import ColumnData
from ctrdistill.training.speed import batch1_latency_ms, inference_samples_per_second, side_by_side


def rows(n: int = 64) -> ColumnData:
    feature_map = make_feature_map(with_sequence=False)
    batch = make_batch(feature_map, n)
    return ColumnData(feature_map, batch.cat, batch.num, torch.zeros(n, 0, 1, dtype=torch.long),
                      batch.label, batch.row_id)


class Recorder(nn.Module):
    """Scores zeros and notes each call's name in a shared log."""

    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__()
        self.name, self.log = name, log
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, batch) -> torch.Tensor:
        self.log.append(self.name)
        return self.weight.expand(len(batch.label))


def test_each_figure_is_timed_over_at_least_min_time() -> None:
    model, data = Recorder("m", []), rows()
    for measure in (inference_samples_per_second, batch1_latency_ms):
        started = time.perf_counter()
        value = measure(model, data, min_time=0.2)
        assert time.perf_counter() - started >= 0.2 and value > 0
    assert len(model.log) > 100  # many calls, not one pass


def test_side_by_side_alternates_the_models_round_by_round() -> None:
    log: list[str] = []
    models = {"teacher": Recorder("teacher", log), "student": Recorder("student", log)}
    figures = side_by_side(models, rows(), rounds=3, min_time=0.01)
    assert set(figures) == {"teacher", "student"}
    assert all(set(f) == {"inference_samples_per_second", "latency_ms"}
               for f in figures.values())
    turns = [name for k, name in enumerate(log) if k == 0 or log[k - 1] != name]
    assert turns == ["teacher", "student"] * 3
