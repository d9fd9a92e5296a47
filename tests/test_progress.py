"""Off a terminal, progress is plain periodic lines with rate and ETA, never carriage returns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ctrdistill
from ctrdistill.progress import LogLines


def test_log_lines_report_rate_and_eta_at_the_interval(capsys) -> None:
    now = [0.0]
    lines = LogLines(1000, "prepare: encode", "rows", interval=30.0, clock=lambda: now[0])
    now[0] = 10.0
    lines.update(100)  # before the interval: silent
    assert capsys.readouterr().err == ""
    now[0] = 40.0
    lines.update(300)
    lines.set_postfix(loss="0.4512")
    now[0] = 50.0
    lines.update(500)
    now[0] = 60.0
    lines.update(100)
    lines.close()  # the end, once more
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "prepare: encode: 400 rows of 1,000 (40%), 10 rows/s, ETA 1:00",
        "prepare: encode: 1,000 rows of 1,000 (100%), 17 rows/s, loss 0.4512",
    ]


def test_short_work_and_failed_work_print_no_closing_line(capsys) -> None:
    lines = LogLines(None, "label", "rows")
    lines.update(5)
    lines.close()
    assert capsys.readouterr().err == ""


def test_a_redirected_log_has_no_carriage_returns(tmp_path: Path) -> None:
    source = str(Path(ctrdistill.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (source, os.environ.get("PYTHONPATH")) if p)}
    log = tmp_path / "log.txt"
    with log.open("w") as handle:
        code = subprocess.run([sys.executable, "-m", "ctrdistill", "synth", "--output",
                               str(tmp_path / "raw"), "--rows", "500"], stderr=handle,
                              stdout=subprocess.DEVNULL, env=env).returncode
    assert code == 0
    assert "\r" not in log.read_text()
