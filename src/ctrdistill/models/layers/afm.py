"""AFM's attentional pooling of the pairwise element-wise products of field embeddings."""

from __future__ import annotations

import torch
from torch import nn

from ctrdistill.models.layers.pairs import FieldPairs


class AttentionalPooling(FieldPairs):
    """sum_{i<j} a_ij (v_i ⊙ v_j), a = softmax_pairs(h^T ReLU(W (v_i ⊙ v_j) + b)): (B, D).

    FM weighs every pair equally; learning a weight per pair (from the pair's own product) lets
    useless crosses fade out. Dropout on the attention weights regularises them as in AFM.
    """

    def __init__(self, num_fields: int, embedding_dim: int, attention_dim: int,
                 dropout: float = 0.0) -> None:
        super().__init__(num_fields)
        self.attention = nn.Sequential(nn.Linear(embedding_dim, attention_dim), nn.ReLU(),
                                       nn.Linear(attention_dim, 1, bias=False))
        self.dropout = nn.Dropout(dropout)
        self.output_dim = embedding_dim

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        left, right = self.pairs(emb)
        products = left * right  # (B, P, D)
        weights = self.dropout(torch.softmax(self.attention(products), dim=1))
        return (weights * products).sum(1)
