"""Distillation distances D(teacher, student) on logits (METHODS.md section 1).

Every distance is a batch mean and detaches the teacher side, so a distillation term can only
move the student."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Distance = Literal["bce", "mse_logits", "mse_probs", "kl"]


def distill_distance(teacher: torch.Tensor, student: torch.Tensor, kind: Distance,
                     temperature: float = 1.0, t2_scaling: bool = True) -> torch.Tensor:
    """D(teacher, student) averaged over the batch; `temperature` applies to `bce` only."""
    teacher = teacher.detach()
    if kind == "bce":
        target = torch.sigmoid(teacher / temperature)
        loss = F.binary_cross_entropy_with_logits(student / temperature, target)
        # T^2 keeps the gradient scale comparable across temperatures (Hinton et al.).
        return loss * temperature**2 if t2_scaling else loss
    if kind == "mse_logits":
        return (teacher - student).pow(2).mean()
    if kind == "mse_probs":
        return (torch.sigmoid(teacher) - torch.sigmoid(student)).pow(2).mean()
    if kind == "kl":
        # KL(Bern(p_t) || Bern(p_s)) = H(p_t, p_s) - H(p_t), both from stable logit forms.
        p_t = torch.sigmoid(teacher)
        return (F.binary_cross_entropy_with_logits(student, p_t, reduction="none")
                - F.binary_cross_entropy_with_logits(teacher, p_t, reduction="none")).mean()
    raise ValueError(f"unknown distillation distance {kind!r}")
