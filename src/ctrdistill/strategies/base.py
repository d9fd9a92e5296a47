"""The strategy contract.

A strategy owns the modules in play (trainable ones, and frozen teachers registered under
`teachers`) and answers three questions for the trainer: the named loss terms of a training
batch (`loss`, whose "loss" entry is optimised), the named logits to evaluate (`predict`, whose
"served" entry is what would be deployed), and label-free terms on held-out data
(`held_out_terms`, e.g. the distillation loss that early stopping may watch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ctrdistill.models.base import Batch, CTRModel
from ctrdistill.rundir import SERVED


def bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, labels)


class Strategy(nn.Module):
    name = "strategy"
    #: state_dict prefixes that are frozen (not checkpointed with the trained state)
    frozen_prefixes: tuple[str, ...] = ("teachers.",)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The loss terms: what a wrapper such as DDP calls (it syncs gradients around it)."""
        return self.loss(batch)

    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def held_out_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {}

    def served_model(self) -> CTRModel:
        raise NotImplementedError

    def servable_models(self) -> dict[str, CTRModel]:
        """Every model worth saving for serving, by output name ("served" is the default)."""
        return {SERVED: self.served_model()}

    def start_step(self, step: int, epoch: int) -> None:
        """Called before every training step (schedules such as warm-ups use it)."""

    def epoch_logs(self) -> dict[str, float]:
        """Extra figures logged with each evaluation (e.g. mean teacher gate weights)."""
        return {}

    def frozen_modules(self) -> list[nn.Module]:
        teachers = getattr(self, "teachers", None)
        return list(teachers) if isinstance(teachers, nn.ModuleList) else []

    def train(self, mode: bool = True) -> Strategy:
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()  # frozen teachers never switch dropout/batch-norm to training
        return self

    def trained_state(self, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """A copy of every trained tensor (on `device`, default: where it is). A tensor
        reachable under several keys (a table shared by sub-networks) is copied once and stays
        one tensor under all of them, so snapshots and saved states are no bigger than the
        parameters and stay tied."""
        copies: dict[tuple, torch.Tensor] = {}
        state = {}
        for key, value in self.state_dict().items():
            if key.startswith(self.frozen_prefixes):
                continue
            identity = (value.untyped_storage().data_ptr(), value.storage_offset(),
                        tuple(value.shape), value.stride(), value.dtype, value.device)
            if identity not in copies:
                copies[identity] = value.detach().to(device, copy=True)
            state[key] = copies[identity]
        return state

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        missing = self.load_state_dict(state, strict=False).missing_keys
        unexpected = [k for k in missing if not k.startswith(self.frozen_prefixes)]
        if unexpected:
            raise RuntimeError(f"checkpoint lacks {unexpected[:3]}")


def freeze(module: nn.Module) -> nn.Module:
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module.eval()
