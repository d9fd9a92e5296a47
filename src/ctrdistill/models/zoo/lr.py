"""Logistic regression: a bias plus one learned weight per feature value."""

from __future__ import annotations

import torch
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelConfig, ModelOutput
from ctrdistill.models.layers.embedding import FeatureEmbedding
from ctrdistill.models.registry import register_model


class LRConfig(ModelConfig):
    name: str = "lr"
    embedding_dim: int = 1


@register_model("lr")
class LR(CTRModel):
    config_class = LRConfig

    def __init__(self, feature_map, config: LRConfig, sparse=False, embedding=None) -> None:
        # The weights are a 1-dim embedding, so a shared wider embedding does not apply here.
        super().__init__(feature_map, config, sparse, FeatureEmbedding(feature_map, 1, sparse))
        self.bias = nn.Parameter(torch.zeros(1))
        self.hidden_dim = self.num_fields

    def encode(self, batch: Batch) -> ModelOutput:
        weights = self.embedding(batch).squeeze(-1)
        return ModelOutput(weights.sum(1) + self.bias, weights)
