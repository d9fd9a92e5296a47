"""`follow`: partitions landing in a directory are evaluated, labelled once, distilled into every
student, trained into the teacher and exported, each committed exactly once."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml

from conftest import prepare_synthetic
from ctrdistill.cli import main
from ctrdistill.continuous.labels import parameters_sha256
from ctrdistill.continuous.synthetic import MARKER, partition_name, write_landing
from ctrdistill.data.encode import PrepareState
from ctrdistill.data.synthetic import SynthConfig
from ctrdistill.errors import CtrDistillError
from ctrdistill.labels.store import LabelStore
from ctrdistill.pipelines.follow import STATE, FollowConfig, _Follower, follow

ort = pytest.importorskip("onnxruntime")

SYNTH = {"max_vocab": 300, "numeric_fields": 3, "categorical_fields": 6, "seed": 5}
TRAIN = {"epochs": 1, "batch_size": 512, "progress": False, "lr": 0.005, "threads": 1}
ROWS = 1000


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepare_synthetic(tmp_path_factory.mktemp("follow"), rows=3000, **SYNTH)


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("landing")
    write_landing(SynthConfig(**SYNTH, drift=0.2), root, 3, ROWS, new_ids_rate=0.3)
    return root


def _config(prepared: Path, landing: Path, out: Path, **extra) -> dict:
    return {"name": "f", "output_dir": str(out), "landing": {"path": str(landing)},
            "data": str(prepared), "train": TRAIN, "export_every": 1,
            "export_format": "torchscript", "poll_seconds": 0.2,
            "teacher": {"name": "dnn", "embedding_dim": 4, "hidden_units": [16]},
            "students": {"tiny": {"model": {"name": "lr"}},
                         "small": {"model": {"name": "dnn", "embedding_dim": 4,
                                             "hidden_units": [8]},
                                   "strategy": {"distance": "mse_logits"}}}} | extra


@pytest.fixture(scope="module")
def reference(prepared, landing, tmp_path_factory) -> Path:
    """An uninterrupted follow over the three landed partitions."""
    out = tmp_path_factory.mktemp("reference")
    follow(_config(prepared, landing, out), once=True)
    return out / "f"


def _state(directory: Path) -> dict:
    return torch.load(directory / STATE, map_location="cpu", weights_only=True)


def _assert_same(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _assert_same_run(directory: Path, reference: Path) -> None:
    """The same partitions, each once, the same learner states (parameters, optimizers, RNG),
    labels, metrics and bundles as the uninterrupted run."""
    state, expected = _state(directory), _state(reference)
    names = [p["name"] for p in state["processed"]]
    assert names == [p["name"] for p in expected["processed"]] == sorted(set(names))
    _assert_same(state["learners"], expected["learners"], "learners")
    assert state["store"]["partitions"].keys() == expected["store"]["partitions"].keys()
    for name, entry in expected["store"]["partitions"].items():
        assert state["store"]["partitions"][name]["row_ids"] == entry["row_ids"]
        assert pl.read_parquet(directory / "labels" / entry["file"]).equals(
            pl.read_parquet(reference / "labels" / entry["file"]))
    assert sorted(p.name for p in (directory / "labels/partitions").iterdir()) == sorted(
        p.name for p in (reference / "labels/partitions").iterdir())
    drop = ["partition"]
    assert pl.read_parquet(directory / "metrics.parquet").drop(drop).equals(
        pl.read_parquet(reference / "metrics.parquet").drop(drop))
    for student in ("tiny", "small"):
        bundles = directory / "bundles" / student
        assert (bundles / "latest").read_text() == (reference / "bundles" / student / "latest"
                                                    ).read_text()
        assert sorted(p.name for p in bundles.iterdir() if not p.name.startswith(".")) == \
            sorted(p.name for p in (reference / "bundles" / student).iterdir()
                   if not p.name.startswith("."))


def test_each_partition_is_validated_labelled_distilled_and_exported(reference, landing):
    state = _state(reference)
    assert [p["name"] for p in state["processed"]] == [partition_name(i) for i in range(3)]
    metrics = pl.read_parquet(reference / "metrics.parquet")
    assert metrics.height == 3 * 3  # every partition, teacher and two students
    assert {"auc", "logloss", "calibration", "bayes_auc", "oov_rate", "oov.C1"} <= set(
        metrics.columns)
    assert metrics["distilled"].to_list() == [False] * 3 + [True] * 6  # warm-up: teacher only
    assert 0 < metrics["oov_rate"].max() < 1
    # labelled once per partition after the warm-up, by a new teacher version each time
    store = LabelStore(reference / "labels")
    assert sorted(p["day"] for p in store.partitions("train")) == [1, 2]
    assert len(store.teacher_versions) == 2
    assert store.frame("train", [2]).height == ROWS
    for student in ("tiny", "small"):  # exported after partitions 1 and 2
        bundles = reference / "bundles" / student
        assert (bundles / "latest").read_text().strip() == "v000002"
        assert (bundles / "v000001" / "manifest.json").is_file()
    status = json.loads((reference / "status.json").read_text())
    assert status["partitions_committed"] == 3 and status["partitions_waiting"] == 0
    assert status["last_committed"] == partition_name(2)
    assert {"encode", "evaluate", "label", "students", "teacher", "export"} == set(
        status["rows_per_second"])
    assert (reference / "metrics.png").stat().st_size > 10_000


def test_a_second_pass_finds_nothing_new(prepared, landing, reference, tmp_path):
    out = tmp_path / "again"
    follow(_config(prepared, landing, out), once=True)
    follow(_config(prepared, landing, out), once=True)
    _assert_same_run(out / "f", reference)


def test_bad_partition_is_quarantined_or_stops(prepared, landing, tmp_path):
    zone = tmp_path / "zone"
    write_landing(SynthConfig(**SYNTH), zone, 2, 600)
    bad = zone / "dt=2026-01-01/hour=00b"  # sorts between the two good ones
    bad.mkdir()
    (bad / "part-0.parquet").write_text("not parquet")
    (bad / MARKER).touch()
    with pytest.raises(CtrDistillError, match="hour=00b"):
        follow(_config(prepared, zone, tmp_path, on_bad_partition="stop", export_every=0),
               once=True)
    assert [p["name"] for p in _state(tmp_path / "f")["processed"]] == [partition_name(0)]
    result = follow(_config(prepared, zone, tmp_path, export_every=0), once=True)
    processed = _state(tmp_path / "f")["processed"]
    assert [(p["name"], p["status"]) for p in processed] == [
        (partition_name(0), "done"), ("dt=2026-01-01/hour=00b", "quarantined"),
        (partition_name(1), "done")]
    [quarantined] = result.metrics["quarantined"]
    assert "\n" not in quarantined["error"] and quarantined["error"]


def test_another_config_with_committed_partitions_is_refused(prepared, landing, reference):
    config = _config(prepared, landing, reference.parent,
                     teacher={"name": "dnn", "embedding_dim": 8, "hidden_units": [16]})
    with pytest.raises(CtrDistillError, match="teacher"):
        follow(config, once=True)


def test_an_unhealthy_teacher_without_a_healthy_version_labels_nothing(
        prepared, landing, reference, tmp_path, caplog):
    teacher = pl.read_parquet(reference / "metrics.parquet").filter(model="teacher")["auc"]
    assert teacher[1] < 0.5 <= teacher[2]  # the guard below trips on partition 1 only
    with caplog.at_level(logging.WARNING, "ctrdistill"):
        follow(_config(prepared, landing, tmp_path, teacher_guard={"min_auc": 0.5}), once=True)
    assert "no healthy version yet, students skip this partition" in caplog.text
    state = _state(tmp_path / "f")
    assert [p["day"] for p in state["store"]["partitions"].values()] == [2]
    metrics = pl.read_parquet(tmp_path / "f" / "metrics.parquet").filter(model="teacher")
    assert metrics["teacher_healthy"].to_list() == [True, False, True]
    assert metrics["distilled"].to_list() == [False, False, True]
    assert (tmp_path / "f" / "metrics.png").is_file()


def test_students_distil_from_the_last_healthy_teacher(prepared, landing, reference, tmp_path,
                                                        monkeypatch):
    verdicts = iter([None, "broken on purpose"])
    monkeypatch.setattr(_Follower, "_health_problem", lambda self, metrics: next(verdicts))
    follow(_config(prepared, landing, tmp_path, teacher_guard={"min_auc": 0.0}), once=True)
    store = LabelStore(tmp_path / "f" / "labels")
    assert len(store.teacher_versions) == 1  # partition 2 labelled by partition 1's teacher
    assert [p["teacher_version"] for p in store.partitions("train")] == [0, 0]
    expected = LabelStore(reference / "labels")
    assert store.frame("train", [1]).equals(expected.frame("train", [1]))
    assert not store.frame("train", [2]).equals(expected.frame("train", [2]))


def _teacher_sha(config: dict, prepared: Path) -> str:
    """The parameters' identity of the teacher a follow directory committed last."""
    follower = _Follower(FollowConfig(**config), PrepareState.load(prepared),
                         Path(config["output_dir"]) / config["name"], config["landing"]["path"])
    follower.restore()
    return parameters_sha256(follower.trainers["teacher"].strategy.served_model())


