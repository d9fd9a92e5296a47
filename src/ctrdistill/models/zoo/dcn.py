"""DCN: a cross network and an MLP in parallel on the flat embeddings."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelOutput
from ctrdistill.models.layers.cross_net import CrossNet
from ctrdistill.models.layers.mlp import MLP
from ctrdistill.models.registry import register_model
from ctrdistill.models.zoo.dnn import DNNConfig


class DCNConfig(DNNConfig):
    name: str = "dcn"
    num_cross_layers: int = Field(3, ge=1, description="depth of the cross network")


@register_model("dcn")
class DCN(CTRModel):
    """logit = head(cat(CrossNet(x), MLP(x))), x the flat embeddings.

    hidden: cat(cross network output, the MLP's last hidden layer).
    """

    config_class = DCNConfig

    def __init__(self, feature_map, config: DCNConfig, embedding=None) -> None:
        super().__init__(feature_map, config, embedding)
        width = self.num_fields * self.embedding.dim
        self.cross = CrossNet(width, config.num_cross_layers)
        self.mlp = MLP(width, config.hidden_units, config.activation, config.dropout,
                       config.batch_norm)
        self.hidden_dim = self.cross.output_dim + self.mlp.output_dim
        self.head = nn.Linear(self.hidden_dim, 1)

    def encode(self, batch: Batch) -> ModelOutput:
        flat = self.embedding(batch).flatten(1)
        hidden = torch.cat([self.cross(flat), self.mlp(flat)], dim=1)
        return ModelOutput(self.head(hidden).squeeze(-1), hidden)
