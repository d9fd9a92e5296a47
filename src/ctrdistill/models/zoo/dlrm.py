"""DLRM: a bottom MLP embeds the raw numerics, dot products cross all vectors, a top MLP reads."""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelConfig, ModelOutput
from ctrdistill.models.layers.dot_interaction import DotInteraction
from ctrdistill.models.layers.embedding import FeatureEmbedding
from ctrdistill.models.layers.mlp import MLP, Activation
from ctrdistill.models.registry import register_model


class DLRMConfig(ModelConfig):
    """MLP sizes from the DLRM reference Criteo Kaggle run (bottom 512-256-64, top 512-256)."""

    width_fields = ("top_mlp_units",)

    name: str = "dlrm"
    bottom_mlp_units: list[PositiveInt] = Field(
        default_factory=lambda: [512, 256, 64], description="hidden layers of the bottom MLP "
        "over the numeric fields (it ends in a layer of embedding_dim)")
    top_mlp_units: list[PositiveInt] = Field(
        default_factory=lambda: [512, 256], description="hidden layers of the top MLP")
    activation: Activation = Field("relu", description="the MLPs' activation")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout after each MLP hidden layer")
    batch_norm: bool = Field(False, description="BatchNorm in the MLPs")
    self_interaction: bool = Field(False, description="also each vector's dot with itself")


@register_model("dlrm")
class DLRM(CTRModel):
    """logit = head(top MLP(cat(d, <u_i, u_j>_{i<j}))), u = [d; sparse field embeddings].

    As in DLRM, numeric fields enter only through d = bottom MLP(raw numeric values), a D-dim
    vector (ReLU-ended) that is one of the interaction's vectors; the others are the embeddings
    of the categorical and sequence fields. A shared embedding also embeds the numeric fields
    (for the other models on it); DLRM leaves those out. Without numeric fields there is no
    bottom MLP.
    hidden: the top MLP's last hidden layer.
    """

    config_class = DLRMConfig

    def __init__(self, feature_map, config: DLRMConfig, embedding=None) -> None:
        super().__init__(feature_map, config, embedding if embedding is not None else
                         FeatureEmbedding(feature_map, config.embedding_dim, numeric=False))
        dim, num_numeric = self.embedding.dim, len(feature_map.numeric)
        self.bottom = (MLP(num_numeric, [*config.bottom_mlp_units, dim], config.activation,
                           config.dropout, config.batch_norm) if num_numeric else None)
        sparse_fields = self.embedding.n_cat + self.embedding.n_seq
        self.interaction = DotInteraction(sparse_fields, dim, self.bottom is not None,
                                          config.self_interaction)
        self.top = MLP(self.interaction.output_dim, config.top_mlp_units, config.activation,
                       config.dropout, config.batch_norm)
        self.head = nn.Linear(self.top.output_dim, 1)
        self.hidden_dim = self.top.output_dim

    def encode(self, batch: Batch) -> ModelOutput:
        dense = self.bottom(batch.num) if self.bottom is not None else None
        emb = self.embedding(batch)
        if self.embedding.n_num:  # a shared embedding's numeric fields: not DLRM's to use
            start, stop = self.embedding.n_cat, self.embedding.n_cat + self.embedding.n_num
            emb = torch.cat([emb[:, :start], emb[:, stop:]], dim=1)
        hidden = self.top(self.interaction(emb, dense))
        return ModelOutput(self.head(hidden).squeeze(-1), hidden)
