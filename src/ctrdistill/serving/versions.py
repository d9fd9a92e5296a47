"""A folder of bundle versions, as `export --version-dir` and the continuous pipeline write it:
`v000001/`, `v000002/`, ... and a `latest` file naming the version to serve. A version is
written whole (an atomic directory) before `latest` is switched to it (an atomic rename), so
a reader never sees a half-written bundle or pointer."""

from __future__ import annotations

import re
from pathlib import Path

from ctrdistill.errors import CtrDistillError
from ctrdistill.storage import atomic_file

LATEST = "latest"
_VERSION = re.compile(r"v(\d{6})")


def is_versioned(root: Path) -> bool:
    return (Path(root) / LATEST).is_file()


def next_version(root: Path) -> str:
    """The name after the highest existing version (`v000001` in an empty or new folder)."""
    root = Path(root)
    numbers = [int(m.group(1)) for p in root.iterdir() if (m := _VERSION.fullmatch(p.name))
               ] if root.is_dir() else []
    return f"v{max(numbers, default=0) + 1:06d}"


def latest(root: Path) -> tuple[str, Path]:
    """(version name, bundle folder) that `latest` points to."""
    root = Path(root)
    try:
        name = (root / LATEST).read_text().strip()
    except OSError as error:
        raise CtrDistillError(f"{root}: cannot read its {LATEST} pointer ({error.strerror})"
                              ) from None
    if not _VERSION.fullmatch(name) or not (root / name).is_dir():
        raise CtrDistillError(f"{root}/{LATEST} names {name!r}, not a version folder there")
    return name, root / name


def set_latest(root: Path, name: str) -> None:
    with atomic_file(Path(root) / LATEST) as tmp:
        tmp.write_text(name + "\n")
