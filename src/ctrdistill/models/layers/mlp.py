"""Multi-layer perceptron block: Linear -> (BatchNorm) -> activation -> (Dropout), repeated."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

# The type configs use, so pydantic rejects an unknown name; its values are ACTIVATIONS' keys.
Activation = Literal["relu", "gelu", "silu", "tanh", "sigmoid", "prelu", "leaky_relu"]
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
    "prelu": nn.PReLU, "leaky_relu": nn.LeakyReLU}


def activation(name: Activation) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}' (valid: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    """Hidden layers, then an optional linear output layer (no activation: logits stay logits)."""

    def __init__(
        self,
        input_dim: int,
        hidden_units: list[int],
        activation_name: Activation = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        output_dim: int | None = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for units in hidden_units:
            layers.append(nn.Linear(width, units))
            if batch_norm:
                layers.append(nn.BatchNorm1d(units))
            layers.append(activation(activation_name))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = units
        if output_dim is not None:
            layers.append(nn.Linear(width, output_dim))
            width = output_dim
        self.net = nn.Sequential(*layers)
        self.output_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
