"""First-order (wide) term: one learned weight per feature value, as in logistic regression."""

from __future__ import annotations

import torch
from torch import nn

from ctrdistill.data.batch import Batch
from ctrdistill.data.schema import FeatureMap
from ctrdistill.models.layers.embedding import FeatureEmbedding


class FeatureLinear(nn.Module):
    """Per-field first-order weights (B, F); the caller sums them into the logit.

    The weights are a dimension-1 FeatureEmbedding of the model's own, so they stay private even
    when the model's field embedding is shared, and sparse optimizers work on them unchanged.
    Returning them per field (not summed) lets models expose them in their hidden vector. There
    is no bias here: the model's output layer already has one.
    """

    def __init__(self, feature_map: FeatureMap) -> None:
        super().__init__()
        self.weights = FeatureEmbedding(feature_map, 1)
        self.output_dim = self.weights.num_fields

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.weights(batch).squeeze(-1)
