"""DeepFM: FM and an MLP side by side on one shared embedding."""

from __future__ import annotations

import torch
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelOutput
from ctrdistill.models.layers.fm import FMInteraction
from ctrdistill.models.layers.linear import FeatureLinear
from ctrdistill.models.layers.mlp import MLP
from ctrdistill.models.registry import register_model
from ctrdistill.models.zoo.dnn import DNNConfig


class DeepFMConfig(DNNConfig):
    name: str = "deepfm"


@register_model("deepfm")
class DeepFM(CTRModel):
    """logit = sum_i w_i + sum_{i<j} <v_i, v_j> + head(MLP(flat embeddings)).

    hidden: cat(first-order weights (F), FM interaction vector (D), deep part's last hidden
    layer); the logit is the sum of the first two blocks plus the head applied to the third.
    """

    config_class = DeepFMConfig

    def __init__(self, feature_map, config: DeepFMConfig, embedding=None) -> None:
        super().__init__(feature_map, config, embedding)
        self.linear = FeatureLinear(feature_map)
        self.fm = FMInteraction()
        self.mlp = MLP(self.num_fields * self.embedding.dim, config.hidden_units,
                       config.activation, config.dropout, config.batch_norm)
        self.head = nn.Linear(self.mlp.output_dim, 1)
        self.hidden_dim = self.linear.output_dim + self.embedding.dim + self.mlp.output_dim

    def encode(self, batch: Batch) -> ModelOutput:
        emb = self.embedding(batch)
        shallow = torch.cat([self.linear(batch), self.fm(emb)], dim=1)
        deep = self.mlp(emb.flatten(1))
        logit = shallow.sum(1) + self.head(deep).squeeze(-1)
        return ModelOutput(logit, torch.cat([shallow, deep], dim=1))
