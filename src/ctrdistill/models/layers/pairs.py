"""Base of the layers that work on field pairs (inner products, bilinear, AFM)."""

from __future__ import annotations

import torch
from torch import nn


class FieldPairs(nn.Module):
    """Holds the index of the field pairs i < j (i <= j with `self_interaction`), row-major.

    Indexing a (B, F, D) tensor with these gathers all pairs in one op instead of a Python
    loop over combinations, and fixes one pair order that every pair layer shares.
    """

    def __init__(self, num_fields: int, self_interaction: bool = False) -> None:
        super().__init__()
        rows, cols = torch.triu_indices(num_fields, num_fields, 0 if self_interaction else 1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.num_pairs = len(rows)

    def pairs(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Left and right members of every pair, each (B, P, D)."""
        return emb[:, self.rows], emb[:, self.cols]
