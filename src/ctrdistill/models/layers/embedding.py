"""Embeddings of every field of a prepared dataset into one (batch, fields, dim) tensor.

All id fields live in one table with per-vocabulary row offsets, so fields that share a
vocabulary share rows, and a sparse optimizer touches only the rows a batch uses. Continuous
numeric fields scale a learned per-field vector by their value (or, with `numeric=False`, are
left to the model, as DLRM's bottom MLP does). Sequence fields are mean-pooled over their
non-padding ids. Output order: categorical, then numeric, then sequence fields.

Whether the table's gradient is sparse is the optimizer's choice: the trainer sets
`table.sparse` when it builds a sparse optimizer; the model does not know.
"""

from __future__ import annotations

import torch
from torch import nn

from ctrdistill.data.batch import Batch
from ctrdistill.data.schema import PAD_ID, FeatureMap


class FeatureEmbedding(nn.Module):
    def __init__(
        self, feature_map: FeatureMap, dim: int, init_std: float = 1e-4, numeric: bool = True,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.init_std = init_std
        offsets: dict[str, int] = {}
        sizes: dict[str, int] = {}
        total = 0
        for field in feature_map.categorical + feature_map.sequence:
            owner = field.vocab or field.name
            if owner not in offsets:
                offsets[owner] = total
                sizes[owner] = field.vocab_size
                total += field.vocab_size
        self.vocab_offsets = offsets
        self.vocab_sizes = sizes
        self.num_rows = total
        self.table = nn.Embedding(max(total, 1), dim)
        nn.init.normal_(self.table.weight, std=init_std)
        self.owners = {kind: [f.vocab or f.name for f in feature_map.of_kind(kind)]
                       for kind in ("categorical", "sequence")}
        cat_offsets = [offsets[o] for o in self.owners["categorical"]]
        seq_offsets = [offsets[o] for o in self.owners["sequence"]]
        self.register_buffer("cat_offsets", torch.tensor(cat_offsets, dtype=torch.long))
        self.register_buffer("seq_offsets", torch.tensor(seq_offsets, dtype=torch.long))
        self.n_cat = len(cat_offsets)
        numeric_fields = feature_map.numeric if numeric else []
        self.n_num = len(numeric_fields)
        self.n_seq = len(seq_offsets)
        self.numeric = nn.Parameter(torch.randn(self.n_num, dim) * init_std) if self.n_num else None
        self.num_fields = self.n_cat + self.n_num + self.n_seq
        self.field_names = [f.name for f in feature_map.categorical + numeric_fields
                            + feature_map.sequence]

    def _sequence_vectors(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, L, D) looked-up sequence vectors with padding zeroed, and the (B, S, L, 1)
        mask."""
        ids = batch.seq.long()  # type: ignore[union-attr]
        mask = (ids != PAD_ID).unsqueeze(-1).to(self.table.weight.dtype)
        return self.table(ids + self.seq_offsets.view(1, -1, 1)) * mask, mask

    def forward(self, batch: Batch) -> torch.Tensor:
        parts = []
        if self.n_cat:
            parts.append(self.table(batch.cat.long() + self.cat_offsets))
        if self.numeric is not None:
            parts.append(batch.num.unsqueeze(-1) * self.numeric)
        if self.n_seq:
            vectors, mask = self._sequence_vectors(batch)
            parts.append(vectors.sum(2) / mask.sum(2).clamp_min(1.0))
        if not parts:  # numeric-only data with numeric=False: every field is the model's
            return batch.num.new_zeros(batch.num.shape[0], 0, self.dim)
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def rows_sq_norm(self, batch: Batch) -> torch.Tensor | None:
        """Sum of squares of the table rows `batch` looks up, per row of the batch: the L2
        penalty on touched rows that the trainer adds (it works with sparse gradients, unlike
        weight decay on the whole table). None when the batch looks up no row."""
        total = None
        if self.n_cat:
            total = self.table(batch.cat.long() + self.cat_offsets).pow(2).sum()
        if self.n_seq:
            seq = self._sequence_vectors(batch)[0].pow(2).sum()
            total = seq if total is None else total + seq
        return None if total is None else total / len(batch)

    def field_table(self, vocab_owner: str, vocab_size: int) -> torch.Tensor:
        """The rows of one vocabulary (for collapse analysis)."""
        start = self.vocab_offsets[vocab_owner]
        return self.table.weight[start : start + vocab_size]

    @torch.no_grad()
    def grow(self, sizes: dict[str, int]) -> torch.Tensor | None:
        """Append rows to vocabularies: `sizes` gives owners their new (larger) vocab_size.
        Old rows keep their values and ids; new rows are drawn as at construction. The table
        stays the same Parameter (optimizers keep referring to it) and is laid out as one
        built for the grown feature map. Returns each old row's new position (to move per-row
        optimizer state along), or None when nothing grew."""
        grown = {o: sizes.get(o, size) for o, size in self.vocab_sizes.items()}
        shrunk = [o for o, size in grown.items() if size < self.vocab_sizes[o]]
        if shrunk:
            raise ValueError(f"vocabularies only grow: {shrunk[0]!r} would shrink")
        if grown == self.vocab_sizes:
            return None
        weight = self.table.weight
        pieces, positions, offsets, total = [], [], {}, 0
        for owner, start in self.vocab_offsets.items():
            old, new = self.vocab_sizes[owner], grown[owner]
            pieces.append(weight[start:start + old])
            pieces.append(weight.new_empty(new - old, self.dim).normal_(std=self.init_std))
            positions.append(torch.arange(total, total + old, device=weight.device))
            offsets[owner] = total
            total += new
        weight.data = torch.cat(pieces)
        self.table.num_embeddings = total
        self.vocab_offsets, self.vocab_sizes, self.num_rows = offsets, grown, total
        for kind, buffer in (("categorical", self.cat_offsets), ("sequence", self.seq_offsets)):
            buffer.copy_(torch.tensor([offsets[o] for o in self.owners[kind]]))
        return torch.cat(positions)
