"""A folder of bundle versions, as `ctrdistill serve` reloads it: `v000001/`, `v000002/`, ...
and a `latest` file naming the version to serve. A version is written whole (an atomic
directory) before `latest` is switched to it (an atomic rename)."""

from __future__ import annotations

from pathlib import Path

from ctrdistill.storage import atomic_file

LATEST = "latest"


def version_name(number: int) -> str:
    return f"v{number:06d}"


def set_latest(root: Path, name: str) -> None:
    with atomic_file(Path(root) / LATEST) as tmp:
        tmp.write_text(name + "\n")


def read_latest(root: Path) -> str | None:
    path = Path(root) / LATEST
    return path.read_text().strip() if path.is_file() else None
