"""Plain supervised training: binary cross-entropy on the click labels."""

from __future__ import annotations

import torch

from ctrdistill.models.base import Batch, CTRModel
from ctrdistill.strategies.base import SERVED, Strategy, bce


class PlainStrategy(Strategy):
    name = "plain"

    def __init__(self, model: CTRModel) -> None:
        super().__init__()
        self.model = model

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss = bce(self.model(batch), batch.label)
        return {"loss": loss, "bce": loss.detach()}

    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {SERVED: self.model(batch)}

    def served_model(self) -> CTRModel:
        return self.model
