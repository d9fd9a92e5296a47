"""PNN: an MLP over the field embeddings and their pairwise products (inner or outer)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelOutput
from ctrdistill.models.layers.mlp import MLP
from ctrdistill.models.layers.product import InnerProductInteraction, OuterProductInteraction
from ctrdistill.models.registry import register_model
from ctrdistill.models.zoo.dnn import DNNConfig


class PNNConfig(DNNConfig):
    name: str = "pnn"
    product_type: Literal["inner", "outer"] = Field(
        "inner", description="IPNN (pairwise dots) or OPNN (summed outer products)")


@register_model("pnn")
class PNN(CTRModel):
    """logit = head(MLP(cat(flat embeddings, products))); IPNN or OPNN by `product_type`.

    hidden: the MLP's last hidden layer.
    """

    config_class = PNNConfig

    def __init__(self, feature_map, config: PNNConfig, embedding=None) -> None:
        super().__init__(feature_map, config, embedding)
        dim = self.embedding.dim
        self.product = (InnerProductInteraction(self.num_fields) if config.product_type == "inner"
                        else OuterProductInteraction(dim))
        self.mlp = MLP(self.num_fields * dim + self.product.output_dim, config.hidden_units,
                       config.activation, config.dropout, config.batch_norm)
        self.head = nn.Linear(self.mlp.output_dim, 1)
        self.hidden_dim = self.mlp.output_dim

    def encode(self, batch: Batch) -> ModelOutput:
        emb = self.embedding(batch)
        hidden = self.mlp(torch.cat([emb.flatten(1), self.product(emb)], dim=1))
        return ModelOutput(self.head(hidden).squeeze(-1), hidden)
