"""Shared by the benchmarks: the synthetic benchmark dataset, made once and reused."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from ctrdistill.data.dataset import Batch, ColumnData
from ctrdistill.data.prepare import PrepareConfig, prepare
from ctrdistill.data.synthetic import SynthConfig, write_synthetic
from ctrdistill.training.trainer import Trainer

# Two benchmark processes with one thread each use two cores better than two processes fighting
# over two OpenMP threads each (which slows both several times over).
if "BENCH_THREADS" in os.environ:
    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std over seeds (std 0 for one seed)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_std(values: list[float], digits: int) -> str:
    """'mean ± std' for a table cell."""
    mean, std = mean_and_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def synthetic_dataset(root: Path, rows: int, days: int = 1, drift: float = 0.0,
                      seed: int = 2026, split: dict | None = None) -> Path:
    """Raw synthetic rows and their x4 preparation under `root` (reused when present)."""
    raw, prep = root / "raw", root / "prep"
    if not raw.exists():
        write_synthetic(SynthConfig(rows=rows, days=days, drift=drift, seed=seed), raw)
    if not prep.exists():
        prepare(PrepareConfig(recipe="synthetic", input=raw, output=prep, protocol="x4",
                              **({"split": split} if split else {})))
    return prep


def add_seed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=1,
                        help="run seeds first-seed..seeds only (split one experiment over two "
                        "processes; a later full run reuses the finished runs)")


def seed_range(args: argparse.Namespace) -> list[int]:
    return list(range(args.first_seed, args.seeds + 1))


def speed_batch(rows: ColumnData, size: int = 4096) -> Batch:
    """The same `size` random rows on every call: the batch speed figures train on."""
    return rows.take(torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:size])


def train_samples_per_second(trainer: Trainer, batch: Batch, warmup: int, min_steps: int,
                             min_seconds: float = 0.0) -> float:
    """Training throughput on one batch over at least `min_steps` steps and `min_seconds`,
    after `warmup` untimed steps (the first ones allocate)."""
    for _ in range(warmup):
        trainer.train_step(batch)
    started, steps = time.perf_counter(), 0
    while steps < min_steps or time.perf_counter() - started < min_seconds:
        trainer.train_step(batch)
        steps += 1
    return steps * len(batch["label"]) / (time.perf_counter() - started)
