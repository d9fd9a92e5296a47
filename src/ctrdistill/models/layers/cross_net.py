"""DCN (v1) cross network: explicit bounded-degree feature crosses at O(d) parameters per layer."""

from __future__ import annotations

import torch
from torch import nn


class CrossNet(nn.Module):
    """x_{l+1} = x_0 * (x_l · w_l) + b_l + x_l, repeated `num_layers` times on (B, d) inputs.

    The rank-1 weight w_l makes each layer raise the polynomial degree by one while adding
    only 2d parameters; the residual keeps every lower-degree term.
    """

    def __init__(self, input_dim: int, num_layers: int) -> None:
        super().__init__()
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(input_dim) / input_dim**0.5) for _ in range(num_layers))
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(input_dim)) for _ in range(num_layers))
        self.output_dim = input_dim

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for w, b in zip(self.weights, self.biases, strict=True):
            x = x0 * (x @ w).unsqueeze(-1) + b + x
        return x
