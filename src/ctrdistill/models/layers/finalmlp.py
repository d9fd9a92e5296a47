"""FinalMLP's two-stream parts: per-stream feature gating and multi-head bilinear fusion."""

from __future__ import annotations

import torch
from torch import nn

from ctrdistill.models.layers.mlp import MLP


class FeatureGating(nn.Module):
    """Scales the flat embedding by 2·sigmoid(MLP(context)), a gate in (0, 2) per dimension.

    Giving each stream its own gate lets the two MLPs see differently weighted features, which
    is what makes two plain MLPs complementary. The context is the flattened embeddings of a few
    chosen fields, or, with none chosen, a learned vector (one gate shared by all samples).
    The factor 2 centres the gate at 1: gate logits near 0 leave the features unchanged.
    """

    def __init__(self, input_dim: int, embedding_dim: int, context_fields: list[int],
                 hidden_units: list[int]) -> None:
        super().__init__()
        self.context_fields = context_fields
        width = embedding_dim * max(1, len(context_fields))
        # Random, not zero as in FuxiCTR: a zero input would leave the gate's first layer
        # without gradient on the first step.
        self.context_bias = (None if context_fields
                             else nn.Parameter(torch.randn(1, width) * 0.01))
        self.gate = MLP(width, hidden_units, output_dim=input_dim)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """emb: (B, F, D); returns the gated flat embedding (B, F*D)."""
        if self.context_bias is None:
            context = emb[:, self.context_fields].flatten(1)
        else:
            context = self.context_bias.expand(emb.shape[0], -1)
        return emb.flatten(1) * 2 * torch.sigmoid(self.gate(context))


class InteractionAggregation(nn.Module):
    """logit = w_x·x + w_y·y + sum_h x_h^T W_h y_h over `num_heads` chunks of x and y.

    The bilinear term lets the two streams' representations interact instead of being merely
    added; splitting into heads cuts its parameters from |x|·|y| to |x|·|y| / heads.
    """

    def __init__(self, x_dim: int, y_dim: int, num_heads: int = 1) -> None:
        super().__init__()
        if x_dim % num_heads or y_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide both stream widths "
                             f"({x_dim}, {y_dim})")
        self.num_heads = num_heads
        self.w_x = nn.Linear(x_dim, 1)
        self.w_y = nn.Linear(y_dim, 1, bias=False)
        self.w_xy = nn.Parameter(nn.init.xavier_normal_(
            torch.empty(num_heads, x_dim // num_heads, y_dim // num_heads)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Returns (B,) logits."""
        heads_x = x.view(x.shape[0], self.num_heads, -1)
        heads_y = y.view(y.shape[0], self.num_heads, -1)
        bilinear = torch.einsum("bhi,hij,bhj->b", heads_x, self.w_xy, heads_y)
        return (self.w_x(x) + self.w_y(y)).squeeze(-1) + bilinear
