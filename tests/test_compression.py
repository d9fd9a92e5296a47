"""Issue 21: the `criteo` synthetic preset (exact bound, legacy kept), named student sizes, the
CrossFM learnability reference, and the serving-cost figures every run reports."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import prepare_synthetic
from ctrdistill.cli import main
from ctrdistill.data.synthetic import HiddenClickModel, SynthConfig, generate_chunks
from ctrdistill.errors import CtrDistillError
from ctrdistill.models.registry import build_model, model_config
from ctrdistill.pipelines.fit import DistillConfig, distill

SMALL = {"rows": 4000, "max_vocab": 300, "chunk_rows": 1500, "seed": 3}


def test_legacy_preset_reproduces_the_earlier_generator() -> None:
    """The digest was taken from the generator as it was before the presets (commit 74e66f8)."""
    config = SynthConfig(preset="legacy", **SMALL | {"rows": 3000, "chunk_rows": 1000})
    rows = pl.concat(list(generate_chunks(config)))
    digest = hashlib.sha256(rows.drop("p_true").write_csv().encode()).hexdigest()
    assert digest == "b896df73adcc457de2b96b7e153fd754b60108af18f7fc2558db83eb748b0b96"
    assert rows["p_true"].sum() == pytest.approx(689.419207498046, rel=1e-12)


def _visible_inputs(rows: pl.DataFrame, model: HiddenClickModel) -> tuple[np.ndarray, np.ndarray]:
    """The inputs as a model sees them: a missing id is the id `vocab` (legacy has none: 0), a
    missing numeric NaN."""
    exact = model.config.exact_bound
    ids = np.stack([rows[f"C{j + 1}"].cast(pl.Int64).fill_null(v if exact else 0).to_numpy()
                    for j, v in enumerate(model.vocab_sizes)], 1)
    numerics = np.stack([rows[f"I{j + 1}"].cast(pl.Float64).to_numpy()
                         for j in range(model.config.numeric_fields)], 1)
    return ids, numerics


@pytest.mark.parametrize("preset", ["criteo", "legacy"])
def test_criteo_preset_probability_is_a_function_of_the_visible_features(preset: str) -> None:
    config = SynthConfig(preset=preset, **SMALL)
    rows = pl.concat(list(generate_chunks(config)))
    model = HiddenClickModel(config)
    ids, numerics = _visible_inputs(rows, model)
    recomputed = 1 / (1 + np.exp(-model.logit(ids, numerics, day=0)))
    masked = rows.select(pl.any_horizontal(pl.all().is_null())).to_series().to_numpy()
    assert masked.mean() > 0.5  # with 39 fields at 5%, most rows have a missing value
    if preset == "criteo":
        np.testing.assert_allclose(recomputed, rows["p_true"].to_numpy(), rtol=1e-12)
    else:  # legacy: p_true came from values that were masked afterwards
        differs = ~np.isclose(recomputed, rows["p_true"].to_numpy(), rtol=1e-9)
        assert differs[masked].mean() > 0.9 and not differs[~masked].any()


def test_preset_sets_defaults_and_explicit_knobs_win(tmp_path: Path) -> None:
    criteo, legacy = SynthConfig(), SynthConfig(preset="legacy")
    assert criteo.preset == "criteo" and criteo.exact_bound and not legacy.exact_bound
    assert (legacy.max_vocab, legacy.first_scale) == (1_000_000, 0.29)
    mixed = SynthConfig(preset="legacy", max_vocab=500, exact_bound=True)
    assert mixed.max_vocab == 500 and mixed.exact_bound and mixed.first_scale == 0.29
    # synth.json records every knob, so the rows can be made again from it alone
    assert SynthConfig.model_validate_json(mixed.model_dump_json()) == mixed
    with pytest.raises(ValueError, match="preset"):
        SynthConfig(preset="criteo2")
    with pytest.raises(ValueError, match="min_vocab"):
        SynthConfig(min_vocab=50, max_vocab=20)
    assert main(["synth", "--rows", "100", "--set", "categorical_fields=2", "--output",
                 str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_sizes_set_widths_and_explicit_keys_win() -> None:
    tiny = model_config({"name": "dnn", "size": "tiny"})
    assert (tiny.embedding_dim, tiny.hidden_units) == (4, [64])
    assert model_config({"name": "dnn", "size": "small", "hidden_units": [32]}).hidden_units == [32]
    final = model_config({"name": "finalmlp", "size": "small"})
    assert final.mlp1_hidden_units == final.mlp2_hidden_units == [128, 64]
    assert 64 % final.num_heads == 0 and final.fs_hidden_units == [128]
    assert model_config({"name": "fm", "size": "medium"}).embedding_dim == 16
    with pytest.raises(CtrDistillError, match="lr has no size"):
        model_config({"name": "lr", "size": "tiny"})
    with pytest.raises(CtrDistillError, match="size"):
        model_config({"name": "dnn", "size": "huge"})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepare_synthetic(tmp_path_factory.mktemp("sizes"), rows=6000, max_vocab=400,
                             chunk_rows=6000)


def test_sizes_grow_in_parameters_for_every_zoo_model(prepared: Path) -> None:
    from ctrdistill.data.dataset import PreparedData
    from ctrdistill.models.registry import model_names

    feature_map = PreparedData(prepared).feature_map
    for name in (n for n in model_names() if n != "lr"):
        params = [build_model({"name": name, "size": s}, feature_map).num_parameters()
                  for s in ("tiny", "small", "medium", "base")]
        assert params[0] < params[1] < params[2] <= params[3], (name, params)


def test_student_smaller_than_its_teacher_reports_its_cost(prepared: Path,
                                                           tmp_path: Path) -> None:
    train = {"epochs": 1, "batch_size": 512, "lr": 0.01, "progress": False, "threads": 1,
             "early_stop": None, "lr_plateau": None}
    result = distill(DistillConfig(
        name="kd", data=prepared, output_dir=tmp_path, student={"name": "dnn", "size": "tiny"},
        teachers=[{"model": {"name": "dnn", "size": "small"}, "name": "small"},
                  {"model": {"name": "fm"}, "name": "fm"}], train=train))
    rows = {r["model"]: r for r in result.rows}
    student, teachers = rows["student kd"], [rows["teacher small"], rows["teacher fm"]]
    ensemble = rows["teacher ensemble"]
    for row in [student, *teachers, ensemble]:
        assert row["model_bytes"] > 0 and row["latency_ms"] > 0
        assert row["inference_samples_per_second"] > 0
    # fp32 parameters, and small index buffers (field offsets)
    assert 4 * student["params"] < student["model_bytes"] < 4 * student["params"] + 1024
    assert ensemble["model_bytes"] >= sum(t["model_bytes"] for t in teachers)
    assert ensemble["latency_ms"] == pytest.approx(sum(t["latency_ms"] for t in teachers))
    assert student["params"] < min(t["params"] for t in teachers)
    metrics = json.loads((tmp_path / "kd" / "metrics.json").read_text())
    assert metrics["model_bytes"] == student["model_bytes"] and metrics["latency_ms"] > 0


def test_crossfm_fits_the_hidden_form(prepared: Path, tmp_path: Path) -> None:
    from ctrdistill.data.dataset import PreparedData
    from ctrdistill.pipelines.fit import TrainRunConfig, train

    feature_map = PreparedData(prepared).feature_map
    with pytest.raises(CtrDistillError, match="C99"):
        build_model({"name": "crossfm", "crosses": [["C1", "C2", "C99"]]}, feature_map)
    config = {"name": "crossfm", "crosses": [["C1", "C2", "C3"], ["C2", "C4", "C5"]]}
    model = build_model(config, feature_map)
    assert model.hidden_dim == model.linear.output_dim + 4 + 2
    run = train(TrainRunConfig(name="ref", data=prepared, output_dir=tmp_path, model=config,
                               train={"epochs": 2, "batch_size": 256, "lr": 0.01,
                                      "progress": False, "threads": 1}))
    test = run.metrics["test"]
    assert test["auc"] > 0.5 + 0.3 * (test["bayes_auc"] - 0.5)


def test_dense_init_chooses_xavier_or_pytorch_default(prepared: Path) -> None:
    import torch

    from ctrdistill.data.dataset import PreparedData

    feature_map = PreparedData(prepared).feature_map
    biases = {}
    for init in ("xavier_normal", "torch_default"):
        torch.manual_seed(0)
        model = build_model({"name": "dnn", "size": "tiny", "dense_init": init}, feature_map)
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        biases[init] = first.bias.detach()
    assert torch.count_nonzero(biases["xavier_normal"]) == 0
    assert torch.count_nonzero(biases["torch_default"]) == len(biases["torch_default"])
