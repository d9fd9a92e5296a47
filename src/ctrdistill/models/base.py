"""The contract every zoo model keeps: a plain nn.Module that maps a batch to logits.

`encode(batch)` returns the logit and the named hidden representation (the vector the output
layer reads), used by hint losses, teacher gating and collapse analysis; `forward` returns the
logit only. Models know nothing about how they are trained or distributed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from ctrdistill.config import StrictConfig
from ctrdistill.data.batch import Batch
from ctrdistill.data.schema import FeatureMap
from ctrdistill.models.layers.embedding import FeatureEmbedding

__all__ = ["Batch", "CTRModel", "ModelConfig", "ModelOutput"]


Size = Literal["tiny", "small", "medium", "base"]
#: The named sizes a student (or any model) can take: embedding width, MLP widths.
SIZES: dict[str, tuple[int, list[int]]] = {
    "tiny": (4, [64]), "small": (8, [128, 64]), "medium": (16, [256, 128]),
    "base": (16, [400, 400, 400]),
}


class ModelConfig(StrictConfig):
    """Hyperparameters common to every model; each model extends it with its own."""

    #: The MLP width lists a `size` sets (each model names its own).
    width_fields: ClassVar[tuple[str, ...]] = ()
    #: False where the embedding width is not a choice (LR), so a size means nothing.
    sizeable: ClassVar[bool] = True

    name: str = Field(description="the registered model")
    size: Size | None = Field(None, description="a named size that sets embedding_dim and the "
                              "MLP widths unless they are given: tiny (4, [64]), small (8, "
                              "[128, 64]), medium (16, [256, 128]), base (16, [400, 400, 400])")
    embedding_dim: int = Field(16, ge=1, description="width of every field's embedding")
    dense_init: Literal["xavier_normal", "torch_default"] = Field(
        "xavier_normal", description="initialisation of linear layers: xavier-normal with zero "
        "biases (BARS, FuxiCTR) or PyTorch's default (Kaiming-uniform)")

    @model_validator(mode="before")
    @classmethod
    def _apply_size(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("size") not in SIZES:
            return data
        if not cls.sizeable:
            raise ValueError(f"{data.get('name', 'this model')} has no size to choose; drop "
                             f"the 'size' key")
        return cls.size_defaults(data["size"]) | data

    @classmethod
    def size_defaults(cls, size: str) -> dict[str, Any]:
        """The keys a size sets; models with size-bound keys extend it."""
        dim, widths = SIZES[size]
        return {"embedding_dim": dim} | {name: list(widths) for name in cls.width_fields}


@dataclass
class ModelOutput:
    logit: torch.Tensor
    hidden: torch.Tensor


class CTRModel(nn.Module):
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    name: ClassVar[str] = ""

    def __init__(
        self,
        feature_map: FeatureMap,
        config: ModelConfig,
        embedding: FeatureEmbedding | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.embedding = (embedding if embedding is not None
                          else FeatureEmbedding(feature_map, config.embedding_dim))
        self.num_fields = self.embedding.num_fields
        self.hidden_dim = 0

    def encode(self, batch: Batch) -> ModelOutput:
        raise NotImplementedError

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.encode(batch).logit

    def reset_dense_parameters(self) -> None:
        """Xavier-normal weights and zero biases in every linear and 1x1-convolution layer, as
        BARS/FuxiCTR initialise them: PyTorch's default (Kaiming-uniform) trailed by 0.009 test
        AUC for a DNN after one epoch of 240k rows (BENCHMARKS.md §2.3)."""
        if self.config.dense_init == "torch_default":
            return  # each layer keeps the initialisation PyTorch gave it
        for module in self.modules():
            if type(module) in (nn.Linear, nn.Conv1d):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
