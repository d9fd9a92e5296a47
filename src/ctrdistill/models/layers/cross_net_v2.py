"""DCNv2 cross networks: full-rank CrossNetV2 and the low-rank mixture of experts CrossNetMix."""

from __future__ import annotations

import torch
from torch import nn


class CrossNetV2(nn.Module):
    """x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l on (B, d) inputs.

    A full d×d matrix per layer (instead of DCN's rank-1 vector) lets each cross weigh every
    feature pair separately, which is what made DCNv2 beat DCN at scale.
    """

    def __init__(self, input_dim: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(input_dim, input_dim) for _ in range(num_layers))
        self.output_dim = input_dim

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class CrossNetMix(nn.Module):
    """x_{l+1} = sum_e g_e(x_l) · x_0 ⊙ (U_e tanh(C_e tanh(V_e^T x_l)) + b_l) + x_l.

    Each expert crosses in a rank-r subspace (V down, C mixes, U up: O(d·r) instead of O(d²));
    the tanh adds non-linearity inside the subspace, and a softmax gate on x_l mixes experts.
    All experts of a layer are evaluated in one einsum rather than a loop.
    """

    def __init__(self, input_dim: int, num_layers: int, low_rank: int = 32,
                 num_experts: int = 4) -> None:
        super().__init__()

        def stack(*shape: int) -> nn.ParameterList:
            return nn.ParameterList(nn.Parameter(nn.init.xavier_normal_(torch.empty(*shape)))
                                    for _ in range(num_layers))

        self.down = stack(num_experts, input_dim, low_rank)  # V
        self.mix = stack(num_experts, low_rank, low_rank)  # C
        self.up = stack(num_experts, low_rank, input_dim)  # U^T
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(input_dim)) for _ in range(num_layers))
        self.gate = nn.Linear(input_dim, num_experts, bias=False)
        self.output_dim = input_dim

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for down, mix, up, bias in zip(self.down, self.mix, self.up, self.biases, strict=True):
            low = torch.tanh(torch.einsum("bd,edr->ber", x, down))
            low = torch.tanh(torch.einsum("ber,ers->bes", low, mix))
            experts = x0.unsqueeze(1) * (torch.einsum("ber,erd->bed", low, up) + bias)
            weights = torch.softmax(self.gate(x), dim=-1)  # (B, E)
            x = torch.einsum("be,bed->bd", weights, experts) + x
        return x
