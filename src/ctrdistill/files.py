"""Files that fail: a damaged file we read, or the operating system refusing, is one clear line.

Every file ctrdistill reads is read inside `reading(path, remedy)`: whatever a parser raises
there (JSON that is not JSON, a Parquet shard cut short, a `.gz` that is truncated or not gzip, a
checkpoint or ONNX model that does not load, a manifest without a key it needs) becomes a
CtrDistillError naming the file and what rebuilds it. `os_failure` turns an operating-system
error into such a line, also when a library reports it only in its message (Polars:
`... (os error 28)`); the CLI calls it for whatever escapes a command.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ctrdistill.errors import CtrDistillError

# What rebuilds a damaged file, by what holds it.
PREPARE = "prepare the data again (ctrdistill prepare)"
RETRAIN = "train the run again"
RELABEL = "label the data again (ctrdistill label) into a new store"
REEXPORT = "export the bundle again (ctrdistill export)"
REPLACE = "check the file or replace it"
RESTART = "start afresh without --resume"

T = TypeVar("T")
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
# (what happened, what to do) by errno; strerror's words ("File exists") mislead here
_HINTS = {
    errno.EACCES: ("permission denied", "check its permissions or choose another path"),
    errno.EPERM: ("operation not permitted", "check its permissions or choose another path"),
    errno.EROFS: ("read-only file system", "choose a writable path"),
    errno.ENOTDIR: ("a part of the path is a file, not a directory", "choose another path"),
    errno.EEXIST: ("exists and is not a directory", "choose another path"),
    errno.EISDIR: ("is a directory", "give a file path"),
    errno.ENOENT: ("no such file or directory", "check the path"),
}
_REFUSALS = _DISK_FULL | set(_HINTS)


@contextmanager
def reading(path: str | Path, remedy: str) -> Iterator[None]:
    """Run the reading of `path`; any failure but an OS refusal reports the file as damaged."""
    try:
        yield
    except (CtrDistillError, MemoryError):
        raise
    except Exception as error:  # any parser's failure means a damaged file
        if any(_errno(cause) in _REFUSALS for cause in _chain(error)):  # not the file's fault
            raise os_failure(error, path) from None
        raise CtrDistillError(f"{path} is damaged or not the file expected "
                              f"({_reason(error)}); {remedy}") from None


def read_json(path: Path, remedy: str) -> Any:
    with reading(path, remedy):
        return json.loads(Path(path).read_text())


def read_model(model: type[T], path: Path, remedy: str) -> T:
    """A JSON file validated into a pydantic `model`; a missing or wrong key is a damaged
    file too."""
    from ctrdistill.config import validate_config

    data = read_json(path, remedy)
    try:
        return validate_config(model, data, source=str(path))
    except CtrDistillError as error:
        raise CtrDistillError(f"{error}; it is damaged or not the file expected: {remedy}"
                              ) from None


def read_yaml(path: Path, remedy: str) -> Any:
    import yaml

    with reading(path, remedy):
        return yaml.safe_load(Path(path).read_text())


def read_parquet(path: Path, remedy: str, **options: Any):
    """`polars.read_parquet(path, **options)`; a damaged file is one line."""
    import polars as pl

    with reading(path, remedy):
        return pl.read_parquet(path, **options)


def load_torch(path: Path, remedy: str) -> Any:
    """A torch file of plain tensors and containers (weights_only), on the CPU."""
    import torch

    with reading(path, remedy):
        return torch.load(path, map_location="cpu", weights_only=True)


def os_failure(error: BaseException, path: str | Path | None = None) -> CtrDistillError | None:
    """The one line for an operating-system error anywhere in `error`'s chain, else None.
    `path` names the file when the error does not."""
    for cause in _chain(error):
        code = _errno(cause)
        if code is None:
            continue
        name = getattr(cause, "filename", None) or path
        if code in _DISK_FULL:
            where = f" writing {name}" if name else ""
            return CtrDistillError(f"no space left on the device{where}: free space or choose "
                                   "another path")
        what, hint = _HINTS.get(code, (os.strerror(code).lower(), "check the path and device"))
        return CtrDistillError(f"{name}: {what} ({hint})" if name else f"{what} ({hint})")
    return None


def disk_full(error: BaseException, directory: Path) -> bool:
    """Whether `error` says the disk is full, or came while `directory`'s device had no space
    left (torch.save then reports only a short write: `unexpected pos`)."""
    if any(_errno(cause) in _DISK_FULL for cause in _chain(error)):
        return True
    try:
        stats = os.statvfs(directory)
    except OSError:
        return False
    return (isinstance(error, Exception) and not isinstance(error, CtrDistillError)
            and stats.f_bavail == 0)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _errno(error: BaseException) -> int | None:
    if isinstance(error, OSError) and error.errno:
        return error.errno
    if isinstance(error, OSError | RuntimeError) or type(error).__module__.startswith("polars"):
        match = _RUST_OS_ERROR.search(str(error))  # Rust's io::Error, e.g. in Polars
        return int(match.group(1)) if match else None
    return None


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(error, KeyError):
        first = f"no {first}"
    return f"{type(error).__name__}: {first[:160]}" if first else type(error).__name__
