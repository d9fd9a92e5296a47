"""DNN: concatenated field embeddings through an MLP (the default student)."""

from __future__ import annotations

from pydantic import Field
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelConfig, ModelOutput
from ctrdistill.models.layers.mlp import MLP
from ctrdistill.models.registry import register_model


class DNNConfig(ModelConfig):
    name: str = "dnn"
    hidden_units: list[int] = Field(default_factory=lambda: [400, 400, 400])
    activation: str = "relu"
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_norm: bool = False


@register_model("dnn")
class DNN(CTRModel):
    config_class = DNNConfig

    def __init__(self, feature_map, config: DNNConfig, sparse=False, embedding=None) -> None:
        super().__init__(feature_map, config, sparse, embedding)
        width = self.num_fields * self.embedding.dim
        self.mlp = MLP(width, config.hidden_units, config.activation, config.dropout,
                       config.batch_norm)
        self.hidden_dim = self.mlp.output_dim
        self.head = nn.Linear(self.hidden_dim, 1)

    def encode(self, batch: Batch) -> ModelOutput:
        hidden = self.mlp(self.embedding(batch).flatten(1))
        return ModelOutput(self.head(hidden).squeeze(-1), hidden)
