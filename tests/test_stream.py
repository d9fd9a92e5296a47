"""Continual distillation: the day schedule, stored labels per day, resume after a crash."""

from __future__ import annotations

import json
import logging
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


def _prepared(root: Path, split: dict | None = None, **synth) -> Path:
    """Five days of drifting synthetic rows, split at random (x4) or by day (`split`)."""
    write_synthetic(SynthConfig(days=5, drift=0.3, **synth), root / "raw", show_progress=False)
    how = {"split": split} if split else {"protocol": "x4"}
    prepare(PrepareConfig(recipe="synthetic", input=root / "raw", output=root / "prep", **how),
            show_progress=False)
    return root / "prep"


@pytest.fixture(scope="module")
def days_data(tmp_path_factory) -> Path:
    return _prepared(tmp_path_factory.mktemp("stream"), rows=10000, max_vocab=300,
                     chunk_rows=2000, seed=5)


def _config(data: Path, out: Path, **extra) -> StreamConfig:
    return StreamConfig(name="s", data=data, output_dir=out,
                        teacher={"name": "dnn", "embedding_dim": 4, "hidden_units": [16]},
                        student={"name": "dnn", "embedding_dim": 4, "hidden_units": [8]},
                        **{"train": TRAIN, **extra})


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


def _interrupt_at_student_day(config: StreamConfig, monkeypatch, n: int) -> None:
    """Run `config`, interrupted as its n-th student day starts (n - 1 days are saved)."""
    calls = {"n": 0}
    original = _Stream.train_student

    def crash(self, day, store):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return original(self, day, store)

    with monkeypatch.context() as patch:
        patch.setattr(_Stream, "train_student", crash)
        with pytest.raises(KeyboardInterrupt):
            stream(config)


def test_resume_after_interruption_repeats_the_uninterrupted_run(days_data, tmp_path,
                                                                 monkeypatch):
    full = stream(_config(days_data, tmp_path / "full")).history
    _interrupt_at_student_day(_config(days_data, tmp_path / "cut"), monkeypatch, 2)
    resumed = stream(_config(days_data, tmp_path / "cut")).history
    assert [r["eval_day"] for r in resumed] == [2, 3, 4]
    for a, b in zip(full, resumed, strict=True):
        assert a["student"]["auc"] == pytest.approx(b["student"]["auc"], abs=1e-9)
        assert a["teacher"]["auc"] == pytest.approx(b["teacher"]["auc"], abs=1e-9)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_resume_repeats_the_uninterrupted_run_in_mixed_precision(days_data, tmp_path,
                                                                  monkeypatch, precision):
    """The stream saves the trainers' whole learner state: with fp16 that includes the gradient
    scaler's scale and growth tracker, which a resumed stream must continue from."""
    train = {**TRAIN, "precision": precision}
    full = stream(_config(days_data, tmp_path / "full", train=train))
    if precision == "fp16":
        saved = torch.load(tmp_path / "full" / "s" / "state.pt", weights_only=True)
        assert saved["student"]["scaler"]["scale"] > 0
    cut = _config(days_data, tmp_path / "cut", train=train)
    _interrupt_at_student_day(cut, monkeypatch, 3)
    resumed = stream(cut)
    for a, b in zip(full.history, resumed.history, strict=True):
        assert a["student"]["auc"] == b["student"]["auc"]
        assert a["teacher"]["auc"] == b["teacher"]["auc"]
    for model in ("students/day-003", "teachers/day-002"):
        ours = load_checkpoint(tmp_path / "cut" / "s" / model)[0].state_dict()
        theirs = load_checkpoint(tmp_path / "full" / "s" / model)[0].state_dict()
        for key, value in theirs.items():
            assert torch.equal(ours[key], value), key


def test_the_old_distill_key_names_its_new_spelling(days_data, tmp_path):
    with pytest.raises(CtrDistillError, match=r"`distill:` is now `strategy:`"):
        stream({**_config(days_data, tmp_path).model_dump(), "distill": {"lambda": 0.5}})


def test_resume_with_another_config_is_refused_once_a_day_is_saved(days_data, tmp_path,
                                                                   monkeypatch):
    _interrupt_at_student_day(_config(days_data, tmp_path), monkeypatch, 2)
    saved = (tmp_path / "s" / "config.json").read_text()
    changed = _config(days_data, tmp_path, strategy={"lambda": 0.5},
                      teacher_updates="stale")
    with pytest.raises(CtrDistillError, match=r"another config \(differs in: strategy.lambda_, "
                       r"teacher_updates\) with 1 saved day\(s\); resume with the same config, "
                       r"set overwrite: true to start over"):
        stream(changed)
    assert (tmp_path / "s" / "config.json").read_text() == saved  # the old config is kept
    # A display-only change (progress bars) resumes.
    train = {**TRAIN, "progress": True}
    resumed = StreamConfig(**{**_config(days_data, tmp_path).model_dump(), "train": train})
    assert len(stream(resumed).history) == 3


