"""keep_freed_memory: on glibc, large tensors come from the heap instead of a fresh mmap each.

Checked in a fresh interpreter (the setting is process-wide) through glibc's own count of
mmapped bytes: a 64 MB tensor is mmapped before the call and not after it, building a Trainer
makes the call, and CTRDISTILL_KEEP_FREED_MEMORY=0 keeps glibc's defaults."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ctrdistill.training.memory import keep_freed_memory

libc = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform.startswith("linux") else None
glibc = pytest.mark.skipif(libc is None or not hasattr(libc, "mallinfo2"),
                           reason="needs glibc >= 2.33 (mallinfo2)")

PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, torch

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = MallInfo2

    def mmapped_by_a_64mb_tensor():
        before = libc.mallinfo2().hblkhd
        tensor = torch.empty(16 * 2**20)
        grown = libc.mallinfo2().hblkhd - before
        del tensor
        return grown >= 64 * 2**20

    print(mmapped_by_a_64mb_tensor())
    {setup}
    print(mmapped_by_a_64mb_tensor())
""")


def probe(setup: str, env: dict[str, str] | None = None) -> list[str]:
    code = PROBE.format(setup=setup)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parent, env={**os.environ, **(env or {})})
    return done.stdout.split()


@glibc
def test_large_tensors_stop_being_mmapped_after_the_call():
    assert probe("from ctrdistill.training.memory import keep_freed_memory\n"
                 "assert keep_freed_memory()") == ["True", "False"]


@glibc
def test_the_trainer_applies_it():
    setup = textwrap.dedent("""
        from conftest import make_feature_map
        from ctrdistill.models import build_model
        from ctrdistill.strategies.plain import PlainStrategy
        from ctrdistill.training.config import TrainConfig
        from ctrdistill.training.trainer import Trainer
        model = build_model({"name": "lr"}, make_feature_map())
        Trainer(PlainStrategy(model), TrainConfig(progress=False))
    """)
    assert probe(setup) == ["True", "False"]


@glibc
def test_the_environment_opts_out():
    assert probe("from ctrdistill.training.memory import keep_freed_memory\n"
                 "assert not keep_freed_memory()",
                 {"CTRDISTILL_KEEP_FREED_MEMORY": "0"}) == ["True", "True"]


@glibc
def test_idempotent():
    assert keep_freed_memory() and keep_freed_memory()


@glibc
def test_kept_memory_is_released_around_a_new_working_set():
    code = textwrap.dedent("""
        import torch
        from ctrdistill.training.memory import keep_freed_memory, new_working_set

        def resident_mb():
            return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

        assert keep_freed_memory()
        start = resident_mb()
        torch.ones(64 * 2**20)  # 256 MB, touched, then freed at once
        kept = resident_mb() - start
        with new_working_set():
            inside = resident_mb() - start
        print(kept > 200, inside < 50)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["True", "True"]
