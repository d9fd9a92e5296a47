"""DCNv2: full-rank (or low-rank mixture) cross network, combined with MLPs four ways."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelConfig, ModelOutput
from ctrdistill.models.layers.cross_net_v2 import CrossNetMix, CrossNetV2
from ctrdistill.models.layers.mlp import MLP, Activation
from ctrdistill.models.registry import register_model


class DCNv2Config(ModelConfig):
    width_fields = ("stacked_dnn_hidden_units", "parallel_dnn_hidden_units")

    name: str = "dcnv2"
    model_structure: Literal["crossnet_only", "stacked", "parallel", "stacked_parallel"] = Field(
        "parallel", description="how the cross network and the MLPs combine (see the model)")
    use_low_rank_mixture: bool = Field(
        False, description="DCN-Mix: a mixture of low-rank experts instead of full-rank layers")
    low_rank: int = Field(32, ge=1, description="rank of each expert (with use_low_rank_mixture)")
    num_experts: int = Field(4, ge=1, description="experts per layer (with use_low_rank_mixture)")
    num_cross_layers: int = Field(3, ge=1, description="depth of the cross network")
    stacked_dnn_hidden_units: list[PositiveInt] = Field(
        default_factory=lambda: [400, 400, 400], description="MLP on the cross output (stacked)")
    parallel_dnn_hidden_units: list[PositiveInt] = Field(
        default_factory=lambda: [400, 400, 400], description="MLP beside the cross network "
        "(parallel)")
    activation: Activation = Field("relu", description="the MLPs' activation")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout after each MLP hidden layer")
    batch_norm: bool = Field(False, description="BatchNorm in the MLPs")

    @model_validator(mode="after")
    def _check(self) -> DCNv2Config:
        if "stacked" in self.model_structure and not self.stacked_dnn_hidden_units:
            raise ValueError(f"model_structure '{self.model_structure}' needs "
                             "stacked_dnn_hidden_units")
        if "parallel" in self.model_structure and not self.parallel_dnn_hidden_units:
            raise ValueError(f"model_structure '{self.model_structure}' needs "
                             "parallel_dnn_hidden_units")
        return self


@register_model("dcnv2")
class DCNv2(CTRModel):
    """x the flat embeddings, c = cross(x); the head reads, by `model_structure`:
    crossnet_only: c; stacked: MLP(c); parallel: cat(c, MLP(x));
    stacked_parallel: cat(MLP_s(c), MLP_p(x)).

    hidden: that vector (the head's input).
    """

    config_class = DCNv2Config

    def __init__(self, feature_map, config: DCNv2Config, embedding=None) -> None:
        super().__init__(feature_map, config, embedding)
        width = self.num_fields * self.embedding.dim
        self.cross = (CrossNetMix(width, config.num_cross_layers, config.low_rank,
                                  config.num_experts)
                      if config.use_low_rank_mixture
                      else CrossNetV2(width, config.num_cross_layers))

        def mlp(units: list[int]) -> MLP:
            return MLP(width, units, config.activation, config.dropout, config.batch_norm)

        structure = config.model_structure
        self.stacked = mlp(config.stacked_dnn_hidden_units) if "stacked" in structure else None
        self.parallel = mlp(config.parallel_dnn_hidden_units) if "parallel" in structure else None
        self.hidden_dim = (self.stacked.output_dim if self.stacked is not None else width) + (
            self.parallel.output_dim if self.parallel is not None else 0)
        self.head = nn.Linear(self.hidden_dim, 1)

    def encode(self, batch: Batch) -> ModelOutput:
        flat = self.embedding(batch).flatten(1)
        cross = self.cross(flat)
        parts = [self.stacked(cross) if self.stacked is not None else cross]
        if self.parallel is not None:
            parts.append(self.parallel(flat))
        hidden = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return ModelOutput(self.head(hidden).squeeze(-1), hidden)
