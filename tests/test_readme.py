"""Every ```bash block of the README runs as written, in order, on small data (in-process
through the CLI's `main`), so that the README cannot drift from the code."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from ctrdistill.cli import main

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
#: Blocks not run, by their first line, and why (installs; nothing here needs the network).
SKIPPED = {
    "pip install -e . && ctrdistill demo          # install, then run the whole flow on "
    "synthetic data": "installs the package",
}
#: What makes the README's commands small enough for the test suite (text -> replacement).
SUBSTITUTIONS = {
    "--rows 1000000": "--rows 3000",
    "--rows-per-partition 20000": "--rows-per-partition 1000",
    # The Kaggle Criteo file is a download; the test fixture has its format.
    "--input train.txt": f"--input {ROOT / 'tests' / 'fixtures' / 'raw' / 'criteo' / 'train.txt'}",
}
#: Extra flags appended to training verbs: one short epoch each, no progress bars.
QUICK = ["--set", "train.epochs=1", "--set", "train.progress=false"]
TRAINING_VERBS = {"train", "distill", "mutual", "kdef", "stream"}


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)


def commands(block: str) -> list[list[str]]:
    """The block's commands as argument lists (comments dropped, continuations joined)."""
    for old, new in SUBSTITUTIONS.items():
        block = block.replace(old, new)
    lines = block.replace("\\\n", " ").splitlines()
    return [args for args in (shlex.split(line, comments=True) for line in lines) if args]


def test_skipped_blocks_exist():
    firsts = {block.splitlines()[0] for block in bash_blocks(README.read_text())}
    assert set(SKIPPED) <= firsts, "a SKIPPED block is no longer in the README"


def test_readme_commands_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    ran = []
    for block in bash_blocks(README.read_text()):
        if block.splitlines()[0] in SKIPPED:
            continue
        for args in commands(block):
            assert args[0] == "ctrdistill", f"not a ctrdistill command: {shlex.join(args)}"
            argv = args[1:] + (QUICK if args[1] in TRAINING_VERBS else [])
            assert main(argv) == 0, f"README command failed: {shlex.join(args)}"
            ran.append(args[1])
    assert {"synth", "prepare", "train", "distill", "label", "stream", "mutual", "kdef",
            "analyze"} <= set(ran)
    assert (tmp_path / "runs" / "kd-gate" / "results.md").is_file()
    assert (tmp_path / "collapse" / "abundance.png").is_file()