@pytest.mark.parametrize("updates", ["stale", "leaked"])
def test_teacher_updates_stale_or_leaked(prepared, landing, reference, tmp_path, updates):
    config = _config(prepared, landing, tmp_path, teacher_updates=updates, export_every=0)
    follow(config, once=True)
    store = LabelStore(tmp_path / "f" / "labels")
    versions = [v["teachers"][0]["checkpoint_sha256"] for v in store.teacher_versions]
    final = _teacher_sha(config, prepared)
    status = json.loads((tmp_path / "f" / "status.json").read_text())
    if updates == "stale":  # trained on the warm-up partition only: one version labels all
        assert versions == [final]
        assert "teacher" not in status["rows_per_second"]
    else:  # the last partition was labelled by the teacher that had trained on it
        assert len(versions) == 2 and versions[-1] == final
        assert store.teacher_versions[-1]["teachers"][0]["run"].endswith(partition_name(2))
        continual = _config(prepared, landing, reference.parent)
        assert LabelStore(reference / "labels").teacher_versions[-1]["teachers"][0][
            "checkpoint_sha256"] != _teacher_sha(continual, prepared)


def test_a_guard_may_be_added_to_a_committed_follow(prepared, tmp_path, caplog):
    zone = tmp_path / "zone"
    write_landing(SynthConfig(**SYNTH), zone, 2, ROWS)
    follow(_config(prepared, zone, tmp_path, export_every=0), once=True)
    write_landing(SynthConfig(**SYNTH), zone, 1, ROWS, first=2)
    guard = {"min_auc": 1.0, "fallback": "hard_labels"}  # no teacher passes it
    with caplog.at_level(logging.WARNING, "ctrdistill"):
        follow(_config(prepared, zone, tmp_path, export_every=0, teacher_guard=guard),
               once=True)
    assert "students train on the hard labels" in caplog.text
    labels = pl.read_parquet(tmp_path / "f" / "metrics.parquet")["student_labels"]
    assert labels.to_list()[-3:] == ["hard_labels"] * 3


