"""bench_gpu's CPU mode (`--quick`), through its command line: every stage of the GPU checks
runs and passes on the CPU, so the script that will spend scarce GPU minutes cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_mode_runs_every_stage_on_the_cpu(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_gpu", "--quick", "--device", "cpu",
         "--workdir", str(tmp_path / "work"), "--report", str(tmp_path / "report")],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env=os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stages = json.loads((tmp_path / "report" / "gpu.json").read_text())["stages"]
    assert list(stages) == ["zoo", "syncs", "pinned", "ddp one process",
                            "resume and cpu evaluation", "verbs", "speed"]
    assert all(stage["ok"] for stage in stages.values())
    assert stages["zoo"]["combinations"] == 24 and stages["zoo"]["failed"] == 0
    assert stages["resume and cpu evaluation"]["max_parameter_difference"] < 1e-5
    assert stages["verbs"]["label_rows_per_second"] > 0
    assert [r["precision"] for r in stages["speed"]["table"]] == ["fp32", "bf16"]
    assert "| dnn | 512 | fp32 |" in (tmp_path / "report" / "gpu.md").read_text()
