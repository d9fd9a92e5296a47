"""Wide & Deep: a linear (wide) part over feature values plus an MLP (deep) over embeddings."""

from __future__ import annotations

import torch
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelOutput
from ctrdistill.models.layers.linear import FeatureLinear
from ctrdistill.models.layers.mlp import MLP
from ctrdistill.models.registry import register_model
from ctrdistill.models.zoo.dnn import DNNConfig


class WideDeepConfig(DNNConfig):
    name: str = "widedeep"


@register_model("widedeep")
class WideDeep(CTRModel):
    """logit = sum_i w_i + head(MLP(flat embeddings)).

    hidden: cat(first-order weights (F), deep part's last hidden layer); the logit is linear in
    it (weights of 1 on the wide part, the head on the deep part).
    """

    config_class = WideDeepConfig

    def __init__(self, feature_map, config: WideDeepConfig, embedding=None) -> None:
        super().__init__(feature_map, config, embedding)
        self.linear = FeatureLinear(feature_map)
        self.mlp = MLP(self.num_fields * self.embedding.dim, config.hidden_units,
                       config.activation, config.dropout, config.batch_norm)
        self.head = nn.Linear(self.mlp.output_dim, 1)
        self.hidden_dim = self.linear.output_dim + self.mlp.output_dim

    def encode(self, batch: Batch) -> ModelOutput:
        wide = self.linear(batch)
        deep = self.mlp(self.embedding(batch).flatten(1))
        logit = wide.sum(1) + self.head(deep).squeeze(-1)
        return ModelOutput(logit, torch.cat([wide, deep], dim=1))
