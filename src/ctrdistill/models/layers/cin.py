"""xDeepFM's Compressed Interaction Network: explicit vector-wise crosses of growing degree."""

from __future__ import annotations

import torch
from torch import nn


class CIN(nn.Module):
    """Layer k: X_k[h] = sum_{i,m} W_k[h,i,m] (X_{k-1}[i] ⊙ X_0[m]); each layer sum-pooled over D.

    Crossing whole embedding vectors (not bits) keeps interactions at the field level, and the
    1x1 convolution "compresses" the F·H_{k-1} Hadamard maps into H_k feature maps. With
    `split_half` (the xDeepFM default) every layer but the last sends half its maps to the
    next layer and half to the output, halving the cost of deep CINs. Output: (B, output_dim).
    """

    def __init__(self, num_fields: int, hidden_units: list[int], split_half: bool = True) -> None:
        super().__init__()
        if split_half and any(u % 2 for u in hidden_units[:-1]):
            raise ValueError(f"CIN with split_half needs even layer sizes (got {hidden_units})")
        self.convs = nn.ModuleList()
        self.splits: list[bool] = []
        maps, output_dim = num_fields, 0
        for k, units in enumerate(hidden_units):
            self.convs.append(nn.Conv1d(num_fields * maps, units, kernel_size=1))
            split = split_half and k < len(hidden_units) - 1
            self.splits.append(split)
            maps = units // 2 if split else units
            output_dim += units - maps if split else units
        self.output_dim = output_dim

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        batch, _, dim = x0.shape
        x, pooled = x0, []
        for conv, split in zip(self.convs, self.splits, strict=True):
            # (B, F, H, D) Hadamard maps, channel index m * H + h for x0 field m, x map h.
            out = conv((x0.unsqueeze(2) * x.unsqueeze(1)).reshape(batch, -1, dim))
            if split:
                x, direct = out.chunk(2, dim=1)
            else:
                x = direct = out
            pooled.append(direct.sum(-1))
        return torch.cat(pooled, dim=1)
