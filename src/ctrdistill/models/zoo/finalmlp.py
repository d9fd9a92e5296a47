"""FinalMLP: two MLP streams with their own feature gates, fused by a multi-head bilinear head."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, PositiveInt, model_validator

from ctrdistill.errors import CtrDistillError
from ctrdistill.models.base import SIZES, Batch, CTRModel, ModelConfig, ModelOutput
from ctrdistill.models.layers.finalmlp import FeatureGating, InteractionAggregation
from ctrdistill.models.layers.mlp import MLP, Activation
from ctrdistill.models.registry import register_model


class FinalMLPConfig(ModelConfig):
    """Sizes from the BARS Criteo_x4 FinalMLP run; `use_fs` defaults on (FinalMLP's gating)."""

    width_fields = ("mlp1_hidden_units", "mlp2_hidden_units")

    name: str = "finalmlp"
    mlp1_hidden_units: list[PositiveInt] = Field(
        default_factory=lambda: [1000] * 5, min_length=1, description="stream 1's MLP")
    mlp1_dropout: float = Field(0.2, ge=0, lt=1, description="dropout in stream 1")
    mlp2_hidden_units: list[PositiveInt] = Field(
        default_factory=lambda: [500], min_length=1, description="stream 2's MLP")
    mlp2_dropout: float = Field(0.1, ge=0, lt=1, description="dropout in stream 2")
    activation: Activation = Field("relu", description="the streams' activation")
    batch_norm: bool = Field(False, description="BatchNorm in the streams")
    use_fs: bool = Field(True, description="feature gating: each stream its own gate")
    fs_hidden_units: list[PositiveInt] = Field(default_factory=lambda: [1000],
                                               description="hidden layers of each gate's MLP")
    fs1_context: list[str] = Field(default_factory=list, description="fields gating stream 1 "
                                   "(none: a learned constant gate)")
    fs2_context: list[str] = Field(default_factory=list, description="fields gating stream 2")
    num_heads: int = Field(50, ge=1, description="heads of the bilinear fusion; must divide "
                           "both streams' last widths")

    @classmethod
    def size_defaults(cls, size: str) -> dict[str, Any]:
        """Also the gates' MLP (one layer of the first width) and as many fusion heads as divide
        the last width, up to the default 50."""
        widths = SIZES[size][1]
        heads = max(h for h in range(1, 51) if widths[-1] % h == 0)
        return super().size_defaults(size) | {"fs_hidden_units": widths[:1], "num_heads": heads}

    @model_validator(mode="after")
    def _check(self) -> FinalMLPConfig:
        widths = (self.mlp1_hidden_units[-1], self.mlp2_hidden_units[-1])
        if any(w % self.num_heads for w in widths):
            raise ValueError(f"num_heads={self.num_heads} must divide the last widths of both "
                             f"MLPs {widths}")
        return self


@register_model("finalmlp")
class FinalMLP(CTRModel):
    """logit = InteractionAggregation(MLP1(gate1 ⊙ e), MLP2(gate2 ⊙ e)), e the flat embeddings.

    hidden: cat(MLP1 output, MLP2 output), the two vectors the fusion layer reads.
    """

    config_class = FinalMLPConfig

    def __init__(self, feature_map, config: FinalMLPConfig, embedding=None) -> None:
        super().__init__(feature_map, config, embedding)
        dim = self.embedding.dim
        width = self.num_fields * dim
        self.mlp1 = MLP(width, config.mlp1_hidden_units, config.activation, config.mlp1_dropout,
                        config.batch_norm)
        self.mlp2 = MLP(width, config.mlp2_hidden_units, config.activation, config.mlp2_dropout,
                        config.batch_norm)
        self.gate1 = self.gate2 = None
        if config.use_fs:
            self.gate1 = FeatureGating(width, dim, self._field_indices(config.fs1_context),
                                       config.fs_hidden_units)
            self.gate2 = FeatureGating(width, dim, self._field_indices(config.fs2_context),
                                       config.fs_hidden_units)
        self.fusion = InteractionAggregation(self.mlp1.output_dim, self.mlp2.output_dim,
                                             config.num_heads)
        self.hidden_dim = self.mlp1.output_dim + self.mlp2.output_dim

    def _field_indices(self, names: list[str]) -> list[int]:
        known = self.embedding.field_names
        unknown = [n for n in names if n not in known]
        if unknown:
            raise CtrDistillError(f"finalmlp: unknown context fields {unknown} "
                                  f"(valid: {', '.join(known)})")
        return [known.index(n) for n in names]

    def encode(self, batch: Batch) -> ModelOutput:
        emb = self.embedding(batch)
        x1 = self.gate1(emb) if self.gate1 is not None else emb.flatten(1)
        x2 = self.gate2(emb) if self.gate2 is not None else emb.flatten(1)
        h1, h2 = self.mlp1(x1), self.mlp2(x2)
        return ModelOutput(self.fusion(h1, h2), torch.cat([h1, h2], dim=1))
