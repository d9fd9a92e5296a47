"""MLflow tracking: a finished run is also an MLflow run with its params, per-evaluation
metrics and artifacts; every store lives in tmp_path."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import prepare_synthetic
from ctrdistill.config import validate_config
from ctrdistill.errors import CtrDistillError
from ctrdistill.pipelines.common import config_changes
from ctrdistill.pipelines.fit import DistillConfig, KDEFConfig, MutualConfig, TrainRunConfig, train

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepare_synthetic(tmp_path_factory.mktemp("tracking"), rows=3000, max_vocab=100, seed=4)


def _config(prepared: Path, out: Path, tracking) -> dict:
    return {"name": "lr", "data": str(prepared), "output_dir": str(out), "model": {"name": "lr"},
            "train": {"epochs": 2, "batch_size": 512, "progress": False, "threads": 1,
                      "early_stop": None, "lr_plateau": None}, "tracking": tracking}


def _run(uri: str, experiment: str):
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_a_run_is_logged_to_a_local_store_under_output_dir(prepared, tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    out = tmp_path / "runs"
    result = train(_config(prepared, out, {"kind": "mlflow"}))
    client, run = _run(f"sqlite:///{out / 'mlflow.db'}", "ctrdistill")
    assert run.info.run_name == "lr" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["method.model.name"] == "lr" and params["train.batch_size"] == "512"
    assert params["train.epochs"] == "2"
    history = json.loads((result.path / "history.json").read_text())
    auc = client.get_metric_history(run.info.run_id, "valid.auc")
    assert [(m.step, m.value) for m in auc] == [(r["step"], r["valid"]["auc"]) for r in history]
    assert len(client.get_metric_history(run.info.run_id, "train.loss")) == 2
    assert run.data.metrics["final.test.auc"] == result.metrics["test"]["auc"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"curves.png", "checkpoint.pt", "summary.md"} <= artifacts
    assert (out / "mlartifacts").is_dir()
    assert list((tmp_path / "cwd").iterdir()) == []  # nothing written where the user stands


def test_a_configured_uri_and_experiment(prepared, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root of a new experiment: ./mlruns
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    train(_config(prepared, tmp_path / "runs", {"uri": uri, "experiment": "exp"}))
    _, run = _run(uri, "exp")
    assert run.data.params["tracking.experiment"] == "exp"
    assert not (tmp_path / "runs" / "mlflow.db").exists()


def test_tracking_is_validated_strictly_on_every_training_verb():
    for config_class in (TrainRunConfig, DistillConfig, MutualConfig, KDEFConfig):
        assert config_class.model_fields["tracking"].default is None  # absent: off
    with pytest.raises(CtrDistillError, match="experimnt"):
        validate_config(TrainRunConfig, {"name": "x", "data": ".", "model": "lr",
                                         "tracking": {"experimnt": "e"}})
    with pytest.raises(CtrDistillError, match="kind"):
        validate_config(TrainRunConfig, {"name": "x", "data": ".", "model": "lr",
                                         "tracking": {"kind": "wandb"}})


def test_tracking_without_mlflow_installed_is_refused_at_once(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(CtrDistillError, match=r"pip install 'ctrdistill\[mlflow\]'"):
        validate_config(TrainRunConfig, {"name": "x", "data": ".", "model": "lr",
                                         "tracking": {"kind": "mlflow"}})


def test_adding_tracking_does_not_block_a_resume():
    """Tracking changes what is logged, not what is computed: a resumed run may add it."""
    off = {"name": "lr", "train": {"lr": 0.01}, "tracking": None}
    on = {**off, "tracking": {"kind": "mlflow", "uri": None, "experiment": "e"}}
    assert config_changes(off, on) == []
    assert config_changes(off, {**on, "train": {"lr": 0.1}}) == ["train.lr"]
