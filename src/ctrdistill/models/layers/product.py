"""Pairwise product layers: inner products (PNN, DLRM) and PNN's outer-product superposition."""

from __future__ import annotations

import torch
from torch import nn

from ctrdistill.models.layers.pairs import FieldPairs


class InnerProductInteraction(FieldPairs):
    """<v_i, v_j> for every field pair i < j (or i <= j with `self_interaction`): (B, P).

    One batched matmul gives the whole Gram matrix (cheaper than P separate (B, D) products);
    the pairs are then gathered from it.
    """

    def __init__(self, num_fields: int, self_interaction: bool = False) -> None:
        super().__init__(num_fields, self_interaction)
        self.output_dim = self.num_pairs

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        gram = torch.bmm(emb, emb.transpose(1, 2))
        return gram[:, self.rows, self.cols]


class OuterProductInteraction(nn.Module):
    """PNN's outer product with superposition: (sum_i v_i)(sum_i v_i)^T flattened to (B, D*D).

    Summing the F² pairwise outer products equals the outer product of the field sum, which
    is how the PNN paper keeps OPNN at O(D²) per sample instead of O(F²·D²).
    """

    def __init__(self, embedding_dim: int) -> None:
        super().__init__()
        self.output_dim = embedding_dim * embedding_dim

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        total = emb.sum(1)
        return (total.unsqueeze(2) * total.unsqueeze(1)).flatten(1)
