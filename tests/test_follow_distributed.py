"""`follow` on 2 gloo processes: the ranks share each partition's training and labelling, rank 0
commits, and a group restarted after losing a rank resumes from the last committed partition,
ending where 1 process ends."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml

from conftest import make_feature_map, prepare_synthetic
from ctrdistill.continuous.synthetic import partition_name, write_landing
from ctrdistill.data.synthetic import SynthConfig
from ctrdistill.models import build_model
from ctrdistill.pipelines.follow import STATE, follow
from ctrdistill.pipelines.load import load_run
from ctrdistill.strategies.plain import PlainStrategy
from ctrdistill.training import distributed
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.trainer import Trainer
from test_distributed import env, torchrun

SYNTH = {"max_vocab": 300, "numeric_fields": 3, "categorical_fields": 6, "seed": 5}
ROWS = 2000
# SGD and no dropout: 2 ranks with half of each batch then train as 1 process (see
# test_distributed), so the runs can be compared parameter by parameter.
TRAIN = {"epochs": 1, "batch_size": 500, "optimizer": "sgd", "lr": 0.1, "progress": False,
         "threads": 1}
STEPS = 4  # per model and partition: ROWS / batch_size

KILL_RANK_1 = """
import os, signal, sys
from ctrdistill.training.trainer import Trainer

step = Trainer.train_step
calls = 0

def killed_once(self, *args):
    global calls
    calls += 1
    if os.environ["TORCHELASTIC_RESTART_COUNT"] == "0" and os.environ["RANK"] == "1" \\
            and calls == {n}:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, *args)

Trainer.train_step = killed_once
from ctrdistill.cli import main
sys.exit(main(["follow", sys.argv[1], "--once"]))
"""


def _config(prepared: Path, landing: Path, out: Path) -> dict:
    """Growing vocabularies, and a guard that finds the teacher unhealthy on partition 1 only
    (its AUC there is about 0.545), so that the students learn from the hard labels there: the
    aux student's loss then leaves its aux head out, which DDP must expect."""
    dnn = {"name": "dnn", "embedding_dim": 4, "dropout": 0.0}
    return {"name": "f", "output_dir": str(out), "landing": {"path": str(landing)},
            "data": str(prepared), "train": TRAIN, "export_every": 1,
            "export_format": "torchscript", "vocabulary": {"oov": "grow", "min_count": 2},
            "teacher_guard": {"min_auc": 0.55, "fallback": "hard_labels"},
            "teacher": dnn | {"hidden_units": [16]},
            "students": {"tiny": {"model": {"name": "lr"}},
                         "small": {"model": dnn | {"hidden_units": [8]},
                                   "strategy": {"kind": "aux"}}}}


def _state(directory: Path) -> dict:
    return torch.load(directory / STATE, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, Path]:
    """A prepared dataset and four partitions with ids it has never seen."""
    root = tmp_path_factory.mktemp("follow-ddp")
    prepared = prepare_synthetic(root / "data", rows=3000, **SYNTH)
    write_landing(SynthConfig(**SYNTH, drift=0.2), root / "all", 4, ROWS, new_ids_rate=0.3)
    return prepared, root / "all"


@pytest.fixture(scope="module")
def reference(source, tmp_path_factory) -> Path:
    """One process over the four partitions."""
    prepared, landed = source
    out = tmp_path_factory.mktemp("reference")
    follow(_config(prepared, landed, out), once=True)
    return out / "f"