def test_synth_cli_lands_partitions(tmp_path, capsys):
    assert main(["synth", "--landing", str(tmp_path), "--partitions", "2",
                 "--rows-per-partition", "500", "--drift", "0.1", "--new-ids-rate", "0.2",
                 "--set", "categorical_fields=4", "--set", "numeric_fields=2"]) == 0
    assert "landed 2 partitions of 500 rows" in capsys.readouterr().out
    frame = pl.read_parquet(tmp_path / partition_name(1) / "part-0.parquet")
    assert frame.height == 500 and frame["day"].unique().to_list() == [1]
    assert main(["synth", "--partitions", "2"]) == 2  # neither --output nor --landing


def test_synthetic_landing_has_late_ids_and_markers(tmp_path):
    names = write_landing(SynthConfig(**SYNTH), tmp_path, 4, 2000, new_ids_rate=0.5)
    assert names == sorted(names) and all((tmp_path / n / MARKER).is_file() for n in names)
    frames = [pl.read_parquet(tmp_path / n / "part-0.parquet") for n in names]
    seen = set(frames[0]["C6"].drop_nulls().to_list())
    late = [len(set(f["C6"].drop_nulls().to_list()) - seen) for f in frames[1:]]
    assert all(count > 0 for count in late)
    plain = write_landing(SynthConfig(**SYNTH), tmp_path / "plain", 2, 2000)
    first = pl.read_parquet(tmp_path / "plain" / plain[0] / "part-0.parquet")
    assert first["C6"].null_count() < frames[0]["C6"].null_count()  # unborn ids are missing


