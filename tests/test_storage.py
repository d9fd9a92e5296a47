"""Atomic outputs: complete or absent, never half-written, even across SIGKILL and full disks."""

from __future__ import annotations

import errno
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import ctrdistill
from ctrdistill.errors import CtrDistillError
from ctrdistill.storage import RESUME_STATE, atomic_directory, atomic_file


def partial_of(target: Path) -> Path:
    return target.parent / f".{target.name}.partial"


def old_of(target: Path) -> Path:
    return target.parent / f".{target.name}.old"


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def spawn(code: str) -> subprocess.Popen:
    """A python child that imports this checkout's package."""
    source = str(Path(ctrdistill.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (source, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env)


def wait_for(path: Path, child: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert child.poll() is None, f"child exited with {child.returncode}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_directory_appears_only_complete_with_umask_permissions(tmp_path: Path,
                                                                umask_022) -> None:
    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        assert tmp == partial_of(target)
        (tmp / "a.txt").write_text("a")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "a"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_file_appears_only_complete_with_umask_permissions(tmp_path: Path, umask_022) -> None:
    target = tmp_path / "sub" / "f.json"
    with atomic_file(target) as tmp:
        tmp.write_text("{}")
        assert not target.exists()
    assert target.read_text() == "{}"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]


def test_existing_target_without_overwrite_touches_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep").write_text("old")
    partial_of(target).mkdir()
    (partial_of(target) / "leftover").write_text("x")
    with pytest.raises(CtrDistillError, match="output already exists"), atomic_directory(target):
        pytest.fail("the body must not run")
    assert (target / "keep").read_text() == "old"
    assert (partial_of(target) / "leftover").read_text() == "x"


def test_overwrite_swaps_without_a_gap(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale").write_text("old")
    old_of(target).mkdir()  # a crash during an earlier swap
    (old_of(target) / "junk").write_text("x")
    real_replace = os.replace
    calls = []

    def checked_replace(src, dst):
        assert target.exists() or old_of(target).exists(), "neither old nor new output"
        real_replace(src, dst)
        assert target.exists() or old_of(target).exists(), "neither old nor new output"
        calls.append((Path(src).name, Path(dst).name))

    monkeypatch.setattr(os, "replace", checked_replace)
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "new").write_text("new")
    assert calls == [("out", ".out.old"), (".out.partial", "out")]
    assert [p.name for p in target.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_exception_removes_the_partial(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), atomic_directory(target) as tmp:
        (tmp / "half").write_text("x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_resume_state_keeps_the_partial_for_resume(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"), atomic_directory(target) as tmp:
        (tmp / RESUME_STATE).write_text("epoch 3")
        raise RuntimeError("boom")
    assert not target.exists()
    assert (partial_of(target) / RESUME_STATE).read_text() == "epoch 3"
    with atomic_directory(target, resume=True) as tmp:
        assert (tmp / RESUME_STATE).read_text() == "epoch 3"
        (tmp / "done").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["done", RESUME_STATE]
    assert not partial_of(target).exists()


def test_without_resume_a_leftover_is_cleared(tmp_path: Path, caplog) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / RESUME_STATE).write_text("epoch 3")
        raise RuntimeError
    with caplog.at_level(logging.INFO, logger="ctrdistill.storage"), \
            atomic_directory(target) as tmp:
        assert list(tmp.iterdir()) == []
    assert "leftover of an interrupted run" in caplog.text
    assert list(target.iterdir()) == []


def spawn_writer(target: Path, marker: str, then: str):
    """A child that writes `marker` into its partial of `target`, then runs `then`."""
    return spawn(f"""
        import os, signal, time
        from pathlib import Path
        from ctrdistill.storage import atomic_directory
        with atomic_directory(Path({str(target)!r})) as tmp:
            (tmp / {marker!r}).write_text("x")
            {then}
        """)


def test_sigkilled_writer_leftover_is_removed_by_the_next_run(tmp_path: Path) -> None:
    target = tmp_path / "out"
    child = spawn_writer(target, "half", "os.kill(os.getpid(), signal.SIGKILL)")
    assert child.wait(timeout=10) == -signal.SIGKILL
    assert (partial_of(target) / "half").exists()  # SIGKILL runs no cleanup
    with atomic_directory(target) as tmp:
        assert list(tmp.iterdir()) == []
    assert list(target.iterdir()) == []


def test_a_live_writer_holds_the_output(tmp_path: Path) -> None:
    target = tmp_path / "out"
    child = spawn_writer(target, "ready", "time.sleep(60)")
    try:
        wait_for(partial_of(target) / "ready", child)
        with pytest.raises(CtrDistillError, match="another process is writing"), \
                atomic_directory(target, resume=True):
            pytest.fail("the body must not run")
        assert (partial_of(target) / "ready").exists()
    finally:
        child.kill()
        child.wait()


def test_disk_full_is_one_clear_error_for_a_directory(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(CtrDistillError, match="no space left on the device writing") as info, \
            atomic_directory(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.__suppress_context__
    assert list(tmp_path.iterdir()) == []


def test_other_errors_propagate_unchanged(tmp_path: Path) -> None:
    with pytest.raises(PermissionError), atomic_file(tmp_path / "f"):
        raise OSError(errno.EACCES, "denied")
    with pytest.raises(OSError) as info, atomic_directory(tmp_path / "d"):
        raise OSError(errno.EIO, "i/o")
    assert info.value.errno == errno.EIO
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    target = tmp_path / "f.json"
    stale = tmp_path / f".f.json.tmp-{dead.pid}-0123abcd"
    live = tmp_path / f".f.json.tmp-{os.getpid()}-0123abcd"
    other = tmp_path / f".g.json.tmp-{dead.pid}-0123abcd"
    for path in (stale, live, other):
        path.write_text("x")
    with atomic_file(target) as tmp:
        tmp.write_text("new")
    assert not stale.exists()
    assert live.exists() and other.exists()
    assert target.read_text() == "new"


def test_directory_as_file_target_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "d"
    target.mkdir()
    with pytest.raises(CtrDistillError, match="is a directory; give a file path"), \
            atomic_file(target):
        pytest.fail("the body must not run")
    assert [p.name for p in tmp_path.iterdir()] == ["d"]
    assert list(target.iterdir()) == []


def test_disk_full_is_one_clear_error_for_a_file(tmp_path: Path) -> None:
    target = tmp_path / "f.parquet"
    with pytest.raises(CtrDistillError, match="no space left on the device writing") as info, \
            atomic_file(target) as tmp:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.__suppress_context__
    assert list(tmp_path.iterdir()) == []
