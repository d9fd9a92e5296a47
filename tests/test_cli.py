"""The command line: verbs work end to end; user mistakes exit 2 with one line, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ctrdistill.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ctrdistill.cli", *args], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    assert main(["synth", "--output", str(root / "raw"), "--rows", "5000",
                 "--set", "max_vocab=300"]) == 0
    assert main(["prepare", "--recipe", "synthetic", "--input", str(root / "raw"),
                 "--output", str(root / "prep"), "--protocol", "x4"]) == 0
    return root / "prep"


def test_train_evaluate_predict(prepared: Path, tmp_path: Path, capsys) -> None:
    config = {"name": "lr", "data": str(prepared), "output_dir": str(tmp_path / "runs"),
              "model": {"name": "lr"}, "train": {"epochs": 1, "batch_size": 512}}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--set", "train.lr=0.01"]) == 0
    run = tmp_path / "runs" / "lr"
    assert (run / "checkpoint.pt").is_file()
    assert "lr" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--data", str(prepared), "--json"]) == 0
    assert main(["predict", str(run), "--data", str(prepared), "--output",
                 str(tmp_path / "s.parquet")]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prepare", "--recipe", "critero", "--input", "x", "--output", "y"], "did you mean"),
        (["train", "missing.yaml"], "config file not found"),
        (["evaluate", "no-such-run", "--data", "no-such-data"], "not found"),
        (["synth", "--output", "out", "--rows", "0"], "rows"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args: list[str], message: str, tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "ctrdistill.cli", *args], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_misspelled_key_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ndata: .\nmodel: {name: dnn}\ntrian: {epochs: 1}\n")
    result = run_cli("train", str(path))
    assert result.returncode == 2
    assert "unknown key 'trian'" in result.stderr and "did you mean 'train'" in result.stderr


def test_demo_runs_the_whole_flow(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    assert main(["demo", "--rows", "4000", "--workdir", str(workdir)]) == 0
    rows = json.loads((workdir / "results.json").read_text())
    assert [r["model"] for r in rows] == ["teacher dcnv2", "student dnn-student", "dnn alone"]
    assert all("auc_gap" in r for r in rows)
    assert main(["demo", "--rows", "4000", "--workdir", str(workdir)]) == 2  # exists
