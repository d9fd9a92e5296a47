"""Shared fixtures: a tiny hand-made feature map with labelled batches that carry real signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from ctrdistill.data.batch import Batch
from ctrdistill.data.dataset import SPLITS
from ctrdistill.data.prepare import PrepareConfig, prepare
from ctrdistill.data.schema import EncodedField, FeatureMap
from ctrdistill.data.synthetic import SynthConfig, write_synthetic


def make_feature_map(with_sequence: bool = True) -> FeatureMap:
    fields = [
        EncodedField(name="c0", kind="categorical", vocab_size=12, vocab="c0"),
        EncodedField(name="c1", kind="categorical", vocab_size=30, vocab="c1"),
        EncodedField(name="c2", kind="categorical", vocab_size=7, vocab="c2"),
        EncodedField(name="c3", kind="categorical", vocab_size=30, vocab="c1"),  # shares c1's
        EncodedField(name="n0", kind="numeric"),
        EncodedField(name="n1", kind="numeric"),
    ]
    if with_sequence:
        fields.append(EncodedField(name="s0", kind="sequence", vocab_size=9, vocab="s0",
                                   max_length=4))
    return FeatureMap(fields=fields)


def make_batch(feature_map: FeatureMap, n: int, seed: int = 0) -> Batch:
    """Random ids and values with labels drawn from a hidden logistic model (learnable signal)."""
    rng = np.random.default_rng(seed)
    hidden = np.random.default_rng(1234)  # the same click model for every seed
    cats = [rng.integers(1, f.vocab_size, n) for f in feature_map.categorical]
    nums = rng.normal(size=(n, len(feature_map.numeric))).astype(np.float32)
    logit = -0.5 + nums.sum(1) * 0.5 if nums.size else np.full(n, -0.5)
    for f, ids in zip(feature_map.categorical, cats, strict=True):
        logit = logit + hidden.normal(0, 1.5, f.vocab_size)[ids]
    if len(cats) >= 2:
        logit = logit + 1.5 * np.where((cats[0] % 2) == (cats[1] % 2), 1.0, -1.0)
    batch = Batch(
        cat=torch.from_numpy(np.stack(cats, 1).astype(np.int64)),
        num=torch.from_numpy(nums),
        label=torch.from_numpy((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)),
        row_id=torch.arange(n, dtype=torch.int64) + seed * n,
    )
    if feature_map.sequence:
        seq = rng.integers(0, feature_map.sequence[0].vocab_size,
                           (n, len(feature_map.sequence), feature_map.sequence[0].max_length))
        batch.seq = torch.from_numpy(seq.astype(np.int64))
    return batch


def labels_batch(labels: torch.Tensor, **optional: torch.Tensor) -> Batch:
    """A batch of labels (and e.g. teacher_logits) only, for strategies on stub models."""
    n = len(labels)
    return Batch(cat=torch.zeros(n, 0, dtype=torch.long), num=torch.zeros(n, 0), label=labels,
                 row_id=torch.arange(n), **optional)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny batches gain nothing from threads, and oversubscribed cores make them crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def feature_map() -> FeatureMap:
    return make_feature_map()


@pytest.fixture
def batch(feature_map: FeatureMap) -> Batch:
    return make_batch(feature_map, 64)


def prepare_synthetic(root: Path, **synth) -> Path:
    """Synthetic raw rows (`synth`: SynthConfig keys) prepared with the Criteo-x4 protocol."""
    write_synthetic(SynthConfig(**synth), root / "raw", show_progress=False)
    prepare(PrepareConfig(recipe="synthetic", input=root / "raw", output=root / "prep",
                          protocol="x4"), show_progress=False)
    return root / "prep"


def prepare_recipe(tmp_path: Path, recipe: str, input: Path, name: str = "out", **extra):
    """(feature map, output directory) of `input` prepared with `recipe`."""
    config = PrepareConfig.model_validate(
        {"recipe": recipe, "input": input, "output": tmp_path / name, **extra})
    return prepare(config, show_progress=False), tmp_path / name


def read_split(out: Path, split: str) -> pl.DataFrame:
    files = sorted((out / split).glob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


def all_rows(out: Path) -> pl.DataFrame:
    """Every prepared row with its split, in row-id order."""
    parts = [read_split(out, s).with_columns(pl.lit(s).alias("split")) for s in SPLITS
             if (out / s).is_dir()]
    return pl.concat(parts, how="diagonal").sort("row_id")


def cli_prepared(root: Path, rows: int, max_vocab: int) -> Path:
    """Synthetic rows synthesised and prepared (x4) through the CLI, as a user would."""
    from ctrdistill.cli import main

    assert main(["synth", "--output", str(root / "raw"), "--rows", str(rows),
                 "--set", f"max_vocab={max_vocab}"]) == 0
    assert main(["prepare", "--recipe", "synthetic", "--input", str(root / "raw"),
                 "--output", str(root / "prep"), "--protocol", "x4"]) == 0
    return root / "prep"


def cli_trained_lr(root: Path, prepared: Path) -> Path:
    """An LR run of one epoch on `prepared`, trained through the CLI; its run directory."""
    import yaml

    from ctrdistill.cli import main

    config = {"name": "lr", "data": str(prepared), "output_dir": str(root / "runs"),
              "model": {"name": "lr"}, "train": {"epochs": 1, "batch_size": 512,
                                                 "progress": False}}
    (root / "train.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(root / "train.yaml")]) == 0
    return root / "runs" / "lr"
