"""Logistic regression: a bias plus one learned weight per feature value."""

from __future__ import annotations

import torch
from pydantic import Field, field_validator
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelConfig, ModelOutput
from ctrdistill.models.layers.embedding import FeatureEmbedding
from ctrdistill.models.registry import register_model


class LRConfig(ModelConfig):
    sizeable = False

    name: str = "lr"
    embedding_dim: int = Field(1, description="always 1: one weight per feature value")

    @field_validator("embedding_dim")
    @classmethod
    def _one(cls, value: int) -> int:
        # A wider value would be silently ignored, so a copied config would mislead.
        if value != 1:
            raise ValueError(f"LR has one weight per feature value, so embedding_dim must be 1 "
                             f"(got {value}); drop the key")
        return value


@register_model("lr")
class LR(CTRModel):
    """logit = b + sum_i w_i.

    hidden: the per-field weights w_i (F).
    """

    config_class = LRConfig

    def __init__(self, feature_map, config: LRConfig, embedding=None) -> None:
        # The weights are a 1-dim embedding, so a shared wider embedding does not apply here.
        super().__init__(feature_map, config, FeatureEmbedding(feature_map, 1))
        self.bias = nn.Parameter(torch.zeros(1))
        self.hidden_dim = self.num_fields

    def encode(self, batch: Batch) -> ModelOutput:
        weights = self.embedding(batch).squeeze(-1)
        return ModelOutput(weights.sum(1) + self.bias, weights)
