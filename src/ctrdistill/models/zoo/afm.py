"""AFM: FM whose pairwise interactions are pooled with learned attention weights."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelConfig, ModelOutput
from ctrdistill.models.layers.afm import AttentionalPooling
from ctrdistill.models.layers.linear import FeatureLinear
from ctrdistill.models.registry import register_model


class AFMConfig(ModelConfig):
    name: str = "afm"
    attention_dim: int = Field(8, ge=1, description="width of the attention network")
    attention_dropout: float = Field(0.0, ge=0, lt=1,
                                     description="dropout on the attention weights")


@register_model("afm")
class AFM(CTRModel):
    """logit = sum_i w_i + p^T sum_{i<j} a_ij (v_i ⊙ v_j) + b.

    hidden: cat(first-order weights (F), the attention-pooled interaction vector (D)).
    """

    config_class = AFMConfig

    def __init__(self, feature_map, config: AFMConfig, embedding=None) -> None:
        super().__init__(feature_map, config, embedding)
        self.linear = FeatureLinear(feature_map)
        self.pooling = AttentionalPooling(self.num_fields, self.embedding.dim,
                                          config.attention_dim, config.attention_dropout)
        self.head = nn.Linear(self.pooling.output_dim, 1)
        self.hidden_dim = self.linear.output_dim + self.pooling.output_dim

    def encode(self, batch: Batch) -> ModelOutput:
        wide = self.linear(batch)
        pooled = self.pooling(self.embedding(batch))
        logit = wide.sum(1) + self.head(pooled).squeeze(-1)
        return ModelOutput(logit, torch.cat([wide, pooled], dim=1))
