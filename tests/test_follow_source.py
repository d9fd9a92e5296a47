"""Landing-zone sources: partitions as directories in time order, complete by marker or quiet
time, on the local disk and behind fsspec URLs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import fsspec

from ctrdistill.continuous.source import DirectorySource, LandingConfig


def _land(root: Path, name: str, marker: bool = True, files: tuple[str, ...] = ("part-0.csv",)):
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        (folder / file).write_text("label,x\n1,2\n")
    if marker:
        (folder / "_SUCCESS").touch()
    return folder


def test_marker_partitions_sort_in_time_order_and_ignore_hidden_files(tmp_path):
    _land(tmp_path, "dt=2026-12-04/hour=13", files=("part-1.csv", "part-0.csv"))
    _land(tmp_path, "dt=2026-12-04/hour=09")
    _land(tmp_path, "dt=2026-12-05/hour=00", marker=False)
    (tmp_path / "dt=2026-12-04/hour=09/.part-2.csv.tmp-1-ab").write_text("half")
    source = DirectorySource(LandingConfig(path=str(tmp_path)))
    complete = source.complete()
    assert [p.name for p in complete] == ["dt=2026-12-04/hour=09", "dt=2026-12-04/hour=13"]
    assert [Path(f).name for f in complete[1].files] == ["part-0.csv", "part-1.csv"]
    assert [Path(f).name for f in complete[0].files] == ["part-0.csv"]
    assert [p.name for p in source.waiting()] == ["dt=2026-12-05/hour=00"]
    with source.local(complete[0]) as paths:
        assert paths == [tmp_path / "dt=2026-12-04/hour=09/part-0.csv"]


def test_quiet_partitions_complete_once_untouched(tmp_path):
    old = _land(tmp_path, "p=1", marker=False)
    past = time.time() - 120
    os.utime(old / "part-0.csv", (past, past))
    _land(tmp_path, "p=2", marker=False)
    source = DirectorySource(LandingConfig(path=str(tmp_path), complete_when="quiet",
                                           quiet_seconds=60))
    assert [p.name for p in source.complete()] == ["p=1"]
    assert [p.name for p in source.waiting()] == ["p=2"]
    assert abs(source.complete()[0].modified - past) < 2


def test_missing_landing_directory_has_no_partitions(tmp_path):
    source = DirectorySource(LandingConfig(path=str(tmp_path / "not-yet")))
    assert source.complete() == [] and source.waiting() == []


def test_file_url_and_a_remote_filesystem_read_the_same_partitions(tmp_path):
    _land(tmp_path, "dt=1")
    by_url = DirectorySource(LandingConfig(path=f"file://{tmp_path}"))
    assert [p.name for p in by_url.complete()] == ["dt=1"]
    memory = fsspec.filesystem("memory")
    memory.pipe("/landing/dt=1/part-0.csv", b"label,x\n1,2\n")
    memory.pipe("/landing/dt=1/_SUCCESS", b"")
    memory.pipe("/landing/dt=2/part-0.csv", b"label,x\n0,3\n")
    remote = DirectorySource(LandingConfig(path="memory://landing"))
    [partition] = remote.complete()
    assert [p.name for p in remote.waiting()] == ["dt=2"]
    with remote.local(partition) as paths:
        assert paths[0].read_text() == "label,x\n1,2\n"
        copied = paths[0]
    assert not copied.exists()  # the local copy is removed afterwards
