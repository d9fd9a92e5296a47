"""Foundation: configs, synthetic data, loaders, metrics, trainer, runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score

from ctrdistill import evaluate, predict
from ctrdistill.config import validate_config
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.loader import BatchLoader, StreamingLoader
from ctrdistill.data.prepare import PrepareConfig, prepare
from ctrdistill.data.synthetic import (
    HiddenClickModel,
    SynthConfig,
    generate_chunks,
    write_synthetic,
)
from ctrdistill.errors import CtrDistillError
from ctrdistill.models.registry import build_model
from ctrdistill.pipelines.common import resolve
from ctrdistill.pipelines.fit import TrainRunConfig
from ctrdistill.pipelines.fit import train as run_train
from ctrdistill.rundir import RunDirectory
from ctrdistill.training.checkpoint import load_checkpoint, save_checkpoint
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.metrics import group_auc
from ctrdistill.training.trainer import Trainer

TINY = SynthConfig(rows=8000, max_vocab=400, chunk_rows=3000, seed=7)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("foundation")
    write_synthetic(TINY, root / "raw", show_progress=False)
    prepare(PrepareConfig(recipe="synthetic", input=root / "raw", output=root / "prep",
                          protocol="x4", shard_rows=2500), show_progress=False)
    return root / "prep"


def test_unknown_config_key_names_the_nearest() -> None:
    with pytest.raises(CtrDistillError, match=r"unknown key 'train.epoch'.*did you mean 'epochs'"):
        validate_config(TrainRunConfig, {"name": "x", "data": ".", "model": {"name": "dnn"},
                                    "train": {"epoch": 3}})
    with pytest.raises(CtrDistillError,
                       match=r"model: unknown key 'hiden_units'.*did you mean 'hidden_units'"):
        validate_config(TrainRunConfig, {"name": "x", "data": ".",
                                    "model": {"name": "dnn", "hiden_units": [3]}})
    with pytest.raises(CtrDistillError, match=r"unknown model 'dnnn'.*did you mean 'dnn'"):
        validate_config(TrainRunConfig, {"name": "x", "data": ".", "model": {"name": "dnnn"}})


@pytest.mark.parametrize(("data", "message"), [
    ({"schem": {}}, r"unknown key 'schem'; did you mean 'schema'\? \(valid: .*schema,"),
    ({"schema": {"lable": "y", "fields": [{"name": "a"}]}},
     r"unknown key 'schema.lable'; did you mean 'label'\? \(valid: day, fields,"),
    ({"schema": {"fields": [{"name": "a"}, {"name": "n", "tranform": "log1p"}]}},
     r"unknown key 'schema.fields.1.tranform'; did you mean 'transform'\?"),
    ({"split": {"kind": "day", "test_dayz": [1]}},
     r"unknown key 'split.test_dayz'; did you mean 'test_days'\?"),
])
def test_unknown_nested_key_names_the_nearest(data: dict, message: str) -> None:
    base = {"recipe": "csv", "input": "in.csv", "output": "out"}
    with pytest.raises(CtrDistillError, match=message):
        validate_config(PrepareConfig, base | data)


def test_synthetic_is_deterministic_and_criteo_like() -> None:
    first = pl.concat(list(generate_chunks(TINY)))
    second = pl.concat(list(generate_chunks(TINY)))
    assert first.equals(second)
    assert first.width == 1 + 13 + 26 + 2
    assert 0.15 < first["label"].mean() < 0.30
    # The stored probability is the one labels were drawn from: its AUC beats chance clearly.
    assert roc_auc_score(first["label"], first["p_true"]) > 0.7
    assert first["C1"].dtype == pl.String and first["C1"].null_count() > 0
    other = pl.concat(list(generate_chunks(TINY.model_copy(update={"seed": 8}))))
    assert not first["p_true"].equals(other["p_true"])


def test_drift_changes_the_hidden_model_across_days() -> None:
    """drift > 0 rotates the hidden click model from day to day; drift = 0 keeps one model. The
    same seed draws the same inputs either way, so p_true tells the two models apart."""
    still_config = TINY.model_copy(update={"days": 4})
    moving_config = still_config.model_copy(update={"drift": 0.4})
    still = pl.concat(list(generate_chunks(still_config)))
    moving = pl.concat(list(generate_chunks(moving_config)))
    assert moving["day"].unique().sort().to_list() == [0, 1, 2, 3]
    assert moving["day"].is_sorted()
    inputs = [c for c in still.columns if c not in ("label", "p_true")]
    assert moving.select(inputs).equals(still.select(inputs))  # same rows, only the model moves
    day = moving["day"].to_numpy()
    p_still, p_moving = still["p_true"].to_numpy(), moving["p_true"].to_numpy()
    np.testing.assert_array_equal(p_moving[day == 0], p_still[day == 0])  # no rotation yet
    for d in (1, 2, 3):
        assert np.abs(p_moving[day == d] - p_still[day == d]).mean() > 0.01, d

    # The hidden model itself, on one fixed set of inputs: constant without drift, and moving
    # further from day 0's with every day with it.
    def day_logits(config: SynthConfig) -> list[np.ndarray]:
        model = HiddenClickModel(config)
        ids, numerics = model._draw_inputs(np.random.default_rng(0), 2000)
        return [model.logit(ids, numerics, day=d) for d in range(4)]

    fixed = day_logits(still_config)
    for logits in fixed[1:]:
        np.testing.assert_array_equal(logits, fixed[0])
    rotating = day_logits(moving_config)
    np.testing.assert_array_equal(rotating[0], fixed[0])
    correlation = [np.corrcoef(rotating[0], logits)[0, 1] for logits in rotating[1:]]
    assert correlation[0] < 0.99 and correlation[0] > correlation[1] > correlation[2], correlation


def test_split_and_vocabulary(prepared: Path) -> None:
    data = PreparedData(prepared)
    fm = data.feature_map
    assert sum(fm.splits.values()) == TINY.rows
    assert abs(fm.splits["train"] / TINY.rows - 0.8) < 0.03
    assert len(fm.categorical) == 39 and not fm.numeric  # x4 bucketises numerics
    ids = pl.concat([data.scan(s).select("row_id").collect() for s in ("train", "valid", "test")])
    assert ids["row_id"].sort().to_list() == list(range(TINY.rows))
    assert len(data.shards("train")) >= 2


def test_in_memory_loader_is_deterministic_and_complete(prepared: Path) -> None:
    rows = PreparedData(prepared).load("train")
    def order(seed: int) -> torch.Tensor:
        return torch.cat([b.row_id for b in BatchLoader(rows, 512, seed=seed)])
    assert torch.equal(order(1), order(1))
    assert not torch.equal(order(1), order(2))
    assert torch.equal(order(1).sort().values, rows.row_id.sort().values)


def test_streaming_loader_covers_every_row_once(prepared: Path) -> None:
    data = PreparedData(prepared)
    loader = StreamingLoader(data.shards("train"), data.feature_map, 300, buffer_rows=1000, seed=3)
    ids = torch.cat([b.row_id for b in loader])
    assert len(ids) == data.feature_map.splits["train"] == len(ids.unique())
    again = torch.cat([b.row_id for b in StreamingLoader(
        data.shards("train"), data.feature_map, 300, buffer_rows=1000, seed=3)])
    assert torch.equal(ids, again)


def test_join_by_row_id_and_mismatch_refused(prepared: Path) -> None:
    rows = PreparedData(prepared).load("valid")
    extra = pl.DataFrame({"row_id": rows.row_id.numpy()[::-1].copy(),
                          "teacher": rows.row_id.numpy()[::-1].astype(np.float32) * 2})
    joined = rows.join(extra)
    assert torch.equal(joined.optional["teacher"], rows.row_id.float() * 2)
    with pytest.raises(CtrDistillError, match="row ids do not match"):
        rows.join(extra.head(10))


def test_group_auc_matches_per_group_sklearn() -> None:
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 20, 2000)
    labels = (rng.random(2000) < 0.3).astype(float)
    scores = labels * 0.3 + rng.random(2000)
    expected, weight = 0.0, 0
    for g in np.unique(groups):
        mask = groups == g
        if 0 < labels[mask].sum() < mask.sum():
            expected += roc_auc_score(labels[mask], scores[mask]) * mask.sum()
            weight += mask.sum()
    assert group_auc(labels, scores, groups) == pytest.approx(expected / weight)


def _train(prepared: Path, out: Path, **train) -> object:
    config = TrainRunConfig(name="dnn", data=prepared, output_dir=out,
                       model={"name": "dnn", "embedding_dim": 8, "hidden_units": [64, 32]},
                       train=TrainConfig(**({"epochs": 3, "batch_size": 256, "progress": False}
                                            | train)))
    return run_train(config)


def test_train_evaluate_predict_round_trip(prepared: Path, tmp_path: Path) -> None:
    result = _train(prepared, tmp_path, lr=3e-3)
    for name in ("config.yaml", "history.json", "metrics.json", "checkpoint.pt", "summary.md",
                 "curves.png"):
        assert (result.path / name).is_file(), name
    test = result.metrics["test"]
    # Well above chance, measured against what the hidden model allows on this very split.
    assert test["auc"] > 0.5 + 0.4 * (test["bayes_auc"] - 0.5)
    assert evaluate(run=result.path, data=prepared).metrics["auc"] == pytest.approx(
        test["auc"], abs=1e-6)
    scores = predict(run=result.path, data=prepared, output=tmp_path / "scores.parquet")
    frame = pl.read_parquet(tmp_path / "scores.parquet")
    assert scores.metrics["rows"] == len(frame) == PreparedData(prepared).feature_map.splits["test"]
    assert frame.columns == ["row_id", "logit", "probability"]


def test_early_stopping_restores_the_best_state(prepared: Path, tmp_path: Path) -> None:
    # A huge learning rate overfits quickly: early stopping must stop and keep the best step.
    result = _train(prepared, tmp_path, lr=0.05, eval_every_steps=5,
                    early_stop={"monitor": "logloss", "patience": 1})
    history = result.history
    assert result.metrics["stopped_early"]
    best = min(history, key=lambda r: r["valid"]["logloss"])
    assert result.metrics["best_step"] == best["step"]
    assert result.metrics["valid"]["logloss"] == pytest.approx(best["valid"]["logloss"], abs=1e-6)


def test_checkpoint_refuses_a_different_feature_map(prepared: Path, tmp_path: Path) -> None:
    result = _train(prepared, tmp_path, epochs=1)
    other = tmp_path / "other"
    write_synthetic(TINY.model_copy(update={"max_vocab": 200}), tmp_path / "raw2",
                    show_progress=False)
    prepare(PrepareConfig(recipe="synthetic", input=tmp_path / "raw2", output=other,
                          protocol="x4"), show_progress=False)
    with pytest.raises(CtrDistillError, match="does not match the checkpoint"):
        load_checkpoint(result.path, PreparedData(other).feature_map)


def test_checkpoint_refuses_a_refitted_vocabulary_of_the_same_size(tmp_path: Path) -> None:
    """Another split seed re-fits the vocabulary: same sizes, other value -> id map."""
    (tmp_path / "data.csv").write_text(
        "label,a\n" + "".join(f"{i % 2},{'pqr'[i % 3]}\n" for i in range(30)))
    maps = {seed: prepare(PrepareConfig.model_validate({
        "recipe": "csv", "input": tmp_path / "data.csv", "output": tmp_path / f"seed{seed}",
        "schema": {"fields": [{"name": "a"}]}, "split": {"seed": seed}}), show_progress=False)
        for seed in (0, 1)}

    def values(seed: int) -> list[str]:
        return pl.read_parquet(tmp_path / f"seed{seed}" / "vocab" / "a.parquet").sort("id")[
            "value"].to_list()

    assert maps[0].fields == maps[1].fields and values(0) != values(1)
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(RunDirectory(run).checkpoint(), build_model({"name": "lr"}, maps[0]),
                    maps[0])
    load_checkpoint(run, PreparedData(tmp_path / "seed0").feature_map)  # its own data: accepted
    with pytest.raises(CtrDistillError, match=r"does not match the checkpoint \(vocabulary 'a' "
                                              r"maps values to other ids") as error:
        evaluate(run=run, data=tmp_path / "seed1")
    assert "\n" not in str(error.value)


def test_failed_run_leaves_nothing_behind(prepared: Path, tmp_path: Path, monkeypatch) -> None:
    def fail(self, *batch):
        raise CtrDistillError("failed at the first step")

    monkeypatch.setattr(Trainer, "train_step", fail)
    config = TrainRunConfig(name="dnn", data=prepared, output_dir=tmp_path,
                            model={"name": "dnn", "embedding_dim": 8, "hidden_units": [64, 32]},
                            train=TrainConfig(epochs=1, batch_size=256, progress=False))
    with pytest.raises(CtrDistillError, match="failed at the first step"):
        run_train(config)
    assert not any(tmp_path.iterdir())


def test_a_misspelled_monitor_fails_when_the_config_is_read(prepared: Path, tmp_path: Path
                                                            ) -> None:
    """Before any work: not after the first epoch's evaluation."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"name": "dnn", "data": str(prepared), "output_dir":
                                      str(tmp_path / "runs"), "model": {"name": "dnn"},
                                      "train": {"early_stop": {"monitor": "acu"}}}))
    with pytest.raises(CtrDistillError, match="unknown quantity 'acu'; did you mean 'auc'"):
        resolve(TrainRunConfig, config)
    with pytest.raises(CtrDistillError, match=r"unknown quantity 'peer0\.auc'"):
        resolve(TrainRunConfig, config, train={"early_stop": {"monitor": "peer0.auc"}})
    assert not (tmp_path / "runs").exists()
