"""Vocabulary growth in live models: every embedding table of a module gets rows for the new
ids, and the optimizers' per-row state moves along (zero for the new rows), so training goes
on as if the rows had always been there but never been touched."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ctrdistill.models.layers.embedding import FeatureEmbedding


def grow_embeddings(module: nn.Module, sizes: dict[str, int],
                    optimizers: Sequence[torch.optim.Optimizer] = ()) -> int:
    """Grow every FeatureEmbedding of `module` (each shared one once) to the vocab sizes
    `sizes` (by vocabulary owner); returns the number of rows added over all tables."""
    added = 0
    for embedding in {id(m): m for m in module.modules() if isinstance(m, FeatureEmbedding)
                      }.values():
        before = embedding.num_rows
        positions = embedding.grow(sizes)
        if positions is None:
            continue
        added += embedding.num_rows - before
        _move_row_state(embedding.table.weight, before, positions, optimizers)
    return added


def _move_row_state(param: torch.Tensor, rows_before: int, positions: torch.Tensor,
                    optimizers: Sequence[torch.optim.Optimizer]) -> None:
    """Per-row optimizer state (Adam's moments, Adagrad's sums, momentum) of `param` laid out
    as the grown table: old rows at `positions`, zeros for the new ones. Scalars such as
    Adam's step count stay as they are."""
    for optimizer in optimizers:
        state = optimizer.state.get(param)
        if not state:
            continue
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == rows_before:
                grown = value.new_zeros((param.shape[0], *value.shape[1:]))
                grown[positions] = value
                state[key] = grown
