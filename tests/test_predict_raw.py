"""`predict --input`: new raw logs scored with the run's own preprocessing, streamed in chunks;
unseen ids are OOV, unlabeled logs score, and a run without its preprocessing says why."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

import ctrdistill as cd
from ctrdistill.data.schema import FeatureMap
from ctrdistill.errors import CtrDistillError
from ctrdistill.models import build_model
from test_export import make_dataset, save_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("predict_raw")
    raw, prep = make_dataset(root)
    feature_map = FeatureMap.load(prep / "feature_map.json")
    torch.manual_seed(0)
    model = build_model({"name": "deepfm", "embedding_dim": 4}, feature_map)
    return save_run(root / "run", model, feature_map, prep), raw


def test_chunks_and_unlabeled_logs_score_as_the_whole(run, tmp_path: Path) -> None:
    directory, raw = run
    whole = cd.predict(run=directory, input=raw, output=tmp_path / "a.parquet", progress=False)
    assert whole.metrics["rows"] == 3000
    logs = pl.read_csv(raw, infer_schema=False)
    unlabeled = tmp_path / "new.csv"
    logs.drop("label").head(500).with_columns(pl.lit("never-seen").alias("C4")).write_csv(
        unlabeled)
    cd.predict(run=directory, input=unlabeled, output=tmp_path / "b.parquet", chunk_rows=64,
               progress=False)
    scores = pl.read_parquet(tmp_path / "b.parquet")
    assert scores["row_id"].to_list() == list(range(500))
    # a value never seen in training is OOV: the same score as any other unseen value
    again = tmp_path / "again.csv"
    logs.drop("label").head(500).with_columns(pl.lit("also-new").alias("C4")).write_csv(again)
    cd.predict(run=directory, input=again, output=tmp_path / "c.parquet", progress=False)
    np.testing.assert_array_equal(scores["logit"], pl.read_parquet(tmp_path / "c.parquet")
                                  ["logit"])


def test_mistakes_are_one_line(run, tmp_path: Path) -> None:
    directory, raw = run
    with pytest.raises(CtrDistillError, match="either data"):
        cd.predict(run=directory, output=tmp_path / "x.parquet")
    with pytest.raises(CtrDistillError, match="missing column"):
        bad = tmp_path / "bad.csv"
        pl.read_csv(raw, infer_schema=False).drop("C2").write_csv(bad)
        cd.predict(run=directory, input=bad, output=tmp_path / "x.parquet", progress=False)
    bare = tmp_path / "bare"
    shutil.copytree(directory, bare)
    shutil.rmtree(bare / "prepare")
    with pytest.raises(CtrDistillError, match="prepare the data again"):
        cd.predict(run=bare, input=raw, output=tmp_path / "x.parquet", progress=False)
    assert not (tmp_path / "x.parquet").exists()
