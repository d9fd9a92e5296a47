"""FiBiNET's bilinear interaction: (v_i W) ⊙ v_j for every field pair i < j."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ctrdistill.models.layers.pairs import FieldPairs

BilinearType = Literal["field_all", "field_each", "field_interaction"]


class BilinearInteraction(FieldPairs):
    """Output (B, P, D) for the P = F(F-1)/2 pairs, in row-major i < j order.

    A plain Hadamard product v_i ⊙ v_j cannot weigh dimensions across the two vectors; the
    matrix W can. It is shared by all pairs (`field_all`), owned by the left field
    (`field_each`), or owned by the pair (`field_interaction`, most parameters).
    """

    def __init__(self, num_fields: int, embedding_dim: int,
                 bilinear_type: BilinearType = "field_interaction") -> None:
        super().__init__(num_fields)
        self.bilinear_type = bilinear_type
        count = {"field_all": 1, "field_each": num_fields, "field_interaction": self.num_pairs}
        if bilinear_type not in count:
            raise ValueError(f"unknown bilinear_type '{bilinear_type}' (valid: {', '.join(count)})")
        self.weight = nn.Parameter(
            nn.init.xavier_normal_(torch.empty(count[bilinear_type], embedding_dim, embedding_dim)))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        left, right = self.pairs(emb)
        if self.bilinear_type == "field_all":
            projected = left @ self.weight[0]
        elif self.bilinear_type == "field_each":
            # Project every field once, then pick the left field of each pair.
            projected = torch.einsum("bfd,fde->bfe", emb, self.weight)[:, self.rows]
        else:
            projected = torch.einsum("bpd,pde->bpe", left, self.weight)
        return projected * right
