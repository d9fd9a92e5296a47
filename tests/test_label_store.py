"""Teacher label store: manifest, fingerprints, resume after a crash, readers see only complete
partitions, mismatched stores refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ctrdistill.cli import main
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.prepare import PrepareConfig, prepare
from ctrdistill.data.synthetic import SynthConfig, write_synthetic
from ctrdistill.errors import CtrDistillError
from ctrdistill.labels.store import LOGITS, LabelStore, file_sha256
from ctrdistill.labels.store import write_labels as label
from ctrdistill.pipelines.fit import TrainRunConfig
from ctrdistill.pipelines.fit import train as run_train
from ctrdistill.training.checkpoint import load_checkpoint
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.inference import score

SYNTH = SynthConfig(rows=6000, days=3, drift=0.2, max_vocab=300, chunk_rows=2000, seed=11)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("store")
    write_synthetic(SYNTH, root / "raw", show_progress=False)
    prepare(PrepareConfig(recipe="synthetic", input=root / "raw", output=root / "prep",
                          protocol="x4", shard_rows=1500), show_progress=False)
    runs = []  # teachers clearly better than chance: wrong labels change their AUCs
    for name, model in (("lr", {"name": "lr"}), ("dnn", {"name": "dnn", "embedding_dim": 4,
                                                         "hidden_units": [16]})):
        result = run_train(TrainRunConfig(name=name, data=root / "prep", output_dir=root / "runs",
                                     model=model, train=TrainConfig(
                                              epochs=2, batch_size=128, lr=0.01, threads=1,
                                              progress=False)))
        runs.append(result.path)
    return root / "prep", runs


def _expected(run: Path, data: PreparedData, split: str) -> tuple[np.ndarray, np.ndarray]:
    model, _ = load_checkpoint(run, data.feature_map)
    rows = data.load(split)
    with torch.no_grad():
        return rows.row_id.numpy(), model(rows.take(slice(None))).numpy()


def test_store_holds_each_teachers_logits_once(setup, tmp_path: Path) -> None:
    prep, runs = setup
    data = PreparedData(prep)
    store = label(runs, prep, tmp_path / "store", show_progress=False)
    manifest = store.manifest
    assert manifest["feature_map_fingerprint"] == data.feature_map.fingerprint()
    version = store.teacher_versions[0]["teachers"]
    assert [t["checkpoint_sha256"] for t in version] == [
        file_sha256(r / "checkpoint.pt") for r in runs]
    total = sum(p["rows"] for p in manifest["partitions"].values())
    assert total == sum(data.feature_map.splits.values())
    assert {p["day"] for p in manifest["partitions"].values()} == {0, 1, 2}
    for split in ("train", "valid", "test"):
        frame = store.frame(split)
        assert frame["row_id"].is_unique().all()
        ids, logits = _expected(runs[1], data, split)
        joined = pl.DataFrame({"row_id": ids}).join(frame, on="row_id", maintain_order="left")
        np.testing.assert_allclose(np.stack(joined[LOGITS].to_numpy())[:, 1], logits, atol=1e-5)
    rows = store.join(data.load("valid"), "valid")
    assert rows.optional[LOGITS].shape == (data.feature_map.splits["valid"], 2)


def test_resume_after_crash_mid_partition(setup, tmp_path: Path) -> None:
    prep, runs = setup
    out = tmp_path / "store"
    label(runs[:1], prep, out, show_progress=False, stop_after=2)
    # A crash while writing the third partition leaves a temporary file and no manifest entry.
    (out / "partitions" / ".train-part-00001-day1.parquet.tmp-crash").write_bytes(b"partial")
    partial = LabelStore(out)
    assert len(partial.manifest["partitions"]) == 2
    store = label(runs[:1], prep, out, show_progress=False)
    data = PreparedData(prep)
    for split in ("train", "valid", "test"):
        frame = store.frame(split)
        assert len(frame) == data.feature_map.splits[split] == frame["row_id"].n_unique()
    assert len(store.teacher_versions) == 1


def test_reader_sees_only_complete_partitions(setup, tmp_path: Path) -> None:
    prep, runs = setup
    out = tmp_path / "store"
    label(runs[:1], prep, out, splits=["valid"], show_progress=False)
    reader = LabelStore(out)
    before = len(reader.frame("valid"))
    # A writer has renamed a new partition into place but not yet listed it in the manifest.
    extra = pl.DataFrame({"row_id": [10**9], LOGITS: [[0.0]]})
    extra.write_parquet(out / "partitions" / "valid-part-99999-day0.parquet")
    assert len(LabelStore(out).frame("valid")) == before
    with pytest.raises(CtrDistillError, match="no labels for split 'train'"):
        reader.frame("train")


def test_mismatched_store_is_refused(setup, tmp_path: Path) -> None:
    prep, runs = setup
    store = label(runs[:1], prep, tmp_path / "store", splits=["valid"], show_progress=False)
    other = tmp_path / "other"
    write_synthetic(SYNTH.model_copy(update={"rows": 5000}), tmp_path / "raw2", show_progress=False)
    prepare(PrepareConfig(recipe="synthetic", input=tmp_path / "raw2", output=other,
                          protocol="x4", shard_rows=1500), show_progress=False)
    with pytest.raises(CtrDistillError, match=r"(feature map|rows)"):
        store.check(PreparedData(other))
    store.check(PreparedData(prep))
    with pytest.raises(CtrDistillError, match="row ids do not match"):
        store.join(PreparedData(prep).load("test"), "valid")
    with pytest.raises(CtrDistillError, match="does not match the checkpoint"):
        label(runs[:1], other, tmp_path / "store", show_progress=False)
    # Same feature map, other rows: the store's data fingerprint refuses to mix them.
    manifest_path = tmp_path / "store" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["data_fingerprint"] = "0" * 16
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CtrDistillError, match="does not match the rows"):
        LabelStore(tmp_path / "store").check(PreparedData(prep))
    with pytest.raises(CtrDistillError, match="labels of other data"):
        label(runs[:1], prep, tmp_path / "store", show_progress=False)


def test_new_teacher_version_adds_days_without_relabelling(setup, tmp_path: Path) -> None:
    prep, runs = setup
    out = tmp_path / "store"
    label(runs[:1], prep, out, days=[0], show_progress=False)
    store = label(runs[1:], prep, out, days=[1], show_progress=False)
    versions = {p["day"]: p["teacher_version"] for p in store.manifest["partitions"].values()}
    assert versions == {0: 0, 1: 1}
    assert len(store.teacher_versions) == 2
    # A stream's days, labelled by successive versions of one teacher, are read together ...
    data = PreparedData(prep)
    rows = store.join(data.load("train", [0, 1]), "train")
    assert rows.optional[LOGITS].shape == (len(rows), 1)
    # ... or one version's partitions alone.
    assert set(store.frame("train", teacher_version=1)["row_id"].to_list()) == set(
        data.load("train", [1]).row_id.tolist())
    with pytest.raises(CtrDistillError, match=r"teacher versions 0\.\.1, not 2"):
        store.frame("train", teacher_version=2)


def test_partitions_of_another_teacher_set_are_refused_or_relabelled(setup, tmp_path: Path
                                                                      ) -> None:
    prep, runs = setup
    data = PreparedData(prep)
    out = tmp_path / "store"
    label(runs[:1], prep, out, splits=["valid"], show_progress=False)
    before = (out / "manifest.json").read_text()
    old_files = {p["file"] for p in LabelStore(out).manifest["partitions"].values()}
    with pytest.raises(CtrDistillError, match=r"labelled by another teacher set; label into a "
                       r"new store path, or relabel"):
        label(runs[1:], prep, out, splits=["valid"], show_progress=False)
    assert (out / "manifest.json").read_text() == before  # refused before any change
    # Labelling other partitions with the new teachers is fine; the old ones are untouched.
    label(runs[1:], prep, out, splits=["test"], show_progress=False)
    store = label(runs[1:], prep, out, splits=["valid"], show_progress=False, relabel=True)
    parts = store.partitions("valid")
    assert {p["teacher_version"] for p in parts} == {1}
    assert sum(p["rows"] for p in parts) == data.feature_map.splits["valid"]
    for name in old_files:  # replaced files are removed once the manifest no longer lists them
        assert not (out / name).exists()
    ids, logits = _expected(runs[1], data, "valid")
    frame = store.frame("valid")
    joined = pl.DataFrame({"row_id": ids}).join(frame, on="row_id", maintain_order="left")
    np.testing.assert_allclose(np.stack(joined[LOGITS].to_numpy())[:, 0], logits, atol=1e-5)
    assert frame["row_id"].is_unique().all()
    # The CLI refuses with one line and exit code 2.
    assert main(["label", str(runs[0]), "--data", str(prep), "--output", str(out), "--split",
                 "valid"]) == 2
    assert main(["label", str(runs[0]), "--data", str(prep), "--output", str(out), "--split",
                 "valid", "--relabel"]) == 0


def test_join_refuses_labels_with_different_numbers_of_teachers(setup, tmp_path: Path) -> None:
    prep, runs = setup
    data = PreparedData(prep)
    out = tmp_path / "store"
    label(runs, prep, out, splits=["train"], days=[0], show_progress=False)
    store = label(runs[:1], prep, out, splits=["train"], days=[1], show_progress=False)
    rows = data.load("train", [0, 1])
    with pytest.raises(CtrDistillError, match=r"different shapes \(version 0: 2 teacher\(s\), "
                       r"version 1: 1 teacher\(s\)\); select one teacher version"):
        store.join(rows, "train")
    day0 = store.join(data.load("train", [0]), "train", teacher_version=0)
    assert day0.optional[LOGITS].shape == (len(day0), 2)
    day1 = store.join(data.load("train", [1]), "train", [1])
    assert day1.optional[LOGITS].shape == (len(day1), 1)


def test_label_cli(setup, tmp_path: Path, capsys) -> None:
    prep, runs = setup
    assert main(["label", *map(str, runs), "--data", str(prep), "--output",
                 str(tmp_path / "s"), "--split", "test"]) == 0
    assert "1 teacher version" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert {p["split"] for p in manifest["partitions"].values()} == {"test"}
    assert main(["label", str(tmp_path / "nope"), "--data", str(prep), "--output",
                 str(tmp_path / "t")]) == 2


def _assert_same_student(stored, live) -> None:
    """Two distill results trained the same student: same test metrics, same weights."""
    for key in ("auc", "logloss", "ensemble.auc", "distill"):
        assert stored.metrics["test"][key] == pytest.approx(live.metrics["test"][key],
                                                            abs=1e-5), key
    a = torch.load(stored.path / "strategy_state.pt", weights_only=True)
    b = torch.load(live.path / "strategy_state.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4, msg=key)


def test_students_train_from_one_store(setup, tmp_path: Path) -> None:
    from ctrdistill.config import validate_config
    from ctrdistill.pipelines.fit import DistillConfig, distill

    prep, runs = setup
    store = tmp_path / "store"
    label(runs, prep, store, show_progress=False)
    student = {"name": "dnn", "embedding_dim": 4, "hidden_units": [8]}
    train = {"epochs": 1, "batch_size": 512, "progress": False, "threads": 1}
    results = []
    for name, kind, version in (("direct", "direct", None), ("aux", "aux", 0)):
        config = DistillConfig(name=name, data=prep, output_dir=tmp_path / "runs",
                               label_store=store, label_store_version=version, student=student,
                               train=train, strategy={"kind": kind, "ensemble": "mean_probs"})
        results.append(distill(config))
    # The table's teacher and ensemble rows are those of the teachers' own scores of the test
    # rows (wrong, misaligned or reordered stored labels would change them) ...
    data = PreparedData(prep)
    test_rows = data.load("test")
    labels = test_rows.label.numpy()
    own = np.stack([score(load_checkpoint(r, data.feature_map)[0], test_rows) for r in runs], 1)
    mean_probs = (1 / (1 + np.exp(-own.astype(np.float64)))).mean(1)
    for result in results:
        rows = result.rows
        assert [r["model"] for r in rows][:3] == ["teacher lr", "teacher dnn", "teacher ensemble"]
        for k in (0, 1):
            assert rows[k]["auc"] == pytest.approx(roc_auc_score(labels, own[:, k]), abs=1e-4)
        assert rows[2]["auc"] == pytest.approx(roc_auc_score(labels, mean_probs), abs=1e-4)
    # ... and the student distilled from the store is the one distilled from the live teachers.
    live = distill(DistillConfig(name="live", data=prep, output_dir=tmp_path / "runs",
                                 teachers=[{"run": r} for r in runs], student=student,
                                 train=train, strategy={"kind": "direct",
                                                        "ensemble": "mean_probs"}))
    _assert_same_student(results[0], live)
    with pytest.raises(CtrDistillError, match="either teachers or a label_store"):
        validate_config(DistillConfig, {"name": "x", "data": str(prep), "label_store": str(store),
                                        "teachers": [{"run": str(runs[0])}]})
    with pytest.raises(CtrDistillError, match="label_store_version selects partitions"):
        validate_config(DistillConfig, {"name": "x", "data": str(prep), "label_store_version": 0,
                                        "teachers": [{"run": str(runs[0])}]})
    with pytest.raises(CtrDistillError, match=r"teacher versions 0\.\.0, not 3"):
        distill(DistillConfig(name="v3", data=prep, output_dir=tmp_path / "runs",
                              label_store=store, label_store_version=3, student=student,
                              train=train))


def test_store_with_hidden_vectors_feeds_gate_and_hint(setup, tmp_path: Path) -> None:
    from ctrdistill.pipelines.fit import DistillConfig, distill

    prep, runs = setup
    data = PreparedData(prep)
    store_path = tmp_path / "store"
    assert main(["label", *map(str, runs), "--data", str(prep), "--output", str(store_path),
                 "--hidden"]) == 0
    store = LabelStore(store_path)
    teachers = [load_checkpoint(r, data.feature_map)[0] for r in runs]
    assert store.has_hidden
    rows = store.join(data.load("valid"), "valid", hidden=True)
    assert rows.optional["teacher_hidden"].shape[1] == sum(t.hidden_dim for t in teachers)
    with torch.no_grad():
        batch = rows.take(slice(None))
        expected = torch.cat([t.encode(batch).hidden for t in teachers], 1)
    np.testing.assert_allclose(rows.optional["teacher_hidden"].numpy(), expected.numpy(),
                               atol=1e-5)
    # A store keeps one layout: labelling it again without hidden vectors is refused.
    assert main(["label", *map(str, runs), "--data", str(prep), "--output",
                 str(store_path)]) == 2
    student = {"name": "dnn", "embedding_dim": 4, "hidden_units": [8]}
    train = {"epochs": 1, "batch_size": 512, "progress": False, "threads": 1}
    result = distill(DistillConfig(
        name="gated", data=prep, output_dir=tmp_path / "runs", label_store=store_path,
        student=student, train=train,
        strategy={"ensemble": "gate", "gate_inputs": ["logits", "hidden"], "hint": 0.1}))
    history = json.loads((result.path / "history.json").read_text())
    assert "hint" in history[0]["train"] and "teacher_weight.1" in history[0]
    # Stored hidden vectors feed the gate and the hint exactly as the live teachers' do.
    live = distill(DistillConfig(
        name="gated-live", data=prep, output_dir=tmp_path / "runs",
        teachers=[{"run": r} for r in runs], student=student, train=train,
        strategy={"ensemble": "gate", "gate_inputs": ["logits", "hidden"], "hint": 0.1}))
    _assert_same_student(result, live)
    # Hidden vectors asked of a store that has none: one clear error.
    plain = tmp_path / "plain"
    label(runs, prep, plain, show_progress=False)
    with pytest.raises(CtrDistillError, match="no teacher hidden vectors"):
        distill(DistillConfig(name="x", data=prep, output_dir=tmp_path / "runs",
                              label_store=plain, student=student, train=train,
                              strategy={"hint": 0.1}))
