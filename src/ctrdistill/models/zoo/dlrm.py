"""DLRM: a bottom MLP embeds the raw numerics, dot products cross all vectors, a top MLP reads."""

from __future__ import annotations

from pydantic import Field, PositiveInt
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelConfig, ModelOutput
from ctrdistill.models.layers.dot_interaction import DotInteraction
from ctrdistill.models.layers.mlp import MLP
from ctrdistill.models.registry import register_model


class DLRMConfig(ModelConfig):
    """MLP sizes from the DLRM reference Criteo Kaggle run (bottom 512-256-64, top 512-256)."""

    name: str = "dlrm"
    bottom_mlp_units: list[PositiveInt] = Field(default_factory=lambda: [512, 256, 64])
    top_mlp_units: list[PositiveInt] = Field(default_factory=lambda: [512, 256])
    activation: str = "relu"
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_norm: bool = False
    self_interaction: bool = False


@register_model("dlrm")
class DLRM(CTRModel):
    """logit = head(top MLP(cat(d, <u_i, u_j>_{i<j}))), u = [d; field embeddings].

    d = bottom MLP(raw numeric values) is a D-dim vector (ReLU-ended, as in DLRM). Numeric fields
    also keep their per-field embeddings from the shared FeatureEmbedding, so models built on
    a shared embedding see the same fields; without numeric fields there is no bottom MLP.
    hidden: the top MLP's last hidden layer.
    """

    config_class = DLRMConfig

    def __init__(self, feature_map, config: DLRMConfig, sparse=False, embedding=None) -> None:
        super().__init__(feature_map, config, sparse, embedding)
        dim, num_numeric = self.embedding.dim, len(feature_map.numeric)
        self.bottom = (MLP(num_numeric, [*config.bottom_mlp_units, dim], config.activation,
                           config.dropout, config.batch_norm) if num_numeric else None)
        self.interaction = DotInteraction(self.num_fields, dim, self.bottom is not None,
                                          config.self_interaction)
        self.top = MLP(self.interaction.output_dim, config.top_mlp_units, config.activation,
                       config.dropout, config.batch_norm)
        self.head = nn.Linear(self.top.output_dim, 1)
        self.hidden_dim = self.top.output_dim

    def encode(self, batch: Batch) -> ModelOutput:
        dense = self.bottom(batch["num"]) if self.bottom is not None else None
        hidden = self.top(self.interaction(self.embedding(batch), dense))
        return ModelOutput(self.head(hidden).squeeze(-1), hidden)
