"""AutoInt: stacked multi-head self-attention over fields; AutoInt+ adds a parallel MLP."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ctrdistill.models.base import Batch, CTRModel, ModelOutput
from ctrdistill.models.layers.attention import MultiHeadSelfAttention
from ctrdistill.models.layers.mlp import MLP
from ctrdistill.models.registry import register_model
from ctrdistill.models.zoo.dnn import DNNConfig


class AutoIntConfig(DNNConfig):
    """The DNN fields (hidden_units, ...) configure AutoInt+'s MLP and apply with `use_dnn`."""

    name: str = "autoint"
    attention_layers: int = Field(3, ge=1, description="stacked self-attention layers")
    num_heads: int = Field(2, ge=1, description="heads per layer")
    attention_dim: int = Field(32, ge=1, description="width of each head")
    use_residual: bool = Field(True, description="add a projected residual to each layer")
    use_scale: bool = Field(False, description="scale attention logits by 1/sqrt(head width)")
    layer_norm: bool = Field(False, description="LayerNorm after each layer")
    attention_dropout: float = Field(0.0, ge=0, lt=1,
                                     description="dropout on the attention weights")
    use_dnn: bool = Field(False, description="AutoInt+: add a parallel MLP")


@register_model("autoint")
class AutoInt(CTRModel):
    """logit = head(flat attention output) (+ head(MLP(flat embeddings)) with `use_dnn`).

    hidden: the flattened output of the last attention layer, concatenated with the MLP's last
    hidden layer when `use_dnn` (AutoInt+).
    """

    config_class = AutoIntConfig

    def __init__(self, feature_map, config: AutoIntConfig, embedding=None) -> None:
        super().__init__(feature_map, config, embedding)
        layers, width = [], self.embedding.dim
        for _ in range(config.attention_layers):
            layers.append(MultiHeadSelfAttention(
                width, config.attention_dim, config.num_heads, config.use_residual,
                config.use_scale, config.layer_norm, config.attention_dropout))
            width = layers[-1].output_dim
        self.attention = nn.Sequential(*layers)
        self.hidden_dim = self.num_fields * width
        self.mlp = None
        if config.use_dnn:
            self.mlp = MLP(self.num_fields * self.embedding.dim, config.hidden_units,
                           config.activation, config.dropout, config.batch_norm)
            self.hidden_dim += self.mlp.output_dim
        self.head = nn.Linear(self.hidden_dim, 1)

    def encode(self, batch: Batch) -> ModelOutput:
        emb = self.embedding(batch)
        hidden = self.attention(emb).flatten(1)
        if self.mlp is not None:
            hidden = torch.cat([hidden, self.mlp(emb.flatten(1))], dim=1)
        return ModelOutput(self.head(hidden).squeeze(-1), hidden)