KILLER = """
import importlib, os, signal, sys
target = importlib.import_module("{module}")
owner = target{attr_path}
original = getattr(owner, "{name}")
calls = [0]
def patched(*args, **kwargs):
    calls[0] += 1
    if calls[0] == {n}:
        {before}
    result = original(*args, **kwargs)
    if calls[0] == {n}:
        os.kill(os.getpid(), signal.SIGKILL)
    return result
setattr(owner, "{name}", patched)
from ctrdistill.cli import main
sys.exit(main(["follow", sys.argv[1], "--once"]))
"""


def _run_killed(config: dict, tmp_path: Path, module: str, attr: str, n: int,
                before_call: bool = False) -> None:
    """Run `follow --once` in a subprocess that SIGKILLs itself at the n-th call of `attr`
    (before or after the call runs)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    owner, _, name = attr.rpartition(".")
    script = KILLER.format(module=module, attr_path=f".{owner}" if owner else "", name=name,
                           n=n, before="os.kill(os.getpid(), signal.SIGKILL)" if before_call
                           else "pass")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", script, str(path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


@pytest.mark.parametrize("module, attr, n, before", [
    # labelling partition 2: its label file is written, the manifest not yet
    ("ctrdistill.continuous.labels", "publish", 2, True),
    # training a student on partition 1 (steps: 2 per model and partition)
    ("ctrdistill.training.trainer", "Trainer.train_step", 4, False),
    # exporting partition 1's students: the second's bundle written, its `latest` not switched
    ("ctrdistill.pipelines.follow", "set_latest", 2, True),
    # just after partition 0's commit, before its metrics and manifest are published
    ("ctrdistill.pipelines.follow", "_Follower.publish", 2, True),
])
def test_sigkill_then_restart_equals_an_uninterrupted_run(prepared, landing, reference, tmp_path,
                                                          module, attr, n, before):
    config = _config(prepared, landing, tmp_path / "runs")
    _run_killed(config, tmp_path, module, attr, n, before)
    state = tmp_path / "runs" / "f" / STATE
    committed = len(_state(tmp_path / "runs" / "f")["processed"]) if state.is_file() else 0
    assert committed < 3  # it died before the end
    follow(config, once=True)
    _assert_same_run(tmp_path / "runs" / "f", reference)


def test_follow_keeps_up_with_partitions_landing_while_it_runs(prepared, tmp_path, capsys):
    zone, out = tmp_path / "zone", tmp_path / "runs"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_config(prepared, zone, out, export_every=0)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    process = subprocess.Popen([sys.executable, "-m", "ctrdistill", "follow", str(path)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        status_file = out / "f" / "status.json"
        for index in range(2):
            write_landing(SynthConfig(**SYNTH, drift=0.2), zone, 1, 600, first=index)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                if status_file.is_file() and json.loads(status_file.read_text())[
                        "partitions_committed"] == index + 1:
                    break
                assert process.poll() is None, process.communicate()[1][-2000:]
                time.sleep(0.2)
            else:
                pytest.fail(f"partition {index} was not committed in time")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert main(["follow", "--status", str(out / "f")]) == 0
    shown = capsys.readouterr().out
    assert f"committed: 2 partition(s), last {partition_name(1)}" in shown
    assert "waiting: 0 complete, 0 incomplete" in shown and "bundle versions: 0" in shown
    assert pl.read_parquet(out / "f" / "metrics.parquet")["auc"].is_finite().all()


@pytest.fixture
def s3_endpoint(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_follow_reads_partitions_from_an_s3_landing_zone(prepared, s3_endpoint, tmp_path):
    """What the docs say was tested for object storage: a local S3-protocol server (moto)."""
    s3fs = pytest.importorskip("s3fs")
    local = tmp_path / "landing"
    write_landing(SynthConfig(**SYNTH), local, 2, 600)
    s3 = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    s3.mkdir("logs")
    s3.put(str(local) + "/", "logs/landing/", recursive=True)
    s3.invalidate_cache()
    assert s3.exists(f"logs/landing/{partition_name(1)}/{MARKER}")
    config = _config(prepared, "s3://logs/landing", tmp_path / "runs", export_every=0)
    config["landing"]["storage_options"] = {"endpoint_url": s3_endpoint}
    result = follow(config, once=True)
    assert [p["name"] for p in result.history] == [partition_name(0), partition_name(1)]
    assert all(p["status"] == "done" and p["rows"] == 600 for p in result.history)


GROW = {"oov": "grow", "min_count": 2, "window": 2}


@pytest.fixture(scope="module")
def grown(prepared, landing, tmp_path_factory) -> tuple[Path, list]:
    """An uninterrupted follow with growing vocabularies, and what each growth did to the
    models' embedding tables: (old rows before, the same rows after) per table."""
    from ctrdistill.models.layers.embedding import FeatureEmbedding
    from ctrdistill.pipelines import follow as module

    out = tmp_path_factory.mktemp("grown")
    growths = []
    original = module.grow_embeddings

    def recording(model, sizes, optimizers=()):
        tables = [m for m in model.modules() if isinstance(m, FeatureEmbedding)]
        before = [t.table.weight.detach().clone() for t in tables]
        offsets = [dict(t.vocab_offsets) for t in tables]
        sized = [dict(t.vocab_sizes) for t in tables]
        added = original(model, sizes, optimizers)
        for table, rows, offset, size in zip(tables, before, offsets, sized, strict=True):
            growths.append([(rows[offset[o]:offset[o] + n],
                             table.field_table(o, n).detach().clone()) for o, n in size.items()])
        return added

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "grow_embeddings", recording)
        follow(_config(prepared, landing, out, vocabulary=GROW), once=True)
    return out / "f", growths


