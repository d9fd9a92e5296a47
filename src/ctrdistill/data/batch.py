"""The typed batch every model, strategy and trainer reads: one object that moves to a device."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch

# Names of the optional per-row columns a split may carry (ColumnData.optional keys).
TEACHER_LOGITS = "teacher_logits"
TEACHER_HIDDEN = "teacher_hidden"
GROUP = "group"
DAY = "day"
P_TRUE = "p_true"


@dataclass
class Batch:
    """Rows of a prepared split as tensors.

    `cat` (B, categorical fields) ids, `num` (B, numeric fields) values, `seq` (B, sequence
    fields, max length) ids or None, `label` (B,) clicks, `row_id` (B,) stable row ids;
    `teacher_logits` (B, M) and `teacher_hidden` (B, H) when cached or read from a label store;
    `columns`: other per-row columns by name (group, day, p_true, passthrough columns).
    """

    cat: torch.Tensor
    num: torch.Tensor
    label: torch.Tensor
    row_id: torch.Tensor
    seq: torch.Tensor | None = None
    teacher_logits: torch.Tensor | None = None
    teacher_hidden: torch.Tensor | None = None
    columns: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.label.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy on `device` (tensors already there are not copied)."""
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        moved = {f.name: move(getattr(self, f.name)) for f in fields(self) if f.name != "columns"}
        return replace(self, **moved, columns={k: v.to(device, non_blocking=non_blocking)
                                               for k, v in self.columns.items()})

    def rows(self, start: int, end: int) -> Batch:
        """Rows [start, end) as views (a rank's share of a global batch)."""
        def cut(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[start:end]

        cut_fields = {f.name: cut(getattr(self, f.name)) for f in fields(self)
                      if f.name != "columns"}
        return replace(self, **cut_fields, columns={k: v[start:end]
                                                    for k, v in self.columns.items()})

    @classmethod
    def of(cls, cat: torch.Tensor, num: torch.Tensor, label: torch.Tensor, row_id: torch.Tensor,
           seq: torch.Tensor | None, optional: dict[str, torch.Tensor]) -> Batch:
        """A batch from the fixed columns and named optional ones (teacher outputs by name)."""
        rest = {k: v for k, v in optional.items() if k not in (TEACHER_LOGITS, TEACHER_HIDDEN)}
        return cls(cat=cat, num=num, label=label, row_id=row_id, seq=seq,
                   teacher_logits=optional.get(TEACHER_LOGITS),
                   teacher_hidden=optional.get(TEACHER_HIDDEN), columns=rest)
