"""xDeepFM: linear part, CIN (explicit vector-wise crosses) and an MLP (implicit crosses)."""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelOutput
from ctrdistill.models.layers.cin import CIN
from ctrdistill.models.layers.linear import FeatureLinear
from ctrdistill.models.layers.mlp import MLP
from ctrdistill.models.registry import register_model
from ctrdistill.models.zoo.dnn import DNNConfig


class XDeepFMConfig(DNNConfig):
    name: str = "xdeepfm"
    cin_hidden_units: list[PositiveInt] = Field(
        default_factory=lambda: [16, 16, 16], min_length=1,
        description="feature maps of each CIN layer")
    split_half: bool = Field(True, description="half of each CIN layer's maps go on to the "
                             "next layer, half to the output (all but the last must be even)")

    @model_validator(mode="after")
    def _check(self) -> XDeepFMConfig:
        if self.split_half and any(u % 2 for u in self.cin_hidden_units[:-1]):
            raise ValueError("split_half needs even cin_hidden_units (but the last), got "
                             f"{self.cin_hidden_units}")
        return self


@register_model("xdeepfm")
class XDeepFM(CTRModel):
    """logit = sum_i w_i + head(cat(CIN(E), MLP(flat E))).

    hidden: cat(first-order weights (F), CIN's pooled feature maps, the MLP's last hidden layer).
    """

    config_class = XDeepFMConfig

    def __init__(self, feature_map, config: XDeepFMConfig, embedding=None) -> None:
        super().__init__(feature_map, config, embedding)
        self.linear = FeatureLinear(feature_map)
        self.cin = CIN(self.num_fields, config.cin_hidden_units, config.split_half)
        self.mlp = MLP(self.num_fields * self.embedding.dim, config.hidden_units,
                       config.activation, config.dropout, config.batch_norm)
        self.head = nn.Linear(self.cin.output_dim + self.mlp.output_dim, 1)
        self.hidden_dim = self.linear.output_dim + self.cin.output_dim + self.mlp.output_dim

    def encode(self, batch: Batch) -> ModelOutput:
        wide = self.linear(batch)
        emb = self.embedding(batch)
        deep = torch.cat([self.cin(emb), self.mlp(emb.flatten(1))], dim=1)
        logit = wide.sum(1) + self.head(deep).squeeze(-1)
        return ModelOutput(logit, torch.cat([wide, deep], dim=1))
