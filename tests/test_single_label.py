"""Data of one label value: training on it is refused, a report split of it is warned about."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from conftest import prepare_synthetic
from ctrdistill.cli import main


def _one_label(prepared: Path, split: str) -> None:
    for shard in (prepared / split).glob("*.parquet"):
        frame = pl.read_parquet(shard)
        frame.with_columns(pl.lit(0, dtype=frame["label"].dtype).alias("label")).write_parquet(
            shard)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepare_synthetic(tmp_path_factory.mktemp("single"), rows=3000, max_vocab=100, seed=3)


def _config(tmp_path: Path, data: Path) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({
        "name": "lr", "data": str(data), "output_dir": str(tmp_path / "runs"),
        "model": {"name": "lr"},
        "train": {"epochs": 1, "batch_size": 512, "progress": False, "threads": 1}}))
    return path


def test_training_rows_of_one_label_are_refused(prepared, tmp_path, capsys):
    data = tmp_path / "prep"
    shutil.copytree(prepared, data)
    _one_label(data, "train")
    assert main(["train", str(_config(tmp_path, data))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ctrdistill train: error: run lr: every training row has label 0; a CTR "
                   "model needs both clicks (1) and non-clicks (0) to learn from"]
    assert not (tmp_path / "runs" / "lr").exists()


def test_a_report_split_of_one_label_is_warned_about(prepared, tmp_path, caplog):
    data = tmp_path / "prep"
    shutil.copytree(prepared, data)
    _one_label(data, "test")
    with caplog.at_level(logging.WARNING, logger="ctrdistill.pipelines.loaders"):
        assert main(["train", str(_config(tmp_path, data))]) == 0
    assert "every test row has label 0, so its AUC is undefined" in caplog.text
    assert "every valid row" not in caplog.text
