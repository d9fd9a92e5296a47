"""Each verb imports only what it uses: `prepare` loads no torch and no matplotlib, scoring new
raw logs no matplotlib, scikit-learn or SciPy (start-up times: BENCHMARKS.md, "Start-up")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

import ctrdistill
from ctrdistill.cli import main

HEAVY = ("torch", "matplotlib")
RAW = Path(__file__).parent / "fixtures" / "raw" / "criteo" / "train.txt"


def imported(*args: str) -> set[str]:
    """The modules a fresh `python -X importtime -m ctrdistill ARGS` process imported."""
    source = str(Path(ctrdistill.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (source, os.environ.get("PYTHONPATH")) if p)}
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "ctrdistill", *args],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line.split("|")[-1].strip() for line in run.stderr.splitlines()
             if line.startswith("import time:")]
    return set(lines)


def top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_prepare_imports_neither_torch_nor_matplotlib(tmp_path: Path) -> None:
    for args in (["--help"], ["--recipe", "criteo", "--input", str(RAW),
                              "--output", str(tmp_path / "out"), "--quiet"]):
        modules = imported("prepare", *args)
        assert "ctrdistill.data.prepare" in modules  # its flags come from PrepareConfig
        assert not top(modules) & set(HEAVY), args
    assert (tmp_path / "out" / "feature_map.json").is_file()


def test_train_help_imports_torch() -> None:
    """The check above can fail: a verb that needs torch is seen importing it."""
    assert "torch" in imported("train", "--help")


def test_predict_on_raw_logs_imports_no_plotting_nor_metrics(tmp_path: Path) -> None:
    """It needs torch, to read the run's checkpoint."""
    assert main(["prepare", "--recipe", "criteo", "--input", str(RAW), "--output",
                 str(tmp_path / "prep"), "--quiet"]) == 0
    config = {"name": "lr", "data": str(tmp_path / "prep"), "output_dir": str(tmp_path),
              "model": {"name": "lr"}, "train": {"epochs": 1, "batch_size": 64}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp_path / "train.yaml"), "--quiet"]) == 0
    modules = top(imported("predict", str(tmp_path / "lr"), "--input", str(RAW), "--output",
                           str(tmp_path / "scores.parquet"), "--quiet"))
    assert "torch" in modules and not modules & {"matplotlib", "sklearn", "scipy"}
    assert (tmp_path / "scores.parquet").is_file()
