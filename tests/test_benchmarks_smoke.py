"""The benchmark scripts against the current library: every one imports (a renamed or removed
name fails here, not hours into a benchmark), and one runs end to end on tiny data through its
command line, as BENCHMARKS.md runs them (`python -m benchmarks.bench_X` from the repository
root)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(path.stem for path in (ROOT / "benchmarks").glob("bench_*.py"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_imports(name: str) -> None:
    # Importing must run nothing: the work is in main(), under `if __name__ == "__main__"`.
    assert callable(importlib.import_module(f"benchmarks.{name}").main)


def test_zoo_table_end_to_end(tmp_path: Path) -> None:
    # The cheapest script that goes through synth, prepare, a data subset and cd.train.
    command = [sys.executable, "-m", "benchmarks.bench_zoo", "--workdir", str(tmp_path),
               "--rows", "2000", "--train-rows", "1000", "--models", "lr"]
    done = subprocess.run(command, cwd=ROOT, env=os.environ | {"BENCH_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    table = (tmp_path / "zoo_1000.md").read_text()
    assert "| lr |" in table
    assert (tmp_path / "zoo-1000" / "lr" / "metrics.json").is_file()


def test_follow_experiment_end_to_end(tmp_path: Path) -> None:
    # The 48-partition experiment of BENCHMARKS.md §13 at a few thousand rows: its six runs,
    # the broken teacher's snapshot, the tables and the plots.
    command = [sys.executable, "-m", "benchmarks.bench_follow", "--workdir", str(tmp_path),
               "--partitions", "4", "--rows-per-partition", "1500", "--warmup", "1",
               "--break-at", "2", "--export-every", "2"]
    done = subprocess.run(command, cwd=ROOT, env=os.environ | {"BENCH_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    report = (tmp_path / "follow.md").read_text()
    assert "| broken, guard |" in report and "| leaked teacher |" in report
    assert (tmp_path / "follow_variants.png").stat().st_size > 10_000
    assert (tmp_path / "runs" / "main" / "follow" / "bundles" / "tiny-kd" / "latest").is_file()


def test_cost_table_end_to_end(tmp_path: Path) -> None:
    # §4.4's cost table from fresh models: the teachers, their ensemble and the student, each
    # cheaper than the ensemble.
    command = [sys.executable, "-m", "benchmarks.bench_cost", "--table", "distill",
               "--workdir", str(tmp_path), "--rows", "3000"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = {row["model"]: row for row in json.loads((tmp_path / "cost_distill.json").read_text())}
    assert list(rows) == ["teacher dcnv2", "teacher deepfm", "teacher pnn", "teacher ensemble",
                          "student base", "student medium", "student small"]
    assert rows["teacher ensemble"]["cheaper_at_4096"] == 1.0
    assert all(rows[name]["cheaper_at_4096"] > 1 and rows[name]["cheaper_at_1"] > 1
               for name in rows if name != "teacher ensemble")
    assert "| student base |" in (tmp_path / "cost_distill.md").read_text()