def test_a_stream_that_saved_no_day_restarts_under_a_new_config(days_data, tmp_path,
                                                                monkeypatch):
    """A failed first attempt (warm-up done, no day saved) does not block the corrected one."""
    _interrupt_at_student_day(_config(days_data, tmp_path), monkeypatch, 1)
    assert (tmp_path / "s" / "state.pt").is_file()
    corrected = _config(days_data, tmp_path, teacher_updates="stale")
    assert len(stream(corrected).history) == 3
    saved = json.loads((tmp_path / "s" / "config.json").read_text())
    assert saved["teacher_updates"] == "stale"
    assert len(LabelStore(tmp_path / "s" / "labels").teacher_versions) == 1


def test_overwrite_removes_the_old_stream_and_starts_afresh(days_data, tmp_path):
    stream(_config(days_data, tmp_path))
    fresh = stream(_config(days_data, tmp_path, teacher_updates="stale", overwrite=True))
    assert len(fresh.history) == 3
    assert len(LabelStore(tmp_path / "s" / "labels").teacher_versions) == 1  # no old labels
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # nothing left beside it
    foreign = tmp_path / "t"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    config = _config(days_data, tmp_path, overwrite=True).model_copy(update={"name": "t"})
    with pytest.raises(CtrDistillError, match=r"is not a stream directory \(it holds notes.txt"):
        stream(config)
    assert (foreign / "notes.txt").read_text() == "keep"


@pytest.fixture(scope="module")
def day_split_data(tmp_path_factory) -> Path:
    return _prepared(tmp_path_factory.mktemp("stream-days"),
                     {"kind": "day", "valid_days": [3], "test_days": [4]}, rows=10000,
                     max_vocab=300, chunk_rows=2000, seed=6)


def test_a_day_split_takes_each_days_rows_from_the_split_that_holds_it(day_split_data,
                                                                       tmp_path):
    history = stream(_config(day_split_data, tmp_path)).history
    assert [r["eval_day"] for r in history] == [2, 3, 4]
    data = PreparedData(day_split_data)
    for record, split in zip(history, ["train", "valid", "test"], strict=True):
        rows = data.load(split, [record["eval_day"]])
        model, _ = load_checkpoint(tmp_path / "s" / record["student_checkpoint"],
                                   data.feature_map)
        with torch.no_grad():
            logits = model(rows.take(slice(None))).numpy()
        metrics = evaluate_outputs(rows, {"served": logits})
        assert metrics["auc"] == pytest.approx(record["student"]["auc"], abs=1e-9)
    store = LabelStore(tmp_path / "s" / "labels")
    assert sorted({(p["split"], p["day"]) for p in store.manifest["partitions"].values()}) == [
        ("train", 1), ("train", 2), ("valid", 3)]


def test_days_a_stream_cannot_take_are_refused_before_training(days_data, tmp_path,
                                                               monkeypatch):
    def never(self, day):
        raise AssertionError("the teacher trained before the data was checked")

    monkeypatch.setattr(_Stream, "train_teacher", never)
    with pytest.raises(CtrDistillError, match=r"day 7 has rows in no split; a stream needs each "
                       r"day's rows either in every split .* or in one split \(a day split\)"):
        stream(_config(days_data, tmp_path, days=[0, 1, 2, 7]))
    assert not (tmp_path / "s").exists()


@pytest.fixture(scope="module")
def small_days(tmp_path_factory) -> Path:
    return _prepared(tmp_path_factory.mktemp("stream-small"), rows=40000, seed=2026)


def test_the_default_day_training_learns_on_small_days(small_days, tmp_path):
    """One pass over 6,400 training rows a day: the generic lr 1e-3 and batch 4096 left the
    students at AUC 0.50-0.53; the stream's own defaults train."""
    config = StreamConfig(name="s", data=small_days, output_dir=tmp_path, teacher="dnn",
                          train={"progress": False, "threads": 1})
    history = stream(config).history
    for record in history:
        assert record["teacher"]["auc"] > 0.56 and record["student"]["auc"] > 0.56, record
        assert record["problems"] == []


def test_a_model_at_chance_level_is_flagged(days_data, tmp_path, monkeypatch, caplog):
    original = _Stream.evaluate

    def student_at_chance_on_day_3(self, day):
        result = original(self, day)
        if day == 3:
            result["student"]["auc"] = 0.503
        return result

    monkeypatch.setattr(_Stream, "evaluate", student_at_chance_on_day_3)
    with caplog.at_level(logging.WARNING, logger="ctrdistill.pipelines.stream"):
        history = stream(_config(days_data, tmp_path)).history
    assert history[1]["problems"] == ["student at chance level (AUC 0.5030)"]
    assert "day 3: the student scores AUC 0.5030, chance level" in caplog.text
    daily = json.loads((tmp_path / "s" / "daily.json").read_text())
    assert daily[1]["problems"] == history[1]["problems"]
    markdown = (tmp_path / "s" / "daily.md").read_text()
    assert "## Problems\n\n- day 3: student at chance level (AUC 0.5030)\n" in markdown


def test_every_days_student_is_a_servable_checkpoint(days_data, tmp_path):
    result = stream(_config(days_data, tmp_path, strategy={"kind": "aux"}))
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
    config = _config(days_data, tmp_path, strategy={"kind": "aux"}).model_dump(mode="json",
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