@pytest.fixture(scope="module")
def group_run(source, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess, dict]:
    """`follow --once --nproc 2` over the first two partitions: its config, landing zone,
    process, and what it left (the next test follows on in the same directory)."""
    prepared, landed = source
    root = tmp_path_factory.mktemp("group")
    zone = root / "zone"
    for index in range(2):
        shutil.copytree(landed / partition_name(index), zone / partition_name(index))
    path = root / "follow.yaml"
    path.write_text(yaml.safe_dump(_config(prepared, zone, root / "runs")))
    run = subprocess.run([sys.executable, "-m", "ctrdistill", "follow", str(path), "--once",
                          "--nproc", "2"], env=env(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    directory = root / "runs" / "f"
    left = {"state": _state(directory),
            "status": json.loads((directory / "status.json").read_text()),
            "latest": (directory / "bundles" / "small" / "latest").read_text().strip(),
            "files": {p.name for p in directory.iterdir()}}
    return path, zone, run, left


def test_two_processes_commit_each_partition_once(group_run, reference):
    _, _, run, left = group_run
    state = left["state"]
    assert [(p["name"], p["status"]) for p in state["processed"]] == [
        (partition_name(0), "done"), (partition_name(1), "done")]
    assert run.stdout.count("committed: 2 partition(s)") == 1  # rank 0 alone reports
    assert left["status"]["partitions_committed"] == 2 and left["status"]["bundle_versions"] == 1
    assert state["store"]["partitions"] == {}  # partition 1: on the hard labels
    # progressive validation over whole partitions, as one process measures it
    metrics = state["metrics"]
    expected = [m for m in _state(reference)["metrics"] if m["index"] < 2]
    assert [(m["model"], m["rows"]) for m in metrics] == [(m["model"], ROWS) for m in expected]
    for got, want in zip(metrics, expected, strict=True):
        for key in ("auc", "logloss", "oov_rate", "vocabulary_added", "vocabulary_rows"):
            assert got[key] == pytest.approx(want[key], abs=1e-5), (got["model"], key)
    assert state["metrics"][0]["vocabulary_added"] > 0
    assert [m["student_labels"] for m in metrics if m["model"] == "small"] == [
        "none", "hard_labels"]
    assert left["latest"] == "v000001"
    assert {"metrics.parquet", "metrics.png", "labels", "students"} <= left["files"]


def test_a_restarted_group_resumes_and_ends_as_one_process(group_run, source, reference,
                                                           tmp_path):
    """Two more partitions land; rank 1 dies while the students train on the last one, and
    torchrun restarts the group, which redoes only that partition."""
    path, zone, _, _ = group_run
    _, landed = source
    for index in (2, 3):
        shutil.copytree(landed / partition_name(index), zone / partition_name(index))
    script = tmp_path / "child.py"
    # a rank's calls of train_step: 3 models x STEPS on partition 2, then partition 3's first
    script.write_text(textwrap.dedent(KILL_RANK_1.format(n=3 * STEPS + 2)))
    run = torchrun(str(script), str(path), restarts=1)
    assert run.returncode == 0, run.stderr[-3000:]
    for index in (2, 3):  # committed once each: partition 2 before the kill, 3 after it
        assert run.stderr.count(f"partition {partition_name(index)} ({ROWS} rows)") == 1
    assert f"partition {partition_name(1)} (" not in run.stderr
    directory = Path(yaml.safe_load(path.read_text())["output_dir"]) / "f"
    state, expected = _state(directory), _state(reference)
    assert [p["name"] for p in state["processed"]] == [partition_name(i) for i in range(4)]
    assert [m["student_labels"] for m in state["metrics"] if m["model"] == "small"] == [
        "none", "hard_labels", "teacher", "teacher"]
    # every rank grew the vocabularies by the whole partitions' counts, as one process does
    assert state["vocabulary"] == expected["vocabulary"]
    for model, learner in expected["learners"].items():
        got = state["learners"][model]["strategy"]
        for key, value in learner["strategy"].items():
            torch.testing.assert_close(got[key], value, rtol=0, atol=1e-5, msg=f"{model} {key}")
    for name, entry in expected["store"]["partitions"].items():
        labels = pl.read_parquet(directory / "labels" / entry["file"])
        want = pl.read_parquet(reference / "labels" / entry["file"])
        assert labels["row_id"].equals(want["row_id"]), name
        difference = labels["teacher_logits"].to_numpy() - want["teacher_logits"].to_numpy()
        assert abs(difference).max() < 1e-3, name
    # the last exported student, with its grown preprocessing, scores raw logs as one
    # process's does
    assert (directory / "bundles" / "small" / "latest").read_text().strip() == "v000003"
    raw = landed / partition_name(3) / "part-0.parquet"
    got, want = (pl.concat(load_run(d / "students" / "small", device="cpu").score_raw(raw))
                 for d in (directory, reference))
    assert (got["logit"] - want["logit"]).abs().max() < 1e-3


def test_a_larger_group_resumes_a_smaller_ones_state():
    """A follow directory one process started may go on with two: the extra rank takes a
    saved rank's RNG state."""
    trainer = Trainer(PlainStrategy(build_model({"name": "lr"}, make_feature_map())),
                      TrainConfig(progress=False))
    state = trainer.learner_state()
    torch.rand(3)
    trainer.group = distributed.Group(rank=1, world=2, local_rank=1, backend="gloo")
    trainer.load_learner_state(state)
    assert torch.equal(torch.get_rng_state(), state["rng"][0][0])
