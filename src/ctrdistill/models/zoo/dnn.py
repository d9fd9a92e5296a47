"""DNN: concatenated field embeddings through an MLP (the default student)."""

from __future__ import annotations

from pydantic import Field, PositiveInt
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelConfig, ModelOutput
from ctrdistill.models.layers.mlp import MLP, Activation
from ctrdistill.models.registry import register_model


class DNNConfig(ModelConfig):
    """The BARS protocol's MLP: [400, 400, 400], ReLU, dropout 0.1, no batch norm."""

    width_fields = ("hidden_units",)

    name: str = "dnn"
    hidden_units: list[PositiveInt] = Field(default_factory=lambda: [400, 400, 400],
                                            description="widths of the MLP's hidden layers")
    activation: Activation = Field("relu", description="the hidden layers' activation")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout after each hidden layer")
    batch_norm: bool = Field(False, description="BatchNorm between each Linear and activation")


@register_model("dnn")
class DNN(CTRModel):
    """logit = head(MLP(flat embeddings)).

    hidden: the MLP's last hidden layer.
    """

    config_class = DNNConfig

    def __init__(self, feature_map, config: DNNConfig, embedding=None) -> None:
        super().__init__(feature_map, config, embedding)
        width = self.num_fields * self.embedding.dim
        self.mlp = MLP(width, config.hidden_units, config.activation, config.dropout,
                       config.batch_norm)
        self.hidden_dim = self.mlp.output_dim
        self.head = nn.Linear(self.hidden_dim, 1)

    def encode(self, batch: Batch) -> ModelOutput:
        hidden = self.mlp(self.embedding(batch).flatten(1))
        return ModelOutput(self.head(hidden).squeeze(-1), hidden)
