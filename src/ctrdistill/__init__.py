"""ctrdistill: knowledge transfer between click-through-rate models."""

from ctrdistill.errors import CtrDistillError

__all__ = ["CtrDistillError"]
__version__ = "0.1.0"
