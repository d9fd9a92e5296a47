"""Models: shared layers, the zoo of CTR architectures (all return logits), and the registry."""

from ctrdistill.models.base import CTRModel, ModelConfig, ModelOutput
from ctrdistill.models.registry import build_model, model_names, register_model

__all__ = ["CTRModel", "ModelConfig", "ModelOutput", "build_model", "model_names", "register_model"]
