"""The command line: verbs work end to end; user mistakes exit 2 with one line, no traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

import ctrdistill
from conftest import cli_prepared
from ctrdistill import cli
from ctrdistill.cli import main
from ctrdistill.storage import atomic_directory


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # the child imports the package these tests import, whatever the working directory
    source = str(Path(ctrdistill.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (source, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "ctrdistill.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return cli_prepared(tmp_path_factory.mktemp("cli"), rows=5000, max_vocab=300)


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
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


# tqdm draws a bar on stderr even off a terminal: "prepare: fit: 0.00rows [00:00, ?rows/s]"
PROGRESS_LINE = re.compile(r"\[\d+:\d+.*/s\]$")


def assert_one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
    """Exit 2 and, apart from progress bars drawn before the failure, one line: the error."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and not PROGRESS_LINE.search(line.strip())]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("ctrdistill ") and ": error: " in lines[0], lines[0]
    assert re.search(message, lines[0]), lines[0]


PREPARE_CONFIG = {"recipe": "csv", "output": "out",
                  "schema": {"label": "label", "fields": [{"name": "a"},
                                                          {"name": "n", "kind": "numeric"}]}}

BAD_RAW_INPUTS = [
    ("empty file", "data.csv", "", {}, r"data\.csv: file is empty"),
    ("label outside {0,1}", "data.csv", "label,a,n\n1,x,3\n2,y,4\n", {},
     r"label outside \{0,1\} in column 'label' at data row 2 \(1-based\): 2\.0"),
    ("missing label column", "data.csv", "a,n\nx,3\n", {}, r"data\.csv: missing column 'label'"),
    ("missing label value", "data.csv", "label,a,n\n1,x,3\n,y,4\n", {},
     r"missing or non-numeric label in column 'label' at data row 2"),
    ("text in a numeric Parquet column", "data.parquet", None, {"recipe": "parquet"},
     r"data\.parquet: non-numeric value in a numeric column 'n' at data row 2 \(1-based\): "
     r"'abc'"),
    ("unknown recipe with real input", "data.csv", "label,a,n\n1,x,3\n", {"recipe": "tvs"},
     r"unknown recipe 'tvs'; did you mean 'tsv'\?"),
    ("misspelled nested key", "data.csv", "label,a,n\n1,x,3\n",
     {"schema": {"label": "label", "fields": [{"name": "a", "knd": "numeric"}]}},
     r"unknown key 'schema\.fields\.0\.knd'; did you mean 'kind'\?"),
]


@pytest.mark.parametrize(("name", "text", "extra", "message"), [c[1:] for c in BAD_RAW_INPUTS],
                         ids=[c[0] for c in BAD_RAW_INPUTS])
def test_bad_raw_input_exits_2_with_one_line(tmp_path: Path, name: str, text: str | None,
                                             extra: dict, message: str) -> None:
    if text is None:
        pl.DataFrame({"label": [1, 0], "a": ["x", "y"], "n": ["3", "abc"]}).write_parquet(
            tmp_path / name)
    else:
        (tmp_path / name).write_text(text)
    (tmp_path / "prepare.yaml").write_text(yaml.safe_dump(PREPARE_CONFIG | extra))
    result = run_cli("prepare", "--config", "prepare.yaml", "--input", name, cwd=tmp_path)
    assert_one_line_error(result, message)
    assert not (tmp_path / "out").exists()


def test_evaluate_on_data_with_another_feature_map_exits_2(prepared: Path, tmp_path: Path) -> None:
    config = {"name": "lr", "data": str(prepared), "output_dir": str(tmp_path),
              "model": {"name": "lr"}, "train": {"epochs": 1, "batch_size": 1024}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp_path / "train.yaml")]) == 0
    other = tmp_path / "reseeded"  # the same raw rows, split with another seed
    assert main(["prepare", "--recipe", "synthetic", "--input", str(prepared.parent / "raw"),
                 "--output", str(other), "--protocol", "x4", "--set", "split.seed=7"]) == 0
    result = run_cli("evaluate", str(tmp_path / "lr"), "--data", str(other))
    assert_one_line_error(result, r"feature map does not match the checkpoint \((field|vocab)")


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
    assert [r["model"] for r in rows] == ["teacher: PNN", "small DNN, distilled",
                                          "small DNN, alone"]
    teacher, distilled, alone = rows
    assert all({"auc_gap", "bayes_auc", "speedup", "latency_ms", "model_bytes"} <= set(r)
               for r in rows)
    assert teacher["speedup"] == 1.0 and teacher["params"] > alone["params"]
    assert distilled["params"] == alone["params"]
    if teacher["auc"] > alone["auc"]:  # 4,000 rows decide nothing: either may happen
        assert distilled["gap_recovered"] == pytest.approx(
            (distilled["auc"] - alone["auc"]) / (teacher["auc"] - alone["auc"]))
    else:
        assert "gap_recovered" not in distilled
    config = json.loads((workdir / "raw" / "synth.json").read_text())
    assert config["preset"] == "criteo"
    assert main(["demo", "--rows", "4000", "--workdir", str(workdir)]) == 2  # exists


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopped_command_leaves_no_partial_output(tmp_path: Path, monkeypatch, capsys,
                                                  signum) -> None:
    """A job stopped by SIGTERM (a scheduler) or Ctrl-C removes its half-written output."""
    target = tmp_path / "out"

    def stopped_midway(args) -> None:
        with atomic_directory(target) as tmp:
            (tmp / "part.parquet").write_text("half")
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(cli, "execute", stopped_midway)
    assert main(["synth", "--output", str(target)]) == 128 + signum
    assert list(tmp_path.iterdir()) == []
    assert f"interrupted ({signum.name})" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is restored


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_evaluate_a_damaged_checkpoint_exits_2_with_one_line(prepared: Path, tmp_path: Path,
                                                             damage: str) -> None:
    config = {"name": "lr", "data": str(prepared), "output_dir": str(tmp_path / "runs"),
              "model": {"name": "lr"}, "train": {"epochs": 1, "batch_size": 512,
                                                 "progress": False}}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    checkpoint = tmp_path / "runs" / "lr" / "checkpoint.pt"
    whole = checkpoint.read_bytes()
    checkpoint.write_bytes(whole[: len(whole) // 2] if damage == "truncated"
                           else b"not a checkpoint\n" * 64)
    result = run_cli("evaluate", str(tmp_path / "runs" / "lr"), "--data", str(prepared))
    assert_one_line_error(result, "is damaged or not the file expected")
    assert "Traceback" not in result.stderr


def test_a_misspelled_split_names_the_valid_ones(prepared: Path, tmp_path: Path) -> None:
    """`--split testt` once said the split 'has no rows'; it names the valid splits now."""
    config = {"name": "lr", "data": str(prepared), "output_dir": str(tmp_path),
              "model": {"name": "lr"}, "train": {"epochs": 1, "batch_size": 512}}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    result = run_cli("evaluate", str(tmp_path / "lr"), "--data", str(prepared),
                     "--split", "testt")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown split 'testt'; did you mean 'test'? (valid: test, train, valid)" in (
        result.stderr)
