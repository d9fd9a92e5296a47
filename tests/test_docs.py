"""The Python examples of docs/ run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[1] / "docs"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


def test_api_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(DOCS / "api.md")
    assert blocks, "docs/api.md has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}  # as a script: not this file's future imports
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec", dont_inherit=True), namespace)
    assert (tmp_path / "demo" / "runs" / "student" / "checkpoint.pt").is_file()
