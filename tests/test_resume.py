"""Resumable runs: a run killed with SIGKILL mid-epoch and resumed ends exactly where the
uninterrupted run does (same seed): model, optimizer, RNG and loader position all come back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import ctrdistill
import ctrdistill as cd
from conftest import prepare_synthetic
from ctrdistill.cli import main
from ctrdistill.errors import CtrDistillError
from ctrdistill.storage import RESUME_STATE

# 2 epochs of 26 steps, evaluated at every epoch's end and checkpointed every 4 steps; dropout
# on, so a resumed run repeats the same dropout masks only if the RNG state comes back.
TRAIN = {"epochs": 2, "batch_size": 128, "checkpoint_every_steps": 4, "threads": 1,
         "early_stop": None, "lr_plateau": None, "progress": False}
MODEL = {"name": "dnn", "embedding_dim": 4, "hidden_units": [32, 16], "dropout": 0.2}
KILL_AT_STEP = 39  # mid-epoch 1; the last checkpoint before it is step 36

CHILD = """
import os, signal, sys
from ctrdistill.training.trainer import Trainer
import ctrdistill as cd

step = Trainer.train_step
calls = 0

def killed_midway(self, *args):
    global calls
    calls += 1
    if calls == {kill}:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, *args)

Trainer.train_step = killed_midway
getattr(cd, sys.argv[1])(sys.argv[2])
"""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepare_synthetic(tmp_path_factory.mktemp("resume"), rows=4000, max_vocab=200)


def config_file(prepared: Path, out: Path, name: str, verb: str = "train", **train) -> Path:
    models = {"train": {"model": MODEL},
              "kdef": {"backbone": MODEL, "num_subnetworks": 2},
              "mutual": {"peers": [MODEL, MODEL | {"name": "deepfm"}]}}
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "data": str(prepared), "output_dir": str(out),
                                    **models[verb], "train": TRAIN | train}))
    return path


def kill_midway(config: Path, verb: str = "train") -> subprocess.CompletedProcess:
    source = str(Path(ctrdistill.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (source, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD).format(
        kill=KILL_AT_STEP), verb, str(config)], env=env, capture_output=True, text=True)


def comparable(run: Path) -> dict:
    """What a resumed run must reproduce: every metric and the history, minus wall times."""
    metrics = json.loads((run / "metrics.json").read_text())
    timing = ("train_samples_per_second", "inference_samples_per_second", "latency_ms")
    history = [{k: v for k, v in r.items() if k != "samples_per_second"}
               for r in json.loads((run / "history.json").read_text())]
    return {"metrics": {k: v for k, v in metrics.items() if k not in timing},
            "history": history}


@pytest.mark.parametrize("verb", ["train", "kdef", "mutual"])
def test_a_killed_run_resumes_to_the_same_result(prepared: Path, tmp_path: Path,
                                                 verb: str) -> None:
    whole = getattr(cd, verb)(config_file(prepared, tmp_path, "whole", verb))
    config = config_file(prepared, tmp_path, "cut", verb)
    child = kill_midway(config, verb)
    assert child.returncode == -9, child.stderr
    partial = tmp_path / ".cut.partial"
    assert not (tmp_path / "cut").exists() and (partial / RESUME_STATE).is_file()
    assert main([verb, str(config), "--resume"]) == 0
    assert not partial.exists()
    assert comparable(tmp_path / "cut") == comparable(whole.path)
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["steps"] == 52


def test_resume_refuses_another_config_and_a_fresh_run_clears_the_leftover(
        prepared: Path, tmp_path: Path) -> None:
    config = config_file(prepared, tmp_path, "cut")
    assert kill_midway(config).returncode == -9
    changed = config_file(prepared, tmp_path, "cut", lr=0.01)
    with pytest.raises(CtrDistillError, match=r"another config \(differs in: train.lr\)"):
        cd.train(changed, resume=True)
    assert (tmp_path / ".cut.partial" / RESUME_STATE).is_file()  # still there to resume
    result = cd.train(changed)  # without resume: the leftover is removed, the run starts over
    assert result.metrics["steps"] == 52 and not (tmp_path / ".cut.partial").exists()


def test_resume_without_a_leftover_starts_afresh(prepared: Path, tmp_path: Path) -> None:
    result = cd.train(config_file(prepared, tmp_path, "fresh"), resume=True)
    assert result.metrics["steps"] == 52
