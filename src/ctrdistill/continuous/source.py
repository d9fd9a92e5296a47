"""Where partitions come from: a source lists complete partitions in time order and gives each
one's prepared rows.

`Source` is the whole interface the follow loop uses, so a Kafka reader (a partition per
offset range) can be added beside `DirectorySource`, which watches a landing directory of raw
logs on the local disk or behind any fsspec URL (`s3://`, `gs://`, `file://`) and encodes them
with the dataset's fitted preprocessing: every directory holding data files is a partition,
named by its path under the root (`dt=2026-12-04/hour=13`), and partitions sort by that name,
so the layout's names must sort in time order. `DaySource` (ctrdistill.continuous.days) gives a
prepared dataset's days, already encoded.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

import fsspec
import polars as pl
from pydantic import Field

from ctrdistill.config import StrictConfig
from ctrdistill.continuous.encode import encode_files
from ctrdistill.continuous.vocabulary import Counts
from ctrdistill.data.encode import PrepareState
from ctrdistill.errors import CtrDistillError

#: Files of a landing directory that are never data (markers, hidden and temporary files).
IGNORED_PREFIXES = ("_", ".")


@dataclass(frozen=True)
class Partition:
    """One complete unit of arrived logs: `name` orders it, `files` are its data files (source
    URLs or paths) and `modified` is when its newest file was written (seconds since the
    epoch), from which lag is measured."""

    name: str
    files: tuple[str, ...]
    modified: float


class Source(Protocol):
    """A source of partitions. `waiting` lists the ones not yet complete (lag reporting);
    `location` says where they come from (recorded in the label store)."""

    location: str

    def complete(self) -> list[Partition]: ...

    def waiting(self) -> list[Partition]: ...

    def rows(self, partition: Partition, state: PrepareState, count_unseen: bool = False
             ) -> tuple[pl.DataFrame, Counts | None]:
        """The partition's prepared rows (row ids unique within it) in the vocabularies of
        `state`, and with `count_unseen` the counts of the ids they leave out (see
        ctrdistill.continuous.encode)."""


class LandingConfig(StrictConfig):
    path: str = Field(description="the landing directory: a local path or an fsspec URL "
                      "(s3://bucket/logs, gs://..., file://...)")
    complete_when: Literal["marker", "quiet"] = Field(
        "marker", description="marker: a partition is complete once its marker file exists; "
        "quiet: once none of its files changed for quiet_seconds")
    marker: str = Field("_SUCCESS", description="the completion marker's file name")
    quiet_seconds: float = Field(60.0, ge=0, description="with complete_when: quiet")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options of the URL's filesystem (e.g. "
        "endpoint_url for an S3-compatible store)")


def _modified(info: dict) -> float:
    """A file's modification time in seconds, whatever the filesystem calls it."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        if isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        return float(value)
    return time.time()


class DirectorySource:
    """Partitions as directories of a landing zone (see the module docstring)."""

    def __init__(self, config: LandingConfig) -> None:
        self.config = config
        self.location = config.path
        self.fs, self.root = fsspec.core.url_to_fs(config.path, **config.storage_options)
        self.root = self.root.rstrip("/")

    def _scan(self) -> tuple[list[Partition], list[Partition]]:
        """(complete, waiting) partitions, each sorted by name."""
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return [], []
        groups: dict[str, dict[str, dict]] = {}
        for path, info in found.items():
            if info.get("type") == "directory":
                continue
            relative = PurePosixPath(path).relative_to(PurePosixPath(self.root))
            parent = str(relative.parent)
            groups.setdefault("" if parent == "." else parent, {})[relative.name] = info
        complete, waiting = [], []
        now = time.time()
        for name in sorted(groups):
            files = groups[name]
            data = sorted(f for f in files if not f.startswith(IGNORED_PREFIXES))
            if not data:
                continue
            modified = max(_modified(files[f]) for f in data)
            partition = Partition(
                name or ".", tuple(f"{self.root}/{name}/{f}" if name else f"{self.root}/{f}"
                                   for f in data), modified)
            if self.config.complete_when == "marker":
                done = self.config.marker in files
            else:
                done = now - modified >= self.config.quiet_seconds
            (complete if done else waiting).append(partition)
        return complete, waiting

    def complete(self) -> list[Partition]:
        return self._scan()[0]

    def waiting(self) -> list[Partition]:
        return self._scan()[1]

    def rows(self, partition: Partition, state: PrepareState, count_unseen: bool = False
             ) -> tuple[pl.DataFrame, Counts | None]:
        with self.local(partition) as files:
            return encode_files(state, files, count_unseen=count_unseen)

    @contextmanager
    def local(self, partition: Partition) -> Iterator[list[Path]]:
        """The partition's files as local paths: themselves on a local filesystem, else copies
        in a temporary directory removed afterwards."""
        if "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple)
                      else (self.fs.protocol,)):
            yield [Path(f) for f in partition.files]
            return
        folder = Path(tempfile.mkdtemp(prefix="ctrdistill-landing-"))
        try:
            paths = []
            for index, remote in enumerate(partition.files):
                local = folder / f"{index:05d}-{PurePosixPath(remote).name}"
                try:
                    self.fs.get(remote, str(local))
                except FileNotFoundError:
                    raise CtrDistillError(f"{remote} disappeared from the landing zone while "
                                          "being read") from None
                paths.append(local)
            yield paths
        finally:
            shutil.rmtree(folder, ignore_errors=True)
