"""Mistakes found late or silently: a search on missing or damaged data, a CSV header naming a
schema column twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

import ctrdistill
from conftest import cli_prepared
from ctrdistill.cli import main

SPACE = {"models": ["lr"], "lr": {"low": 1e-3, "high": 1e-2, "log": True}}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a child: Optuna writes to the real stderr, which only a child's capture sees."""
    source = str(Path(ctrdistill.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (source, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "ctrdistill", *args], capture_output=True,
                          text=True, env=env)


@pytest.fixture(scope="module")
def damaged_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("late")
    cli_prepared(root, rows=800, max_vocab=30)
    shard = root / "prep" / "train" / "part-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:100])
    return root / "prep"


@pytest.mark.parametrize("which", ["missing", "damaged"])
def test_search_on_bad_data_is_one_line_and_leaves_nothing(damaged_data: Path, tmp_path: Path,
                                                           which: str) -> None:
    data = tmp_path / "nothere" if which == "missing" else damaged_data
    config = {"name": "s", "data": str(data), "output_dir": str(tmp_path / "searches"),
              "space": SPACE, "objective": "teacher", "trials": 1,
              "train": {"epochs": 1, "batch_size": 256, "progress": False}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(config))
    result = run_cli("search", str(tmp_path / "s.yaml"))
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()
             or "failed" in line or "Traceback" in line]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("ctrdistill search: error: "), lines[0]
    assert not (tmp_path / "searches").exists()


def test_a_header_naming_a_schema_column_twice_is_refused(tmp_path: Path, capsys) -> None:
    frame = pl.DataFrame({"label": [0, 1, 0, 1], "a": ["x", "y", "x", "z"],
                          "b": [1.0, 2.0, 3.0, 4.0]})
    text = frame.write_csv().replace("label,a,b", "label,a,a")
    (tmp_path / "raw.csv").write_text(text)
    config = {"recipe": "csv", "input": str(tmp_path / "raw.csv"),
              "output": str(tmp_path / "out"),
              "schema": {"fields": [{"name": "a"}]}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(config))
    assert main(["prepare", "--config", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err
    assert "the header names column 'a' 2 times" in err, err
    assert not (tmp_path / "out").exists()


def test_a_repeated_column_no_field_reads_is_harmless(tmp_path: Path) -> None:
    frame = pl.DataFrame({"label": [0, 1, 0, 1], "a": ["x", "y", "x", "z"]})
    text = frame.write_csv().replace("label,a", "label,a,junk,junk").replace("\n", ",1,2\n")
    text = text.replace("label,a,junk,junk,1,2", "label,a,junk,junk")
    (tmp_path / "raw.csv").write_text(text)
    config = {"recipe": "csv", "input": str(tmp_path / "raw.csv"),
              "output": str(tmp_path / "out"), "schema": {"fields": [{"name": "a"}]}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(config))
    assert main(["prepare", "--config", str(tmp_path / "p.yaml")]) == 0
