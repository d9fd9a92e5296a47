"""Devices, precision and several processes (DDP under torchrun, gloo on the CPU): the same
configs give the same results on 1 and 2 processes, and a group that loses a rank resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml

import ctrdistill
import ctrdistill as cd
from conftest import prepare_synthetic
from ctrdistill.cli import main
from ctrdistill.config import validate_config
from ctrdistill.errors import CtrDistillError
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.device import resolve_device

MODEL = {"name": "dnn", "embedding_dim": 4, "hidden_units": [32, 16], "dropout": 0.0}
# SGD: Adam divides by the gradient's running scale, which turns the last-bit differences of
# an all-reduced mean into visible ones on rows with near-zero gradients.
TRAIN = {"epochs": 2, "batch_size": 256, "optimizer": "sgd", "lr": 0.1, "early_stop": None,
         "lr_plateau": None, "threads": 1, "progress": False, "checkpoint_every_steps": 3}


def env() -> dict[str, str]:
    source = str(Path(ctrdistill.__file__).parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (source, os.environ.get("PYTHONPATH")) if p)}


def torchrun(*args: str, restarts: int = 0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "--max-restarts", str(restarts), *args], env=env(), capture_output=True, text=True)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepare_synthetic(tmp_path_factory.mktemp("ddp"), rows=4000, max_vocab=200)


def config_file(prepared: Path, out: Path, name: str, **train) -> Path:
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "data": str(prepared), "output_dir": str(out),
                                    "model": MODEL, "train": TRAIN | train}))
    return path


def parameters(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["state_dict"]


def test_device_and_precision_are_validated() -> None:
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(CtrDistillError, match="train: device: String should match"):
        validate_config(TrainConfig, {"device": "tpu"}, "train")
    with pytest.raises(CtrDistillError, match="train: precision: Input should be"):
        validate_config(TrainConfig, {"precision": "fp8"}, "train")
    if not torch.cuda.is_available():
        with pytest.raises(CtrDistillError, match="this machine has no CUDA device"):
            resolve_device("cuda:0")


def test_cuda_on_a_machine_without_one_is_one_clear_error(prepared, tmp_path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert main(["train", str(config_file(prepared, tmp_path, "gpu")),
                 "--set", "train.device=cuda"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no CUDA device" in error[0]
    assert not any(tmp_path.glob(".gpu*")) and not (tmp_path / "gpu").exists()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_the_cpu(prepared, tmp_path, precision) -> None:
    result = cd.train(config_file(prepared, tmp_path, precision, precision=precision,
                                  optimizer="adam", lr=0.01))
    losses = [r["train"]["loss"] for r in result.history]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert 0.5 < result.metrics["test"]["auc"] <= 1
    # parameters stay fp32 and the checkpoint loads anywhere
    assert all(v.dtype == torch.float32 for v in parameters(result.path).values()
               if v.is_floating_point())
    run = cd.load_run(result.path, device="auto")
    assert abs(run.evaluate(prepared)["auc"] - result.metrics["test"]["auc"]) < 1e-3


def test_two_processes_train_as_one(prepared, tmp_path) -> None:
    """2 ranks with half of each global batch = 1 process with the whole batch (gloo)."""
    one = cd.train(config_file(prepared, tmp_path, "one"))
    two = torchrun("-m", "ctrdistill", "train", str(config_file(prepared, tmp_path, "two")))
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = parameters(one.path), parameters(tmp_path / "two")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-5, msg=key)
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["steps"] == one.metrics["steps"] == 26
    for split in ("valid", "test"):
        for name in ("auc", "logloss"):
            assert metrics[split][name] == pytest.approx(one.metrics[split][name], abs=1e-4)
    assert "run two" in two.stderr and two.stderr.count("run two:") == 1  # rank 0 logs alone


def test_two_processes_label_the_same_store(prepared, tmp_path) -> None:
    teacher = cd.train(config_file(prepared, tmp_path, "teacher", epochs=1)).path
    cd.label(teachers=[teacher], data=prepared, output=tmp_path / "one", progress=False)
    two = torchrun("-m", "ctrdistill", "label", str(teacher), "--data", str(prepared),
                   "--output", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    manifests = [json.loads((tmp_path / s / "manifest.json").read_text()) for s in ("one", "two")]
    one_parts, two_parts = (m["partitions"] for m in manifests)
    assert list(one_parts) == list(two_parts) and len(one_parts) > 2
    for key, part in one_parts.items():
        other = two_parts[key]
        assert {k: part[k] for k in ("file", "rows", "row_ids", "teacher_version")} == {
            k: other[k] for k in ("file", "rows", "row_ids", "teacher_version")}
        assert pl.read_parquet(tmp_path / "one" / part["file"]).equals(
            pl.read_parquet(tmp_path / "two" / other["file"]))


KILL_RANK_1 = """
import logging, os, signal, sys
from ctrdistill.training.trainer import Trainer
import ctrdistill as cd

logging.basicConfig(level=logging.INFO, format="%(message)s")

step = Trainer.train_step
calls = 0

def killed_once(self, *args):
    global calls
    calls += 1
    first_attempt = os.environ["TORCHELASTIC_RESTART_COUNT"] == "0"
    if first_attempt and os.environ["RANK"] == "1" and calls == 17:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, *args)

Trainer.train_step = killed_once
cd.train(sys.argv[1])
"""


def test_a_killed_rank_restarts_the_group_which_resumes(prepared, tmp_path) -> None:
    whole = cd.train(config_file(prepared, tmp_path, "whole"))
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(KILL_RANK_1))
    run = torchrun(str(script), str(config_file(prepared, tmp_path, "cut")), restarts=1)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "resuming at epoch 1, step 15" in run.stderr  # the last checkpoint before the kill
    metrics = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert metrics["steps"] == whole.metrics["steps"]
    for split in ("valid", "test"):
        assert metrics[split]["auc"] == pytest.approx(whole.metrics[split]["auc"], abs=1e-4)
    a, b = parameters(whole.path), parameters(tmp_path / "cut")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-5, msg=key)


@pytest.mark.parametrize("verb", ["distill", "kdef"])
def test_strategies_train_under_ddp(prepared, tmp_path, verb) -> None:
    """A gated aux distillation from live teachers, and a KDEF ensemble with sparse embedding
    gradients (gloo all-reduces them), run as 2 processes and write one complete run."""
    tiny = {"name": "dnn", "embedding_dim": 4, "hidden_units": [16]}
    train = {"epochs": 1, "batch_size": 256, "threads": 1, "progress": False,
             "early_stop": {"patience": 1}}
    config = {"distill": {"teachers": [{"model": tiny, "name": "t1"},
                                       {"model": tiny | {"name": "deepfm"}, "name": "t2"}],
                          "student": tiny, "strategy": {"ensemble": "gate", "kind": "aux"}},
              "kdef": {"backbone": tiny, "num_subnetworks": 2,
                       "train": train | {"sparse_embedding": True}}}[verb]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "r", "data": str(prepared),
                                    "output_dir": str(tmp_path), "train": train} | config))
    run = subprocess.run([sys.executable, "-m", "ctrdistill", verb, str(path), "--nproc", "2"],
                         env=env(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    extra = {"distill": "aux.auc", "kdef": "sub1.auc"}[verb]
    assert 0 <= metrics["test"]["auc"] <= 1 and extra in metrics["test"]
    assert run.stdout.count("run saved to") == 1  # rank 0 alone reports
