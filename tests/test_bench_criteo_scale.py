"""The Criteo-scale benchmark (issue 31) scaled down to a few thousand rows, through its command
line as BENCHMARKS.md runs it, so the script cannot rot between its multi-hour runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["synth", "prepare", "teacher", "reference subset", "teacher reference",
          "teacher scoring", "label train", "label valid+test", "label reference", "student",
          "student reference", "predict", "export"]


def test_every_stage_timed_and_resumed(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks.bench_criteo_scale", "--workdir", str(tmp_path),
               "--rows", "20000", "--max-vocab", "5000", "--chunk-rows", "5000",
               "--reference-rows", "4000", "--predict-rows", "6000", "--batch", "1024",
               "--nproc", "1"]  # one process: torchrun's start-up would double the test's time
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "criteo_scale.json").read_text())
    stages = results["stages"]
    assert list(stages) == STAGES
    for name, stage in stages.items():
        assert stage["returncode"] == 0, name
        assert 0 < stage["max_rss_gib"] < 8, name
        assert stage["wall_seconds"] > 0 and stage["cpu_seconds"] > 0, name
    # The tree holds `time` and the stage's processes: at least its largest process.
    assert stages["teacher"]["tree_peak_rss_gib"] >= stages["teacher"]["max_rss_gib"] - 0.01
    assert stages["synth"]["rows"] == stages["prepare"]["rows"] == 20_000
    assert stages["predict"]["rows"] == 10_000  # two raw parts of 5,000 cover 6,000 rows
    assert stages["teacher reference"]["rows"] == 4000
    assert all(s["train_samples_per_second"] > 0 for n, s in stages.items()
               if n in ("teacher", "student", "teacher reference", "student reference"))
    assert set(results["goals"]) >= {"prepare rows/s >= 400k",
                                     "teacher samples/s full / reference (>= 0.9)",
                                     "label rows/s / teacher scoring rows/s (>= 1)"}
    assert (tmp_path / "bundle").is_dir()
    assert "| label train |" in (tmp_path / "criteo_scale.md").read_text()
    # A rerun finds every stage finished and runs none.
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0
    assert "stage synth:" not in again.stderr
    assert json.loads((tmp_path / "criteo_scale.json").read_text())["stages"] == stages
    table = subprocess.run([*command, "--table"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120).stdout
    assert "| prepare |" in table and "rows/CPU s" in table
