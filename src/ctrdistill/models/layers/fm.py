"""Factorization-machine second-order interaction (FM, DeepFM, NFM's Bi-Interaction pooling)."""

from __future__ import annotations

import torch
from torch import nn


class FMInteraction(nn.Module):
    """sum_{i<j} v_i ⊙ v_j as a (B, D) vector, via 0.5 * ((sum_i v_i)^2 - sum_i v_i^2).

    The sum-square identity costs O(F·D) instead of O(F²·D). Summing the vector over D gives
    FM's second-order term sum_{i<j} <v_i, v_j>; NFM feeds the vector itself to its MLP.
    """

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return 0.5 * (emb.sum(1).pow(2) - emb.pow(2).sum(1))
