"""Shared by the benchmarks: the synthetic benchmark dataset, the training settings and runs that
several scripts reuse, and `run_once` ("run unless its result exists"), which lets an
interrupted benchmark resume where it stopped.

Below the public API, where it has no equivalent: `data_subset` writes a prepared dataset over
part of another's rows (a verb trains on a whole train split, and a dataset prepared from those
rows alone would fit other vocabularies, which the full dataset's checkpoints and label stores
would not fit); `labels_of_test` reads the test labels (`Run.predict` returns scores only);
`member_logits` opens the per-member checkpoints a run directory holds;
the speed helpers drive a `Trainer` on one fixed batch, which no verb measures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

import ctrdistill as cd
from ctrdistill.data.batch import Batch
from ctrdistill.data.dataset import SPLITS, ColumnData, PreparedData
from ctrdistill.data.schema import FEATURE_MAP_FILE
from ctrdistill.rundir import RunDirectory
from ctrdistill.storage import atomic_directory, atomic_file
from ctrdistill.training.trainer import Trainer

# Two benchmark processes with one thread each use two cores better than two processes fighting
# over two OpenMP threads each (which slows both several times over).
if "BENCH_THREADS" in os.environ:
    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))

TEACHER_SEED = 2026  # teachers (and other runs made once, not per seed) train with this seed
# The batch each synthetic preset's experiments train at. The legacy tables were measured at
# 4096; the criteo preset is calibrated at 1024: at 4096 one epoch of 2M rows is 489 steps, too
# few for DCNv2 and FinalMLP to pass the DNN (BENCHMARKS.md §10.1).
PRESET_BATCH = {"legacy": 4096, "criteo": 1024}
STUDENT = {"name": "dnn", "embedding_dim": 16, "hidden_units": [400, 400, 400]}


def run_once(result: Path, make: Callable[..., object], *args: Any, **kwargs: Any) -> Path:
    """`result`, made by `make(*args, **kwargs)` unless it exists. Give a path that appears only
    once the work is complete: a run directory, a dataset, a file written atomically."""
    if not result.exists():
        make(*args, **kwargs)
    return result


def run_metrics(run: Path) -> dict[str, Any]:
    """A finished run's metrics.json, without loading its checkpoint as `cd.load_run` does."""
    return RunDirectory(run).metrics()


def train_config(seed: int = TEACHER_SEED, **extra: Any) -> cd.TrainConfig:
    """One epoch at batch 4096 (the legacy preset's), no early stopping or plateau, quiet;
    `extra` overrides."""
    base = {"epochs": 1, "batch_size": PRESET_BATCH["legacy"], "early_stop": None,
            "lr_plateau": None, "progress": False, "seed": seed}
    return cd.TrainConfig(**(base | extra))


def train_run(out: Path, prep: Path, model: dict[str, Any], seed: int = TEACHER_SEED,
              **train: Any) -> Path:
    """`model` trained alone on `prep` for one epoch as the run directory `out`; `train`
    overrides `train_config`."""
    return run_once(out, cd.train, cd.TrainRunConfig(
        name=out.name, data=prep, output_dir=out.parent, model=model,
        train=train_config(seed, **train)))


def teacher_run(root: Path, prep: Path, name: str, **train: Any) -> Path:
    """The teacher `name` (a zoo model), trained once under root/teachers."""
    return train_run(root / "teachers" / name, prep, {"name": name}, **train)


def student_alone_run(root: Path, prep: Path, seed: int, **train: Any) -> Path:
    """The distillation student trained on the labels alone: the baseline KD must beat."""
    return train_run(root / "students" / f"dnn-alone-s{seed}", prep, STUDENT, seed, **train)


def alone_run(root: Path, prep: Path, peer: str, seed: int) -> Path:
    """The peer `peer` trained one epoch alone: mutual learning's baseline and starting point."""
    return train_run(root / "mutual" / f"alone-{peer}-s{seed}", prep, {"name": peer}, seed)


def teacher_store(root: Path, prep: Path, runs: list[Path]) -> Path:
    """The teachers' logits on every split, scored once (later calls find it complete)."""
    store = root / "stores" / "+".join(run.name for run in runs)
    return cd.label(cd.LabelConfig(teachers=runs, data=prep, output=store, progress=False)).path


