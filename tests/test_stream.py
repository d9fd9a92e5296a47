"""`stream`: continual distillation over a prepared dataset's days, run by the follow machinery
(a day per partition, progressive validation, labels stored once per day, exactly-once resume)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml

from ctrdistill.cli import main
from ctrdistill.continuous.days import DaySource
from ctrdistill.data.dataset import PreparedData, frame_to_columns
from ctrdistill.data.encode import PrepareState
from ctrdistill.data.prepare import PrepareConfig, prepare
from ctrdistill.data.synthetic import SynthConfig, write_synthetic
from ctrdistill.errors import CtrDistillError
from ctrdistill.labels.store import LabelStore
from ctrdistill.pipelines import follow as follow_module
from ctrdistill.pipelines.follow import STATE, _Follower
from ctrdistill.pipelines.stream import StreamConfig, stream
from ctrdistill.serving.bundle import MANIFEST_FILE
from ctrdistill.training.trainer import evaluate_outputs
from test_follow import _assert_same

TRAIN = {"epochs": 1, "batch_size": 512, "early_stop": None, "lr_plateau": None,
         "progress": False, "lr": 0.005, "threads": 1}
DAYS = ["day=0", "day=1", "day=2", "day=3", "day=4"]
RAW = Path(__file__).parent / "fixtures" / "raw" / "criteo" / "train.txt"


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


def _state(directory: Path) -> dict:
    return torch.load(directory / STATE, map_location="cpu", weights_only=True)


def _day_rows(data: Path, day: int):
    source = DaySource(PreparedData(data), [day])
    frame, _ = source.rows(source.complete()[0], PrepareState.load(data))
    return frame_to_columns(frame, PreparedData(data).feature_map)


def test_each_day_is_one_partition_labelled_once(days_data, tmp_path):
    result = stream(_config(days_data, tmp_path))
    out = tmp_path / "s"
    state = _state(out)
    assert [p["name"] for p in state["processed"]] == DAYS
    data = PreparedData(days_data)
    every_row = pl.concat([data.scan(split).select("day") for split in ("train", "valid",
                                                                        "test")]).collect()
    assert [p["rows"] for p in state["processed"]] == [
        every_row.filter(pl.col("day") == day).height for day in range(5)]  # whole days
    # labelled once per day after the warm-up day, by a new teacher version each day
    store = LabelStore(out / "labels")
    assert sorted(store.manifest["partitions"]) == DAYS[1:]
    assert len(store.teacher_versions) == 4
    # both models scored every day before training on it; reported from the day after the
    # student's first
    metrics = pl.read_parquet(out / "metrics.parquet")
    assert metrics.height == 5 * 2
    assert [r["eval_day"] for r in result.history] == [2, 3, 4]
    by_day = {(r["partition"], r["model"]): r["auc"] for r in metrics.to_dicts()}
    for record in result.history:
        assert record["student"]["auc"] == by_day[(f"day={record['eval_day']}", "student")]
        assert record["teacher"]["auc"] == by_day[(f"day={record['eval_day']}", "teacher")]
        assert {"auc", "logloss", "calibration"} <= set(record["student"])
    for name in ("daily.json", "daily.md", "daily.png", "config.json", "status.json"):
        assert (out / name).is_file()
    assert json.loads((out / "daily.json").read_text()) == result.history
    assert json.loads((out / "config.json").read_text())["warmup_days"] == 1  # the stream's


def test_each_days_bundle_is_the_student_that_day_scored(days_data, tmp_path):
    result = stream(_config(days_data, tmp_path, strategy={"kind": "aux"}))
    out = tmp_path / "s"
    assert (out / "bundles" / "student" / "latest").read_text().strip() == "v000004"
    for record in result.history:
        bundle = out / record["student_bundle"]
        manifest = json.loads((bundle / MANIFEST_FILE).read_text())
        model = torch.jit.load(str(bundle / manifest["model_file"]))
        rows = _day_rows(days_data, record["eval_day"])
        with torch.no_grad():
            blocks = {"categorical": rows.cat.long(), "numeric": rows.num}
            logits = model(*(blocks[i["name"]] for i in manifest["inputs"]))[0].numpy()
        # the bundle is the served student (the main head, not the aux head)
        metrics = evaluate_outputs(rows, {"served": logits})
        assert metrics["auc"] == pytest.approx(record["student"]["auc"], abs=1e-6)
    # the last student, a run directory
    assert main(["evaluate", str(out / "students" / "student"), "--data",
                 str(days_data)]) == 0


def test_a_stale_teacher_labels_every_day_as_one_version(days_data, tmp_path):
    stream(_config(days_data, tmp_path, teacher_updates="stale"))
    store = LabelStore(tmp_path / "s" / "labels")
    assert sorted(store.manifest["partitions"]) == DAYS[1:]
    assert len(store.teacher_versions) == 1
    status = json.loads((tmp_path / "s" / "status.json").read_text())
    assert "teacher" not in status["rows_per_second"]  # it trained on no day after day 0


def _interrupt_at_student_day(config: StreamConfig, monkeypatch, n: int) -> None:
    """Run `config`, interrupted as the student starts training on its n-th day (the days
    before are committed)."""
    calls = {"n": 0}
    original = _Follower._fit

    def crash(self, name, rows, index):
        if name == "student":
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
        return original(self, name, rows, index)

    with monkeypatch.context() as patch:
        patch.setattr(_Follower, "_fit", crash)
        with pytest.raises(KeyboardInterrupt):
            stream(config)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_resume_after_interruption_repeats_the_uninterrupted_run(days_data, tmp_path,
                                                                 monkeypatch, precision):
    """fp16: the commit holds the gradient scaler's state too, which the resumed run goes on
    from."""
    train = {**TRAIN, "precision": precision}
    full = stream(_config(days_data, tmp_path / "full", train=train))
    cut = _config(days_data, tmp_path / "cut", train=train)
    _interrupt_at_student_day(cut, monkeypatch, 3)
    assert [p["name"] for p in _state(tmp_path / "cut" / "s")["processed"]] == DAYS[:3]
    resumed = stream(cut)
    assert resumed.history == full.history
    ours, theirs = _state(tmp_path / "cut" / "s"), _state(tmp_path / "full" / "s")
    _assert_same(ours["learners"], theirs["learners"], "learners")  # parameters, RNG, ...
    if precision == "fp16":
        assert theirs["learners"]["student"]["scaler"]["scale"] > 0
    for day in DAYS[1:]:
        file = theirs["store"]["partitions"][day]["file"]
        assert pl.read_parquet(tmp_path / "cut" / "s" / "labels" / file).equals(
            pl.read_parquet(tmp_path / "full" / "s" / "labels" / file))


def test_resume_with_another_config_is_refused_once_a_day_is_committed(days_data, tmp_path,
                                                                       monkeypatch):
    _interrupt_at_student_day(_config(days_data, tmp_path), monkeypatch, 2)
    saved = (tmp_path / "s" / "config.json").read_text()
    changed = _config(days_data, tmp_path, strategy={"lambda": 0.5}, teacher_updates="stale")
    with pytest.raises(CtrDistillError, match=r"another config \(differs in: strategy.lambda_, "
                       r"teacher_updates\); resume with the same models and data, set "
                       r"overwrite: true to start over"):
        stream(changed)
    assert (tmp_path / "s" / "config.json").read_text() == saved  # the old config is kept
    # A display-only change (progress bars) resumes.
    resumed = StreamConfig(**{**_config(days_data, tmp_path).model_dump(),
                              "train": {**TRAIN, "progress": True}})
    assert len(stream(resumed).history) == 3


def test_a_stream_that_committed_no_day_restarts_under_a_new_config(days_data, tmp_path,
                                                                    monkeypatch):
    """A first attempt that failed before its first commit does not block the corrected one."""
    with monkeypatch.context() as patch:
        patch.setattr(_Follower, "_fit", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            stream(_config(days_data, tmp_path))
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
    with pytest.raises(CtrDistillError, match=r"is not a follow directory \(it holds notes.txt"):
        stream(config)
    assert (foreign / "notes.txt").read_text() == "keep"


@pytest.fixture(scope="module")
def day_split_data(tmp_path_factory) -> Path:
    return _prepared(tmp_path_factory.mktemp("stream-days"),
                     {"kind": "day", "valid_days": [3], "test_days": [4]}, rows=10000,
                     max_vocab=300, chunk_rows=2000, seed=6)


def test_a_day_split_gives_the_same_days(day_split_data, tmp_path):
    history = stream(_config(day_split_data, tmp_path)).history
    assert [r["eval_day"] for r in history] == [2, 3, 4]
    data = PreparedData(day_split_data)
    for record, split in zip(history, ["train", "valid", "test"], strict=True):
        assert record["rows"] == len(data.load(split, [record["eval_day"]]))
    store = LabelStore(tmp_path / "s" / "labels")
    assert sorted(store.manifest["partitions"]) == DAYS[1:]


@pytest.mark.parametrize("extra, message", [
    ({"days": [0, 1, 2, 7]}, r"has no rows on day\(s\) 7 \(its days: \[0, 1, 2, 3, 4\]\)"),
    ({"days": [0, 2, 1, 3]}, r"days must be listed in increasing order, each once"),
    ({"warmup_days": 4}, r"stream needs at least warmup_days \+ 2 = 6 days .*, not 5"),
    ({"strategy": {"ensemble": "gate", "gate_fit": "valid"}},
     r"student student: gate_fit: valid needs a labelled validation split, which partitions "
     r"do not have; use gate_fit: joint"),
])
def test_what_a_stream_cannot_do_is_refused_before_training(days_data, tmp_path, monkeypatch,
                                                            extra, message):
    def never(*args):
        raise AssertionError("a model trained before the config was checked")

    monkeypatch.setattr(_Follower, "_fit", never)
    with pytest.raises(CtrDistillError, match=message):
        stream(_config(days_data, tmp_path, **extra))


def test_data_without_days_is_refused(tmp_path):
    assert main(["prepare", "--recipe", "criteo", "--input", str(RAW), "--output",
                 str(tmp_path / "prep"), "--quiet"]) == 0
    with pytest.raises(CtrDistillError, match=r"has no day column, so no days to follow"):
        stream(_config(tmp_path / "prep", tmp_path))
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("key, message", [
    ("eval_split", r"`eval_split` is gone: every day is now scored on all of its rows by both "
                   r"models before they train on it \(progressive validation"),
    ("distill", r"`distill:` is now `strategy:`"),
])
def test_keys_a_stream_no_longer_takes_say_what_to_do(days_data, tmp_path, key, message):
    with pytest.raises(CtrDistillError, match=message):
        stream({**_config(days_data, tmp_path).model_dump(), key: "test"})


@pytest.fixture(scope="module")
def small_days(tmp_path_factory) -> Path:
    return _prepared(tmp_path_factory.mktemp("stream-small"), rows=40000, seed=2026)


def test_the_default_day_training_learns_on_small_days(small_days, tmp_path):
    """One pass over 8,000 rows a day: the generic lr 1e-3 and batch 4096 left the students at
    AUC 0.50-0.53; the partition training defaults train."""
    config = StreamConfig(name="s", data=small_days, output_dir=tmp_path, teacher="dnn",
                          train={"progress": False, "threads": 1})
    history = stream(config).history
    for record in history:
        assert record["teacher"]["auc"] > 0.56 and record["student"]["auc"] > 0.56, record
        assert record["problems"] == []


def test_a_model_at_chance_level_is_flagged(days_data, tmp_path, monkeypatch, caplog):
    original = _Follower._evaluate

    def student_at_chance_on_day_3(self, rows, index, name, frame):
        records = original(self, rows, index, name, frame)
        for record in records:
            if name == "day=3" and record["model"] == "student":
                record["auc"] = 0.503
        return records

    monkeypatch.setattr(_Follower, "_evaluate", student_at_chance_on_day_3)
    with caplog.at_level(logging.WARNING, logger="ctrdistill.pipelines.stream"):
        history = stream(_config(days_data, tmp_path)).history
    assert [r["problems"] for r in history] == [[], ["student at chance level (AUC 0.5030)"], []]
    assert "day 3: the student scores AUC 0.5030, chance level" in caplog.text
    daily = json.loads((tmp_path / "s" / "daily.json").read_text())
    assert daily[1]["problems"] == history[1]["problems"]
    markdown = (tmp_path / "s" / "daily.md").read_text()
    assert "## Problems\n\n- day 3: student at chance level (AUC 0.5030)\n" in markdown


def test_stream_cli_and_too_few_days(days_data, tmp_path):
    config = _config(days_data, tmp_path).model_dump(mode="json", by_alias=True)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["stream", str(path)]) == 0
    assert len(json.loads((tmp_path / "s" / "daily.json").read_text())) == 3
    assert main(["stream", str(path), "--set", "warmup_days=4", "--set", "name=t"]) == 2
    assert main(["stream", str(path), "--set", "eval_split=test", "--set", "name=t"]) == 2
    assert not (tmp_path / "t").exists()


def test_a_partial_train_block_keeps_the_partition_defaults():
    """`train: {lr: 0.01}` overrides lr only: one pass a day and no early stopping stay, instead
    of falling back to the generic training defaults (10 epochs, early stopping on valid)."""
    config = StreamConfig.model_validate({"name": "s", "data": ".", "teacher": "dnn",
                                          "train": {"lr": 0.01}})
    assert config.train.lr == 0.01
    assert config.train.epochs == 1 and config.train.early_stop is None
    assert config.train.lr_plateau is None
    generic = StreamConfig.model_validate({"name": "s", "data": ".", "teacher": "dnn"})
    assert generic.train == config.train.model_copy(update={"lr": generic.train.lr})
    assert follow_module.FollowConfig.model_fields["train"].annotation is type(config.train)
