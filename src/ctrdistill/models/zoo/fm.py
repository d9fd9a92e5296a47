"""FM: logistic regression plus a factorised weight <v_i, v_j> for every pair of fields."""

from __future__ import annotations

import torch
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelConfig, ModelOutput
from ctrdistill.models.layers.fm import FMInteraction
from ctrdistill.models.layers.linear import FeatureLinear
from ctrdistill.models.registry import register_model


class FMConfig(ModelConfig):
    name: str = "fm"


@register_model("fm")
class FM(CTRModel):
    """logit = b + sum_i w_i + sum_{i<j} <v_i, v_j>.

    hidden: cat(first-order weights (F), FM interaction vector sum_{i<j} v_i ⊙ v_j (D)); the
    logit is exactly b + hidden.sum(-1), so the hidden vector carries the whole prediction.
    """

    config_class = FMConfig

    def __init__(self, feature_map, config: FMConfig, embedding=None) -> None:
        super().__init__(feature_map, config, embedding)
        self.linear = FeatureLinear(feature_map)
        self.fm = FMInteraction()
        self.bias = nn.Parameter(torch.zeros(1))
        self.hidden_dim = self.linear.output_dim + self.embedding.dim

    def encode(self, batch: Batch) -> ModelOutput:
        hidden = torch.cat([self.linear(batch), self.fm(self.embedding(batch))], dim=1)
        return ModelOutput(hidden.sum(1) + self.bias, hidden)