def synthetic_dataset(root: Path, rows: int, days: int = 1, drift: float = 0.0,
                      seed: int = 2026, split: dict | None = None, preset: str = "legacy",
                      **knobs: Any) -> Path:
    """Raw synthetic rows and their x4 preparation under `root` (reused when present). The
    `legacy` preset by default: the sections measured before the `criteo` preset existed."""
    raw, prep = root / "raw", root / "prep"
    run_once(raw, cd.synth, cd.SynthConfig(rows=rows, days=days, drift=drift, seed=seed,
                                           preset=preset, **knobs), output=raw)
    return run_once(prep, cd.prepare, cd.PrepareConfig(
        recipe="synthetic", input=raw, output=prep, protocol="x4",
        **({"split": split} if split else {})))


def _write_subset(source: Path, out: Path, train: pl.LazyFrame, valid: str) -> None:
    feature_map = PreparedData(source).feature_map
    frame = train.collect()
    with atomic_directory(out) as tmp:
        for entry in source.resolve().iterdir():  # vocabularies, schema: linked, not copied
            if entry.name not in (*SPLITS, FEATURE_MAP_FILE):
                (tmp / entry.name).symlink_to(entry)
        (tmp / "train").mkdir()
        frame.write_parquet(tmp / "train" / "part-00000.parquet")
        for split, origin in (("valid", valid), ("test", "test")):
            (tmp / split).symlink_to((source / origin).resolve())
        splits = {"train": len(frame), "valid": feature_map.splits[valid],
                  "test": feature_map.splits["test"]}
        feature_map.model_copy(update={"splits": splits}).save(tmp / FEATURE_MAP_FILE)


def data_subset(source: Path, out: Path, train: pl.LazyFrame, valid: str = "valid") -> Path:
    """A prepared dataset at `out` that trains on the rows of `train` (scanned from `source`,
    e.g. `PreparedData(source).scan("train").head(n)`) and validates on the split `valid` of
    `source`, with `source`'s test split and vocabularies (so its feature map's fingerprint)."""
    return run_once(out, _write_subset, source, out, train, valid)


def labels_of_test(prep: Path) -> np.ndarray:
    """The labels of the test split, in the row order of `Run.predict(prep, "test")`."""
    return PreparedData(prep).scan("test").select("label").collect()["label"].to_numpy()


def _members(run: Path) -> list[Path]:
    """The checkpoints a run saved for each peer (mutual) or sub-network (KDEF), in order; a
    plain run's one model otherwise."""
    members = [path for output, path in RunDirectory(run).checkpoints().items()
               if output.startswith(("peer", "sub"))]
    return members or [run]


def _save_member_logits(run: Path, prep: Path, cache: Path) -> None:
    logits = np.stack([cd.load_run(member).predict(prep, "test")["logit"].to_numpy()
                       for member in _members(run)], 1)
    with atomic_file(cache) as tmp, tmp.open("wb") as file:
        np.save(file, logits)


def member_logits(run: Path, prep: Path) -> np.ndarray:
    """Test logits of every member of a finished run (peers, sub-networks, or a plain run's one
    model), one column each. Cached beside the run: a finished run never changes, and FiBiNET
    scores about 1,400 rows/s on one core, so tables over many runs would otherwise spend
    minutes re-scoring."""
    cache = run / "bench-test-logits.npy"
    return np.load(run_once(cache, _save_member_logits, run, prep, cache))


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std over seeds (std 0 for one seed)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_std(values: list[float], digits: int) -> str:
    """'mean ± std' for a table cell."""
    mean, std = mean_and_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summarise(results: dict[str, list[dict]], keys=("auc", "logloss", "calibration")) -> str:
    """A markdown table of each variant's test metrics, mean ± std over its runs."""
    lines = ["| variant | seeds | " + " | ".join(f"test {k} (mean ± std)" for k in keys) + " |",
             "|---|---|" + "---|" * len(keys)]
    for variant, runs in results.items():
        cells = [mean_std([r[key] for r in runs], 5) for key in keys]
        lines.append(f"| {variant} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
    after `warmup` untimed steps (the first ones allocate). It times `Trainer.train_step`: no
    verb trains a fixed batch, and a whole run's figure includes loading and evaluation."""
    for _ in range(warmup):
        trainer.train_step(batch)
    started, steps = time.perf_counter(), 0
    while steps < min_steps or time.perf_counter() - started < min_seconds:
        trainer.train_step(batch)
        steps += 1
    return steps * len(batch) / (time.perf_counter() - started)
