"""A name cannot write outside output_dir; every file created follows the umask, copies too."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ctrdistill.cli import main
from ctrdistill.config import validate_config
from ctrdistill.errors import CtrDistillError
from ctrdistill.pipelines.fit import DistillConfig, KDEFConfig, MutualConfig, TrainRunConfig
from ctrdistill.pipelines.methods.kd import TeacherSpec
from ctrdistill.pipelines.search import SearchConfig
from ctrdistill.pipelines.stream import StreamConfig

BAD_NAMES = ["../../somewhere", "a/b", "/tmp/abs", "..", ".", "", "a\\b"]
CONFIGS = [TrainRunConfig, DistillConfig, MutualConfig, KDEFConfig, StreamConfig, SearchConfig]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_name_that_is_a_path_is_refused(config, name: str) -> None:
    with pytest.raises(CtrDistillError, match=r"name: .*not a plain name"):
        validate_config(config, {"name": name})


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_teacher_name_that_is_a_path_is_refused(name: str) -> None:
    with pytest.raises(CtrDistillError, match="not a plain name"):
        validate_config(TeacherSpec, {"run": "runs/x", "name": name})


def test_plain_names_pass() -> None:
    assert validate_config(TeacherSpec, {"run": "r", "name": "deepfm-1.v2"}).name == "deepfm-1.v2"


@pytest.fixture
def umask_077() -> Iterator[None]:
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_run_follows_the_umask_not_its_sources_modes(tmp_path: Path) -> None:
    """The data is prepared world-readable; a run trained under umask 077 (its copy of the
    data's vocabularies included) is private."""
    previous = os.umask(0o022)
    try:
        assert main(["synth", "--output", str(tmp_path / "raw"), "--rows", "600",
                     "--set", "max_vocab=30"]) == 0
        assert main(["prepare", "--recipe", "synthetic", "--input", str(tmp_path / "raw"),
                     "--output", str(tmp_path / "prep"), "--protocol", "x4"]) == 0
    finally:
        os.umask(previous)
    assert any(p.stat().st_mode & 0o044 for p in (tmp_path / "prep" / "vocab").iterdir())
    config = {"name": "lr", "data": str(tmp_path / "prep"), "output_dir": str(tmp_path / "runs"),
              "model": {"name": "lr"}, "train": {"epochs": 1, "batch_size": 256,
                                                 "progress": False}}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(config))
    previous = os.umask(0o077)
    try:
        assert main(["train", str(tmp_path / "t.yaml")]) == 0
    finally:
        os.umask(previous)
    created = [tmp_path / "runs", *(tmp_path / "runs").rglob("*")]
    assert any(p.name == "vocab" for p in created)
    opened = [str(p) for p in created if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert opened == [], opened
