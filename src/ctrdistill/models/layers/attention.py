"""AutoInt's interacting layer: multi-head self-attention across fields."""

from __future__ import annotations

import torch
from torch import nn


class MultiHeadSelfAttention(nn.Module):
    """Each field attends to every field, per head; output (B, F, num_heads * head_dim).

    Attention weights say which fields a field should be crossed with; stacking layers builds
    higher-order crosses. The residual (a learned projection, since widths may differ) keeps
    the raw field, and ReLU follows as in AutoInt. `use_scale` divides scores by sqrt(head_dim)
    (AutoInt omits it); `layer_norm` normalises the output for deeper stacks.
    """

    def __init__(
        self,
        input_dim: int,
        head_dim: int,
        num_heads: int = 1,
        use_residual: bool = True,
        use_scale: bool = False,
        layer_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.output_dim = num_heads * head_dim
        self.query = nn.Linear(input_dim, self.output_dim, bias=False)
        self.key = nn.Linear(input_dim, self.output_dim, bias=False)
        self.value = nn.Linear(input_dim, self.output_dim, bias=False)
        self.residual = nn.Linear(input_dim, self.output_dim, bias=False) if use_residual else None
        self.scale = head_dim**-0.5 if use_scale else 1.0
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(self.output_dim) if layer_norm else None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, fields, _ = x.shape
        return x.view(batch, fields, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)  # (B, H, F, F)
        out = (self.dropout(scores) @ v).transpose(1, 2).flatten(2)
        if self.residual is not None:
            out = out + self.residual(x)
        out = torch.relu(out)
        return self.norm(out) if self.norm is not None else out
