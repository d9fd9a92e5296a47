"""CrossFM: FM plus named third-order field crosses, the synthetic benchmark's own form.

The `criteo` synthetic preset's hidden logit is first-order weights, a low-rank pairwise term and
a product of per-id scalars over a few field triples. Fitting exactly that form on the training
rows gives the learnability reference: the AUC the right architecture reaches from this many
rows, so a gap to the Bayes AUC splits into data size (Bayes - CrossFM) and architecture
(CrossFM - model). It is not in the zoo: it needs the triples, which only the generator knows.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ctrdistill.errors import CtrDistillError
from ctrdistill.models.base import Batch, CTRModel, ModelConfig, ModelOutput
from ctrdistill.models.layers.embedding import FeatureEmbedding
from ctrdistill.models.layers.fm import FMInteraction
from ctrdistill.models.layers.linear import FeatureLinear
from ctrdistill.models.registry import register_model


class CrossFMConfig(ModelConfig):
    name: str = "crossfm"
    embedding_dim: int = Field(4, ge=1, description="rank of the pairwise term")
    crosses: list[tuple[str, str, str]] = Field(
        default_factory=list, description="categorical field triples whose per-id scalars "
        "multiply into the logit")


@register_model("crossfm", zoo=False)
class CrossFM(CTRModel):
    """logit = b + sum_i w_i + sum_{i<j} <v_i, v_j> + sum_c a_c * prod_{f in c} u_{c,f}.

    hidden: cat(first-order weights (F), FM vector (D), cross products (C)), whose sum is the
    logit less the bias.
    """

    config_class = CrossFMConfig

    def __init__(self, feature_map, config: CrossFMConfig, embedding=None) -> None:
        super().__init__(feature_map, config, embedding)
        names = [f.name for f in feature_map.categorical]
        unknown = sorted({f for triple in config.crosses for f in triple} - set(names))
        if unknown:
            raise CtrDistillError(f"crossfm: crosses name fields that are not categorical: "
                                  f"{', '.join(unknown)} (categorical: {', '.join(names)})")
        self.linear = FeatureLinear(feature_map)
        self.fm = FMInteraction()
        # One scalar table per cross; a product of three near-zero scalars would barely move,
        # so they start at a spread of 0.3.
        self.cross_tables = nn.ModuleList(FeatureEmbedding(feature_map, 1, init_std=0.3)
                                          for _ in config.crosses)
        self.register_buffer("cross_fields", torch.tensor(
            [[names.index(f) for f in triple] for triple in config.crosses],
            dtype=torch.long).reshape(-1, 3))
        self.bias = nn.Parameter(torch.zeros(1))
        self.hidden_dim = self.linear.output_dim + self.embedding.dim + len(config.crosses)

    def encode(self, batch: Batch) -> ModelOutput:
        parts = [self.linear(batch), self.fm(self.embedding(batch))]
        for table, fields in zip(self.cross_tables, self.cross_fields, strict=True):
            scalars = table(batch).squeeze(-1)[:, fields]  # categorical fields come first
            parts.append(scalars.prod(1, keepdim=True))
        hidden = torch.cat(parts, dim=1)
        return ModelOutput(hidden.sum(1) + self.bias, hidden)
