"""DLRM's dot interaction: pairwise dots of all vectors, concatenated with the dense vector."""

from __future__ import annotations

import torch
from torch import nn

from ctrdistill.models.layers.product import InnerProductInteraction


class DotInteraction(nn.Module):
    """cat(dense, <u_i, u_j> for i < j) over u = [dense; field embeddings]: (B, D + P).

    DLRM crosses only through dot products (second order, like FM) and leaves higher orders to
    the top MLP; passing the dense vector through unchanged keeps its first-order signal.
    Without a dense vector (no numeric fields) only the pairwise dots of the fields remain.
    """

    def __init__(self, num_fields: int, embedding_dim: int, with_dense: bool,
                 self_interaction: bool = False) -> None:
        super().__init__()
        self.with_dense = with_dense
        self.products = InnerProductInteraction(num_fields + int(with_dense), self_interaction)
        self.output_dim = self.products.output_dim + (embedding_dim if with_dense else 0)

    def forward(self, emb: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        if (dense is not None) != self.with_dense:
            raise ValueError("DotInteraction: pass a dense vector exactly when built with_dense")
        if dense is None:
            return self.products(emb)
        return torch.cat([dense, self.products(torch.cat([dense.unsqueeze(1), emb], 1))], 1)
