"""FiBiNET: bilinear crosses of the raw and the SENET-reweighted embeddings, then an MLP."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelOutput
from ctrdistill.models.layers.bilinear import BilinearInteraction, BilinearType
from ctrdistill.models.layers.linear import FeatureLinear
from ctrdistill.models.layers.mlp import MLP, Activation
from ctrdistill.models.layers.senet import SENETLayer
from ctrdistill.models.registry import register_model
from ctrdistill.models.zoo.dnn import DNNConfig


class FiBiNETConfig(DNNConfig):
    name: str = "fibinet"
    reduction_ratio: float = Field(3.0, ge=1, description="SENET bottleneck: fields / this")
    excitation_activation: Activation = Field(
        "relu", description="SENET's output activation ('sigmoid': strictly positive weights)")
    bilinear_type: BilinearType = Field(
        "field_interaction", description="one bilinear matrix for all pairs ('field_all'), per "
        "field ('field_each') or per pair ('field_interaction')")


@register_model("fibinet")
class FiBiNET(CTRModel):
    """logit = sum_i w_i + head(MLP(cat(Bilinear_p(E), Bilinear_q(SENET(E))))).

    hidden: cat(first-order weights (F), the MLP's last hidden layer).
    """

    config_class = FiBiNETConfig

    def __init__(self, feature_map, config: FiBiNETConfig, embedding=None) -> None:
        super().__init__(feature_map, config, embedding)
        fields, dim = self.num_fields, self.embedding.dim
        self.linear = FeatureLinear(feature_map)
        self.senet = SENETLayer(fields, config.reduction_ratio, config.excitation_activation)
        self.bilinear_raw = BilinearInteraction(fields, dim, config.bilinear_type)
        self.bilinear_senet = BilinearInteraction(fields, dim, config.bilinear_type)
        self.mlp = MLP(2 * self.bilinear_raw.num_pairs * dim, config.hidden_units,
                       config.activation, config.dropout, config.batch_norm)
        self.head = nn.Linear(self.mlp.output_dim, 1)
        self.hidden_dim = self.linear.output_dim + self.mlp.output_dim

    def encode(self, batch: Batch) -> ModelOutput:
        wide = self.linear(batch)
        emb = self.embedding(batch)
        crosses = torch.cat([self.bilinear_raw(emb), self.bilinear_senet(self.senet(emb))], dim=1)
        deep = self.mlp(crosses.flatten(1))
        logit = wide.sum(1) + self.head(deep).squeeze(-1)
        return ModelOutput(logit, torch.cat([wide, deep], dim=1))
