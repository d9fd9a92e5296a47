"""Where and in which precision models run: `device: auto | cpu | cuda | cuda:N` and
`precision: fp32 | bf16 | fp16` (autocast, with a gradient scaler for fp16)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Literal

import torch

from ctrdistill.errors import CtrDistillError
from ctrdistill.training.config import DEVICE_PATTERN

Precision = Literal["fp32", "bf16", "fp16"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(spec: str = "auto") -> torch.device:
    """The torch device `spec` names; auto is the current CUDA device when there is one."""
    if not re.match(DEVICE_PATTERN, spec):
        raise CtrDistillError(f"device '{spec}': expected auto, cpu, cuda or cuda:N")
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per process under torchrun
        spec = f"cuda:{os.environ['LOCAL_RANK']}"
    elif spec.startswith("cuda:") and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
        raise CtrDistillError(f"device '{spec}' under torchrun would put every process on the "
                              "same GPU; use device: cuda (or auto): each process takes the GPU "
                              "of its local rank")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CtrDistillError(
                f"device '{spec}': this machine has no CUDA device (torch {torch.__version__}); "
                "use device: auto or cpu, or install the CUDA build of torch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CtrDistillError(f"device '{spec}': only {torch.cuda.device_count()} CUDA "
                                  "device(s) here")
    return device


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision) -> Iterator[None]:
    """Mixed precision for the forward pass (nothing for fp32)."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=DTYPES[precision]):
        yield


def grad_scaler(device: torch.device, precision: Precision) -> torch.amp.GradScaler | None:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (timings on a GPU are otherwise the launch time)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fits_on_device(nbytes: int, device: torch.device, fraction: float = 0.5) -> bool:
    """Whether a split of `nbytes` should live in device memory: at most `fraction` of what is
    free now (the rest is for the model, activations and optimizer state)."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= fraction * free
