"""The command line generated from the configs: one flag per top-level value of a verb's config,
typed and described by the class, overriding `--set`, which overrides the YAML file."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
import yaml
from pydantic import Field

import ctrdistill
from ctrdistill.cli import VERBS, _config_class, build_parser, main
from ctrdistill.config import StrictConfig
from ctrdistill.flags import add_flags, flag_fields, flag_values

RAW = Path(__file__).parent / "fixtures" / "raw" / "criteo" / "train.txt"


class Inner(StrictConfig):
    depth: int = 1


class Toy(StrictConfig):
    name: str = Field(description="what it is called")
    count: int = Field(3, ge=1, description="how many, 100% of them")
    mode: Literal["fast", "slow"] = Field("fast", description="how")
    tags: list[str] = Field(default_factory=list, description="labels")
    overwrite: bool = Field(False, description="replace")
    inner: Inner = Field(default_factory=Inner, description="nested: reached with --set")


def toy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_flags(parser, Toy, positional="name", aliases={"tag": "tags"})
    return parser


def test_flags_come_from_the_class() -> None:
    assert set(flag_fields(Toy)) == {"name", "count", "mode", "tags", "overwrite"}
    args = toy_parser().parse_args(["x", "--count", "5", "--mode", "slow", "--tag", "a",
                                    "--tags", "b", "--overwrite"])
    assert flag_values(args) == {"name": "x", "count": 5, "mode": "slow", "tags": ["a", "b"],
                                 "overwrite": True}
    assert flag_values(toy_parser().parse_args(["--no-overwrite"])) == {"overwrite": False}
    assert flag_values(toy_parser().parse_args([])) == {}  # the config file's values stand
    text = " ".join(toy_parser().format_help().split())
    assert "how many, 100% of them (default: 3)" in text and "(default: fast)" in text
    with pytest.raises(SystemExit):
        toy_parser().parse_args(["--mode", "medium"])


def _parsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from _parsers(sub)


@pytest.mark.parametrize("name", sorted(VERBS))
def test_every_verb_has_a_flag_per_value_of_its_config(name: str) -> None:
    parser = build_parser()
    for word in name.split():
        parser = next(a for a in parser._actions
                      if isinstance(a, argparse._SubParsersAction)).choices[word]
    dests = {a.dest for a in parser._actions}
    keys = set(flag_fields(_config_class(VERBS[name])))
    assert {f"field:{k}" for k in keys} <= dests
    assert {"set", "quiet", "config"} <= dests
    for action in parser._actions:  # each default is shown once (export showed it twice)
        assert (action.help or "").count("(default:") <= 1, (name, action.dest)


def test_flags_override_set_which_overrides_the_file(tmp_path: Path) -> None:
    prepared = tmp_path / "prep"
    assert main(["prepare", "--recipe", "criteo", "--input", str(RAW), "--output",
                 str(prepared), "--quiet"]) == 0
    config = {"name": "from-file", "data": str(prepared), "output_dir": str(tmp_path / "runs"),
              "model": {"name": "lr"}, "train": {"epochs": 1, "batch_size": 64}}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--set", "name=from-set", "--name", "from-flag",
                 "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["from-flag"]


def test_synth_takes_every_generator_key(tmp_path: Path, capsys) -> None:
    """`ctrdistill synth --preset legacy` (BENCHMARKS.md names it) was refused."""
    out = tmp_path / "raw"
    assert main(["synth", "--preset", "legacy", "--rows", "300", "--max-vocab", "50",
                 "--output", str(out), "--quiet"]) == 0
    written = json.loads((out / "synth.json").read_text())
    assert (written["preset"], written["rows"], written["max_vocab"]) == ("legacy", 300, 50)
    assert "output" not in written
    assert capsys.readouterr().out == f"wrote 300 synthetic rows to {out}\n"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    source = str(Path(ctrdistill.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (source, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "ctrdistill", *args], capture_output=True,
                          text=True, cwd=cwd, env=env)


@pytest.mark.parametrize(("args", "message"), [
    (["synth", "--set", "rows=[1"], "--set rows: '[1' is not a valid YAML value"),
    (["demo", "--rows", "0"], "rows: Input should be greater than or equal to 1"),
])
def test_mistakes_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ctrdistill {args[0]}: error: "), lines
    assert message in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_quiet_shows_no_logs_nor_progress(tmp_path: Path) -> None:
    args = ["prepare", "--recipe", "criteo", "--input", str(RAW)]
    loud = run_cli(*args, "--output", "loud", cwd=tmp_path)
    assert loud.returncode == 0 and loud.stderr, loud.stderr  # the check below can fail
    quiet = run_cli(*args, "--output", "quiet", "--quiet", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert quiet.stdout.startswith("prepared quiet: 39 fields")


def test_export_prints_one_line(tmp_path: Path) -> None:
    """Two "exported" lines and four torchvision warnings once."""
    assert main(["prepare", "--recipe", "criteo", "--input", str(RAW), "--output",
                 str(tmp_path / "prep"), "--quiet"]) == 0
    config = {"name": "dnn", "data": str(tmp_path / "prep"), "output_dir": str(tmp_path),
              "model": {"name": "dnn", "embedding_dim": 4, "hidden_units": [8]},
              "train": {"epochs": 1, "batch_size": 64}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp_path / "train.yaml"), "--quiet"]) == 0
    result = run_cli("export", "dnn", "--output", "bundle", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("exported dnn to bundle (onnx by ")
    assert len(result.stdout.splitlines()) == 1
