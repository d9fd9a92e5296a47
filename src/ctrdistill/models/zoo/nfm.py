"""NFM: the FM interaction vector (Bi-Interaction pooling) fed through an MLP."""

from __future__ import annotations

import torch
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelOutput
from ctrdistill.models.layers.fm import FMInteraction
from ctrdistill.models.layers.linear import FeatureLinear
from ctrdistill.models.layers.mlp import MLP
from ctrdistill.models.registry import register_model
from ctrdistill.models.zoo.dnn import DNNConfig


class NFMConfig(DNNConfig):
    name: str = "nfm"


@register_model("nfm")
class NFM(CTRModel):
    """logit = sum_i w_i + head(MLP(sum_{i<j} v_i ⊙ v_j)).

    hidden: cat(first-order weights (F), the MLP's last hidden layer).
    """

    config_class = NFMConfig

    def __init__(self, feature_map, config: NFMConfig, embedding=None) -> None:
        super().__init__(feature_map, config, embedding)
        self.linear = FeatureLinear(feature_map)
        self.bi_interaction = FMInteraction()
        self.mlp = MLP(self.embedding.dim, config.hidden_units, config.activation,
                       config.dropout, config.batch_norm)
        self.head = nn.Linear(self.mlp.output_dim, 1)
        self.hidden_dim = self.linear.output_dim + self.mlp.output_dim

    def encode(self, batch: Batch) -> ModelOutput:
        wide = self.linear(batch)
        deep = self.mlp(self.bi_interaction(self.embedding(batch)))
        logit = wide.sum(1) + self.head(deep).squeeze(-1)
        return ModelOutput(logit, torch.cat([wide, deep], dim=1))