def test_vocabularies_grow_and_the_oov_rate_drops(grown, reference, prepared, landing):
    from ctrdistill.data.encode import PrepareState
    from ctrdistill.serving.graph import preprocessing_model, raw_inputs

    directory, growths = grown
    metrics = pl.read_parquet(directory / "metrics.parquet").filter(model="teacher")
    frozen = pl.read_parquet(reference / "metrics.parquet").filter(model="teacher")
    # the prepared vocabulary's rate is the frozen run's; the grown one is lower after growth
    assert metrics["oov_rate_prepared"].to_list() == frozen["oov_rate"].to_list()
    assert metrics["oov_rate"][0] == metrics["oov_rate_prepared"][0]
    assert (metrics["oov_rate"][1:] < 0.7 * metrics["oov_rate_prepared"][1:]).all()
    assert metrics["oov_rate"][2] < 0.5 * metrics["oov_rate_prepared"][2]
    assert metrics["vocabulary_added"][0] > 0 and metrics["vocabulary_rows"].is_sorted()
    # growth never moved or changed an old row (a table per model) at any boundary
    assert len(growths) >= 2 * 3
    for tables in growths:
        for before, after in tables:
            assert torch.equal(before, after)
    # the bundles carry the grown vocabularies: old ids keep their ids, the graph maps new ones
    base = PrepareState.load(prepared)
    bundle = PrepareState.load(directory / "bundles" / "small" / "v000002" / "prepare")
    state = _state(directory)
    for owner, vocab in base.encoder.vocabularies.items():
        served = bundle.encoder.vocabularies[owner].sort("id")
        assert served.head(len(vocab)).select("value", "id").equals(
            vocab.sort("id").select("value", "id"))
        assert served["value"].to_list()[len(vocab):] == state["vocabulary"]["added"].get(
            owner, {"values": []})["values"][:len(served) - len(vocab)]
    raw = pl.read_parquet(landing / partition_name(2) / "part-0.parquet")
    feeds = {spec.name: (raw[spec.name].cast(pl.String).fill_null("").to_numpy().astype(object)
                         if spec.dtype == "string" else
                         raw[spec.name].cast(pl.Float64).fill_null(np.nan).to_numpy()
                         ).reshape(-1, 1) for spec in raw_inputs(bundle)}
    session = ort.InferenceSession(preprocessing_model(bundle, 20).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    ids = session.run(["categorical"], feeds)[0]
    expected = bundle.encoder.blocks(bundle.encoder.features(bundle.encoder.clean(raw, "p", 0)))
    np.testing.assert_array_equal(ids, expected["categorical"])
    sizes = [base.feature_map.categorical[j].vocab_size for j in range(ids.shape[1])]
    assert (ids >= np.array(sizes)).any()  # grown ids reach the graph's output


@pytest.mark.parametrize("module, attr, n, before", [
    # growing the models after partition 1, before its commit
    ("ctrdistill.pipelines.follow", "_Follower._grow_models", 2, False),
    # labelling partition 2 with models grown at two boundaries
    ("ctrdistill.continuous.labels", "publish", 2, True),
])
def test_sigkill_then_restart_with_growth_equals_an_uninterrupted_run(
        prepared, landing, grown, tmp_path, module, attr, n, before):
    config = _config(prepared, landing, tmp_path / "runs", vocabulary=GROW)
    _run_killed(config, tmp_path, module, attr, n, before)
    follow(config, once=True)
    _assert_same_run(tmp_path / "runs" / "f", grown[0])
    _assert_same(_state(tmp_path / "runs" / "f")["vocabulary"], _state(grown[0])["vocabulary"])


def test_students_fall_back_to_hard_labels(prepared, landing, tmp_path, monkeypatch, caplog):
    verdicts = iter([None, "broken on purpose"])
    monkeypatch.setattr(_Follower, "_health_problem", lambda self, metrics: next(verdicts))
    guard = {"min_auc": 0.0, "fallback": "hard_labels"}
    with caplog.at_level(logging.WARNING, "ctrdistill"):
        follow(_config(prepared, landing, tmp_path, teacher_guard=guard), once=True)
    assert "students train on the hard labels" in caplog.text
    directory = tmp_path / "f"
    store = LabelStore(directory / "labels")
    assert [p["day"] for p in store.partitions("train")] == [1]  # nothing labelled after
    metrics = pl.read_parquet(directory / "metrics.parquet").filter(model="tiny")
    assert metrics["student_labels"].to_list() == ["none", "teacher", "hard_labels"]
    assert metrics["distilled"].to_list() == [False, True, False]
    state = _state(directory)
    assert "students" in state["processed"][2]["rows_per_second"]  # they trained on it
    assert (directory / "bundles" / "tiny" / "latest").read_text().strip() == "v000002"


def test_serve_switches_to_the_bundle_follow_exports_next(prepared, landing, tmp_path):
    """`serve` on a student's bundle folder written by follow serves its latest version, and
    switches to the next one follow exports while it serves."""
    import shutil

    import httpx

    from ctrdistill.serving import load_bundle
    from test_serve import served

    zone = tmp_path / "zone"
    for index in range(2):
        shutil.copytree(landing / partition_name(index), zone / partition_name(index))
    config = _config(prepared, zone, tmp_path / "runs", export_format="onnx",
                     students={"tiny": {"model": {"name": "lr"}}})
    follow(config, once=True)
    bundles = tmp_path / "runs" / "f" / "bundles" / "tiny"
    inputs = load_bundle(bundles / "v000001").inputs
    raw = pl.read_parquet(landing / partition_name(2) / "part-0.parquet").head(3)
    rows = raw.select(pl.col(i["name"]).cast(pl.String) if i["dtype"] == "string"
                      else pl.col(i["name"]) for i in inputs).to_dicts()
    with served(bundles, reload_interval=0.05) as address, httpx.Client(base_url=address) as client:
        assert client.get("/metadata").json()["version"] == "v000001"
        first = client.post("/predict", json={"rows": rows})
        shutil.copytree(landing / partition_name(2), zone / partition_name(2))
        follow(config, once=True)
        deadline = time.monotonic() + 30
        while client.get("/metadata").json()["version"] != "v000002":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = client.post("/predict", json={"rows": rows})
    assert first.status_code == second.status_code == 200
    # the student trained on partition 2 in between: the new version scores differently
    assert first.json()["probabilities"] != second.json()["probabilities"]


def test_the_fallback_is_the_version_from_before_the_streak(prepared, tmp_path, monkeypatch):
    """A teacher behind the students on partition 2 (not yet flagged) and flagged on 3: the
    fallback for 3 is partition 1's teacher, not partition 2's, which opened the streak."""
    zone = tmp_path / "zone"
    write_landing(SynthConfig(**SYNTH), zone, 4, ROWS)
    streak = iter([(0, None), (1, None), (2, "behind the students for 2 partition(s)")])

    def verdict(self, metrics):
        self.state["behind"], problem = next(streak)
        return problem

    monkeypatch.setattr(_Follower, "_health_problem", verdict)
    guard = {"behind_students_for": 2}
    follow(_config(prepared, zone, tmp_path, export_every=0, teacher_guard=guard), once=True)
    store = LabelStore(tmp_path / "f" / "labels")
    assert [p["teacher_version"] for p in store.partitions("train")] == [0, 1, 0]
    labels = pl.read_parquet(tmp_path / "f" / "metrics.parquet").filter(model="teacher")
    assert labels["student_labels"].to_list()[1:] == ["teacher", "teacher",
                                                      "last_healthy_teacher"]
