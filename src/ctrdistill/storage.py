"""Atomic outputs: a failed or interrupted command never leaves a half-written result in place.

A directory is written in the hidden sibling `.NAME.partial`, locked with flock while open (the
kernel drops the lock when the writer dies, even on SIGKILL), and renamed to NAME at the end; an
existing NAME is first renamed to `.NAME.old`, so some complete output is always in place. An
unlocked `.NAME.partial` is a leftover of a killed run: removed, or kept to resume from. A file is
written in `.NAME.tmp-PID-RANDOM` and renamed over NAME; temporaries of dead PIDs are removed.
Both are created by the kernel with mode 0o777/0o666 so that the umask applies, as for mkdir.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ctrdistill.errors import CtrDistillError
from ctrdistill.files import disk_full

RESUME_STATE = "resume.pt"  # a partial directory holding this file survives a failure

log = logging.getLogger(__name__)


@contextmanager
def atomic_directory(target: Path, overwrite: bool = False,
                     resume: bool = False) -> Iterator[Path]:
    """Yield `.NAME.partial` to fill; on success it replaces `target`, on failure it is removed
    unless it holds RESUME_STATE. `resume` keeps a leftover partial's contents instead of
    clearing them. Raises CtrDistillError if `target` exists without `overwrite`, or if another
    process is writing `target`."""
    target = Path(target)
    old = _sibling(target, "old")
    if old.exists() and not target.exists():  # a crash between the two renames of a swap
        os.replace(old, target)
    if target.exists() and not overwrite:
        raise CtrDistillError(f"output already exists: {target} (choose another path or remove it)")
    with made_parents(target):
        partial = _sibling(target, "partial")
        fd = _lock_partial(partial, target, resume)
        try:
            try:
                _remove(old)  # left by a crash after an earlier swap's second rename
                yield partial
                _commit(partial, target, overwrite)
            except BaseException as exc:
                full = disk_full(exc, target.parent)  # before the removal frees space
                if not (partial / RESUME_STATE).exists():
                    _remove(partial)
                _raise_disk_full(full, target)
                raise
        finally:
            os.close(fd)  # releases the lock only now, after the rename or the removal


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling to write; on success it replaces `target`, on failure it is
    removed. Raises CtrDistillError if `target` is a directory."""
    target = Path(target)
    if target.is_dir():
        raise CtrDistillError(f"{target} is a directory; give a file path")
    with made_parents(target):
        _remove_dead_temporaries(target)
        tmp = _create_temporary(target)
        try:
            yield tmp
            os.replace(tmp, target)
        except BaseException as exc:
            full = disk_full(exc, target.parent)  # before the removal frees space
            tmp.unlink(missing_ok=True)
            _raise_disk_full(full, target)
            raise


@contextmanager
def built_in_place(target: Path, keep: Callable[[Path], bool]) -> Iterator[None]:
    """For an output filled in place (a label store grows partition by partition and resumes):
    if the body fails, a `target` this call created is removed with its new parent folders,
    unless `keep(target)` (it holds work worth resuming)."""
    target = Path(target)
    existed = os.path.lexists(target)
    with made_parents(target):
        try:
            yield
        except BaseException:
            if not existed and not keep(target):
                _remove(target)
            raise


@contextmanager
def made_parents(target: Path) -> Iterator[None]:
    """Create `target`'s missing parent folders; if the body fails, remove those of them that
    are still empty: a failed command leaves no empty folder behind."""
    missing = []
    folder = Path(target).parent
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = folder.parent
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for folder in missing:  # the deepest first
            try:
                folder.rmdir()
            except OSError:  # not empty: something else lives there now
                break
        raise


def copy_tree(source: Path, target: Path) -> None:
    """Copy a directory tree's contents; unlike shutil.copytree, the copies get the umask's
    modes, not the source's (a world-readable source stays private under umask 077)."""
    for folder, _, names in os.walk(source):
        into = Path(target) / Path(folder).relative_to(source)
        into.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copyfile(Path(folder) / name, into / name)


def _sibling(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}"


def partial_directory(target: Path) -> Path:
    """Where `atomic_directory(target)` builds its output (and keeps a resume state)."""
    return _sibling(Path(target), "partial")


def _lock_partial(partial: Path, target: Path, resume: bool) -> int:
    """Create or reuse `partial` and return a directory fd that holds its lock."""
    while True:
        try:
            os.mkdir(partial)  # mode 0o777 & ~umask
            leftover = False
        except FileExistsError:
            leftover = True
        try:
            fd = os.open(partial, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue  # its writer just renamed or removed it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CtrDistillError(f"another process is writing {target} (it holds {partial}); "
                                  "wait for it or choose another path") from None
        # The lock counts only if `partial` still names the locked directory: its writer may
        # have renamed it to the target or removed it between our open and our flock.
        if _names(partial, fd):
            break
        os.close(fd)
    if leftover:
        try:
            if resume:
                log.info("resuming from the leftover of an interrupted run: %s", partial)
            else:
                _clear(partial)
                log.info("removed the leftover of an interrupted run: %s", partial)
        except BaseException:
            os.close(fd)
            raise
    return fd


def _names(path: Path, fd: int) -> bool:
    try:
        current = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino)


def _clear(directory: Path) -> None:
    # the locked directory itself stays: removing it would drop the lock's name
    for entry in directory.iterdir():
        _remove(entry)


def _commit(partial: Path, target: Path, overwrite: bool) -> None:
    if not os.path.lexists(target):
        os.replace(partial, target)
        return
    if not overwrite:  # it appeared while we were writing
        raise CtrDistillError(f"output already exists: {target} (choose another path or remove it)")
    old = _sibling(target, "old")
    os.replace(target, old)
    try:
        os.replace(partial, target)
    except BaseException:
        os.replace(old, target)
        raise
    _remove(old)


def _remove(path: Path) -> None:
    """Remove a file or a directory tree; a missing one (or one a racing writer removed) is fine."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _create_temporary(target: Path) -> Path:
    while True:
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # & ~umask
        except FileExistsError:
            continue
        return tmp


def _remove_dead_temporaries(target: Path) -> None:
    """Remove temporaries of `target` left by processes that no longer run (SIGKILL)."""
    pattern = re.compile(re.escape(f".{target.name}.tmp-") + r"(\d+)-[0-9a-f]+")
    for entry in target.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and not _alive(int(match.group(1))):
            entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it runs, as another user
    return True


def _raise_disk_full(full: bool, target: Path) -> None:
    if full:
        raise CtrDistillError(f"no space left on the device writing {target}: free space or "
                              "choose another path") from None
