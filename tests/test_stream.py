"""Continual distillation: the day schedule, stored labels per day, resume after a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from ctrdistill.cli import main
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.prepare import PrepareConfig, prepare
from ctrdistill.data.synthetic import SynthConfig, write_synthetic
from ctrdistill.errors import CtrDistillError
from ctrdistill.labels.store import LabelStore
from ctrdistill.pipelines.stream import StreamConfig, _Stream, stream
from ctrdistill.training.checkpoint import load_checkpoint
from ctrdistill.training.trainer import evaluate_outputs

TRAIN = {"epochs": 1, "batch_size": 512, "early_stop": None, "lr_plateau": None,
         "progress": False, "lr": 0.005, "threads": 1}


@pytest.fixture(scope="module")
def days_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stream")
    write_synthetic(SynthConfig(rows=10000, days=5, drift=0.3, max_vocab=300, chunk_rows=2000,
                                seed=5), root / "raw", show_progress=False)
    prepare(PrepareConfig(recipe="synthetic", input=root / "raw", output=root / "prep",
                          protocol="x4"), show_progress=False)
    return root / "prep"


def _config(data: Path, out: Path, **extra) -> StreamConfig:
    return StreamConfig(name="s", data=data, output_dir=out,
                        teacher={"name": "dnn", "embedding_dim": 4, "hidden_units": [16]},
                        student={"name": "dnn", "embedding_dim": 4, "hidden_units": [8]},
                        train=TRAIN, **extra)


def test_schedule_labels_each_day_once_with_a_new_teacher_version(days_data, tmp_path):
    result = stream(_config(days_data, tmp_path))
    history = result.history
    # warm-up on day 0; then (train t, label t+1, student t+1, evaluate t+2) for t = 0, 1, 2
    assert [(r["trained_through"], r["student_day"], r["eval_day"]) for r in history] == [
        (0, 1, 2), (1, 2, 3), (2, 3, 4)]
    store = LabelStore(tmp_path / "s" / "labels")
    assert sorted({p["day"] for p in store.manifest["partitions"].values()}) == [1, 2, 3]
    assert len(store.teacher_versions) == 3  # the teacher changed every day
    for record in history:
        assert {"auc", "logloss", "calibration"} <= set(record["student"])
    for name in ("daily.json", "daily.md", "daily.png", "state.pt"):
        assert (tmp_path / "s" / name).is_file()


def test_stale_teacher_is_one_version(days_data, tmp_path):
    stream(_config(days_data, tmp_path, teacher_updates="stale"))
    store = LabelStore(tmp_path / "s" / "labels")
    assert len(store.teacher_versions) == 1


def test_resume_after_interruption_repeats_the_uninterrupted_run(days_data, tmp_path,
                                                                 monkeypatch):
    full = stream(_config(days_data, tmp_path / "full")).history
    calls = {"n": 0}
    original = _Stream.train_student

    def crash_on_second_day(self, day, store):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, day, store)

    monkeypatch.setattr(_Stream, "train_student", crash_on_second_day)
    with pytest.raises(KeyboardInterrupt):
        stream(_config(days_data, tmp_path / "cut"))
    monkeypatch.setattr(_Stream, "train_student", original)
    resumed = stream(_config(days_data, tmp_path / "cut")).history
    assert [r["eval_day"] for r in resumed] == [2, 3, 4]
    for a, b in zip(full, resumed, strict=True):
        assert a["student"]["auc"] == pytest.approx(b["student"]["auc"], abs=1e-9)
        assert a["teacher"]["auc"] == pytest.approx(b["teacher"]["auc"], abs=1e-9)


def test_resume_with_another_config_is_refused(days_data, tmp_path, monkeypatch):
    def crash(self, day, store):
        raise KeyboardInterrupt

    original = _Stream.train_student
    monkeypatch.setattr(_Stream, "train_student", crash)
    with pytest.raises(KeyboardInterrupt):
        stream(_config(days_data, tmp_path))
    monkeypatch.setattr(_Stream, "train_student", original)
    saved = (tmp_path / "s" / "config.json").read_text()
    changed = _config(days_data, tmp_path, distill={"lambda": 0.5},
                      teacher_updates="stale")
    with pytest.raises(CtrDistillError, match=r"another config \(differs in: distill.lambda_, "
                       r"teacher_updates\)"):
        stream(changed)
    assert (tmp_path / "s" / "config.json").read_text() == saved  # the old config is kept
    # A display-only change (progress bars) resumes.
    train = {**TRAIN, "progress": True}
    resumed = StreamConfig(**{**_config(days_data, tmp_path).model_dump(), "train": train})
    assert len(stream(resumed).history) == 3


def test_every_days_student_is_a_servable_checkpoint(days_data, tmp_path):
    result = stream(_config(days_data, tmp_path, distill={"kind": "aux"}))
    data = PreparedData(days_data)
    for record in result.history:
        run = tmp_path / "s" / record["student_checkpoint"]
        assert run == tmp_path / "s" / "students" / f"day-{record['student_day']:03d}"
        model, _ = load_checkpoint(run, data.feature_map)
        rows = data.load("test", [record["eval_day"]])
        with torch.no_grad():
            logits = model(rows.take(slice(None))).numpy()
        # the checkpoint is that day's served student (the main head, not the aux head)
        metrics = evaluate_outputs(rows, {"served": logits})
        assert metrics["auc"] == pytest.approx(record["student"]["auc"], abs=1e-9)
        assert (tmp_path / "s" / record["teacher_checkpoint"] / "checkpoint.pt").is_file()
    assert main(["evaluate", str(tmp_path / "s" / "students" / "day-003"), "--data",
                 str(days_data)]) == 0


def test_stream_cli_and_too_few_days(days_data, tmp_path):
    config = _config(days_data, tmp_path, distill={"kind": "aux"}).model_dump(mode="json",
                                                                             by_alias=True)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["stream", str(path)]) == 0
    history = json.loads((tmp_path / "s" / "daily.json").read_text())
    # an aux student is evaluated on both heads each day: the served main head and the aux one
    for day in history:
        student = day["student"]
        assert 0 <= student["aux.auc"] <= 1 and student["aux.auc"] != student["auc"]
    assert main(["stream", str(path), "--set", "warmup_days=4", "--set", "name=t"]) == 2


def test_a_partial_train_block_keeps_the_streams_own_defaults():
    """`train: {lr: 0.01}` overrides lr only: one pass a day and no early stopping stay, instead
    of falling back to the generic training defaults (10 epochs, early stopping on valid)."""
    config = StreamConfig.model_validate({"name": "s", "data": ".", "teacher": "dnn",
                                          "train": {"lr": 0.01}})
    assert config.train.lr == 0.01
    assert config.train.epochs == 1 and config.train.early_stop is None
    assert config.train.lr_plateau is None
    generic = StreamConfig.model_validate({"name": "s", "data": ".", "teacher": "dnn"})
    assert generic.train == config.train.model_copy(update={"lr": generic.train.lr})
