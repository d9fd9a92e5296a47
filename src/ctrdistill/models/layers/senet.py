"""FiBiNET's SENET layer: learned per-sample field importance that re-weights embeddings."""

from __future__ import annotations

import torch
from torch import nn

from ctrdistill.models.layers.mlp import Activation, activation


class SENETLayer(nn.Module):
    """Squeeze each field to its mean, excite through a bottleneck, scale the field by the result.

    The bottleneck (F -> F / reduction_ratio -> F) makes field weights depend on the whole
    sample, so a field can matter in one context and be muted in another. FiBiNET uses ReLU
    for both activations, so weights are non-negative; "sigmoid" makes them strictly positive.
    """

    def __init__(self, num_fields: int, reduction_ratio: float = 3.0,
                 excitation_activation: Activation = "relu") -> None:
        super().__init__()
        reduced = max(1, int(num_fields / reduction_ratio))
        self.excitation = nn.Sequential(
            nn.Linear(num_fields, reduced, bias=False), nn.ReLU(),
            nn.Linear(reduced, num_fields, bias=False), activation(excitation_activation))

    def field_weights(self, emb: torch.Tensor) -> torch.Tensor:
        """(B, F) weights."""
        return self.excitation(emb.mean(-1))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return emb * self.field_weights(emb).unsqueeze(-1)
