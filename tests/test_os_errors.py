"""Operating-system refusals (a path through a file, permissions, a full disk): one line, exit 2,
and nothing left behind: no hidden partial, no empty output folder or store."""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml

from conftest import cli_prepared, cli_trained_lr
from ctrdistill.cli import main
from ctrdistill.files import os_failure


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("os")
    cli_trained_lr(root, cli_prepared(root, rows=1500, max_vocab=50))
    return {"root": root, "raw": root / "raw", "prep": root / "prep",
            "run": root / "runs" / "lr"}


def error_line(capsys, code: int) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def commands(world: dict[str, Path], out: Path) -> dict[str, list[str]]:
    return {
        "synth": ["synth", "--output", str(out), "--rows", "3000"],
        "prepare": ["prepare", "--recipe", "synthetic", "--input", str(world["raw"]),
                    "--output", str(out), "--protocol", "x4"],
        "predict": ["predict", str(world["run"]), "--data", str(world["prep"]),
                    "--output", str(out)],
        "label": ["label", str(world["run"]), "--data", str(world["prep"]), "--output",
                  str(out)],
    }


@pytest.mark.parametrize("verb", ["synth", "prepare", "predict", "label"])
@pytest.mark.parametrize("depth", [1, 2])
def test_an_output_below_a_regular_file_is_one_line(world, tmp_path: Path, capsys, verb: str,
                                                    depth: int) -> None:
    (tmp_path / "file").write_text("keep me")
    out = tmp_path / "file" / ("x/" * (depth - 1) + "out")
    line = error_line(capsys, main(commands(world, out)[verb]))
    assert "file" in line and ("not a directory" in line or "exists" in line), line
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
    assert (tmp_path / "file").read_text() == "keep me"


@pytest.mark.parametrize("verb", ["synth", "prepare", "predict"])
def test_a_full_disk_inside_a_library_writer_is_one_line(world, tmp_path: Path, capsys,
                                                         monkeypatch, verb: str) -> None:
    """Polars reports ENOSPC only in its message (`os error 28`), PyArrow as an OSError."""
    def full(self, *args, **kwargs):
        raise pl.exceptions.ComputeError(
            "parquet: File out of specification: underlying IO error: No space left on device "
            "(os error 28)")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)
    out = tmp_path / "new" / "out"
    line = error_line(capsys, main(commands(world, out)[verb]))
    assert "no space left on the device" in line, line
    assert list(tmp_path.iterdir()) == []


def test_a_failed_labelling_leaves_no_empty_store(world, tmp_path: Path, capsys,
                                                  monkeypatch) -> None:
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)
    code = main(commands(world, tmp_path / "new" / "store")["label"])
    assert "no space left on the device" in error_line(capsys, code)
    assert list(tmp_path.iterdir()) == []


def test_export_on_a_full_disk_blames_the_disk(world, tmp_path: Path, capsys,
                                               monkeypatch) -> None:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", full)
    code = main(["export", str(world["run"]), "--output", str(tmp_path / "bundle")])
    line = error_line(capsys, code)
    assert "no space left on the device" in line and "torchscript" not in line, line
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_disk() -> Iterator[Path]:
    """A 64 KiB tmpfs: a real full disk (torch.save then reports only `unexpected pos`)."""
    folder = Path(tempfile.mkdtemp())
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
        folder.rmdir()


@pytest.mark.parametrize("verb", ["synth", "prepare", "train"])
def test_a_real_full_disk_is_one_line(world, tiny_disk: Path, capsys, verb: str) -> None:
    if verb == "train":
        config = yaml.safe_load((world["root"] / "train.yaml").read_text())
        config["output_dir"] = str(tiny_disk / "runs")
        (world["root"] / "full.yaml").write_text(yaml.safe_dump(config))
        args = ["train", str(world["root"] / "full.yaml")]
    else:
        args = commands(world, tiny_disk / "new" / "out")[verb]
    line = error_line(capsys, main(args))
    assert "no space left on the device" in line, line
    left = sorted(str(p.relative_to(tiny_disk)) for p in tiny_disk.rglob("*"))
    # a training that checkpointed keeps its partial run to resume from; nothing else stays
    assert left == [] or ("runs/.lr.partial/resume.pt" in left and all(
        p in ("runs", "runs/.lr.partial") or p.startswith("runs/.lr.partial/") for p in left))


@contextmanager
def as_nobody() -> Iterator[None]:
    """Act as `nobody` for file access (the effective ids; root takes them back after).
    In-process: a forked child of this threaded process can deadlock, and `nobody` may not
    reach the interpreter's own folder."""
    nobody = pwd.getpwnam("nobody")
    os.setegid(nobody.pw_gid)
    os.seteuid(nobody.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder `nobody` may enter (pytest's tmp_path is private to root)."""
    if os.geteuid() != 0:
        pytest.skip("dropping to another user needs root")
    folder = Path(tempfile.mkdtemp())
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=True)


def test_an_unreadable_input_is_one_line(world, open_folder: Path, capsys) -> None:
    raw = open_folder / "raw"
    raw.mkdir()
    for file in world["raw"].iterdir():
        (raw / file.name).write_bytes(file.read_bytes())
        (raw / file.name).chmod(0o600)  # root's alone
    raw.chmod(0o755)
    out = open_folder / "out"
    assert main(["prepare", "--recipe", "synthetic", "--input", str(raw), "--output",
                 str(open_folder / "warm")]) == 0  # imports what the child needs
    capsys.readouterr()
    with as_nobody():
        code = main(["prepare", "--recipe", "synthetic", "--input", str(raw), "--output",
                     str(out)])
    line = error_line(capsys, code)
    assert "permission denied" in line and str(raw) in line, line
    assert not out.exists()


@pytest.mark.parametrize("verb", ["synth", "predict"])
def test_an_unwritable_output_folder_is_one_line(world, open_folder: Path, capsys,
                                                 verb: str) -> None:
    closed = open_folder / "closed"
    closed.mkdir(mode=0o755)  # root's: nobody may enter, not write
    readable = {k: open_folder / k for k in ("run", "prep", "raw")}
    for key, path in readable.items():
        shutil.copytree(world[key], path)
    args = commands(readable, closed / "out")[verb]
    assert main(commands(readable, open_folder / "warm")[verb]) == 0  # imports for the child
    capsys.readouterr()
    with as_nobody():
        code = main(args)
    line = error_line(capsys, code)
    assert "permission denied" in line and str(closed) in line, line
    assert list(closed.iterdir()) == []


def test_only_operating_system_errors_are_translated() -> None:
    assert os_failure(ValueError("no")) is None
    assert os_failure(RuntimeError("not an os error 28")) is None
    wrapped = RuntimeError("writer failed")
    wrapped.__cause__ = PermissionError(errno.EACCES, "Permission denied", "/x")
    assert str(os_failure(wrapped)).startswith("/x: permission denied")
