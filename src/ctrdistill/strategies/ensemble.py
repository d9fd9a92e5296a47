"""Teacher ensembles: M teacher logits (B, M) -> one logit z_E = sum_i a_i z_i per sample.

`mean_logits` and `mean_probs` are fixed; `weights` learns global softmax weights; `gate` learns
per-sample weights a(x) = softmax(W g(x) + b), g(x) built from any of the sample's own
embeddings, the teachers' logits and the teachers' hidden vectors. Learned combiners are fitted
with BCE(y, sigmoid(z_E)) (`fit_loss`); they read only detached teacher outputs and their own
embedding, so neither the student nor the teachers share a gradient path with them. A combiner
fitted on held-out rows first is trained by the one trainer through `GateFitStrategy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from ctrdistill.data.schema import FeatureMap
from ctrdistill.models.base import Batch, CTRModel
from ctrdistill.models.layers.embedding import FeatureEmbedding
from ctrdistill.strategies.base import SERVED, Strategy, bce, freeze

Combine = Literal["mean_logits", "mean_probs", "weights", "gate"]
GateInput = Literal["embedding", "logits", "hidden"]
EPS = 1e-6


def teacher_outputs(batch: Batch, teachers: Sequence[CTRModel], hidden: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Teacher logits (B, M) and, when asked, their concatenated hidden vectors (B, H).

    Cached or stored columns of the batch are used when present; otherwise the frozen teachers
    run on the batch, without gradients.
    """
    n = len(batch)
    cached_hidden = batch.teacher_hidden if hidden else None
    if batch.teacher_logits is not None and (not hidden or cached_hidden is not None):
        logits = batch.teacher_logits.float().reshape(n, -1)
        return logits, None if cached_hidden is None else cached_hidden.float()
    if not len(teachers):
        raise ValueError("the batch carries no teacher outputs and there are no live teachers"
                         + (" (hidden vectors need live teachers or a store labelled with "
                            "hidden vectors)" if hidden else ""))
    with torch.no_grad():
        outputs = [t.encode(batch) for t in teachers]
    return (torch.stack([o.logit for o in outputs], 1),
            torch.cat([o.hidden for o in outputs], 1) if hidden else None)


class TeacherEnsemble(nn.Module):
    def __init__(self, kind: Combine, num_teachers: int, feature_map: FeatureMap | None = None,
                 gate_inputs: Sequence[GateInput] = ("embedding", "logits"),
                 gate_embedding_dim: int = 8, gate_hidden: int = 32,
                 teacher_hidden_dim: int = 0) -> None:
        super().__init__()
        self.kind = kind
        self.num_teachers = num_teachers
        self.gate_inputs = tuple(gate_inputs) if kind == "gate" else ()
        self.embedding: FeatureEmbedding | None = None
        if kind == "weights":
            self.scores = nn.Parameter(torch.zeros(num_teachers))  # uniform at the start
        elif kind == "gate":
            if not self.gate_inputs:
                raise ValueError("a gate needs at least one input")
            width = num_teachers if "logits" in self.gate_inputs else 0
            if "hidden" in self.gate_inputs:
                if teacher_hidden_dim <= 0:
                    raise ValueError("a gate fed by hidden vectors needs their width")
                width += teacher_hidden_dim
            if "embedding" in self.gate_inputs:
                if feature_map is None:
                    raise ValueError("a gate fed by embeddings needs the feature map")
                self.embedding = FeatureEmbedding(feature_map, gate_embedding_dim)
                width += self.embedding.num_fields * gate_embedding_dim
            self.gate = nn.Sequential(nn.Linear(width, gate_hidden), nn.ReLU(),
                                      nn.Linear(gate_hidden, num_teachers))
        # Running sums of the weights seen in training steps, read (and reset) by `mean_weights`:
        # a buffer, so it follows the module to its device and a step never waits for a copy;
        # not persistent, so checkpoints hold only the combiner.
        self.register_buffer("_weight_sum", torch.zeros(num_teachers), persistent=False)
        self._weight_rows = 0

    @property
    def uses_hidden(self) -> bool:
        return "hidden" in self.gate_inputs

    @property
    def trainable(self) -> bool:
        """Learned and not frozen (a gate pre-fitted on held-out rows is frozen)."""
        return any(p.requires_grad for p in self.parameters())

    def weights(self, logits: torch.Tensor, batch: Batch,
                hidden: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample teacher weights (B, M), each row summing to 1."""
        logits = logits.detach()
        n, m = logits.shape
        if self.kind == "weights":
            return torch.softmax(self.scores, 0).expand(n, m)
        if self.kind == "gate":
            inputs = []
            if self.embedding is not None:
                inputs.append(self.embedding(batch).flatten(1))
            if "logits" in self.gate_inputs:
                inputs.append(logits)
            if self.uses_hidden:
                if hidden is None:
                    raise ValueError("this gate reads the teachers' hidden vectors; none given")
                inputs.append(hidden.detach())
            return torch.softmax(self.gate(torch.cat(inputs, 1)), 1)
        return logits.new_full((n, m), 1.0 / m)

    def forward(self, logits: torch.Tensor, batch: Batch, hidden: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_E, weights): the ensemble logit (B,) and the weights (B, M)."""
        weights = self.weights(logits, batch, hidden)
        if self.kind == "mean_probs":
            prob = torch.sigmoid(logits.detach()).mean(1).clamp(EPS, 1 - EPS)
            return torch.logit(prob), weights
        return (weights * logits.detach()).sum(1), weights

    def fit_loss(self, ensemble_logit: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """BCE of the ensemble on the labels for learned combiners; None for fixed ones."""
        return bce(ensemble_logit, labels) if self.trainable else None

    def record(self, weights: torch.Tensor) -> None:
        self._weight_sum += weights.detach().sum(0)
        self._weight_rows += weights.shape[0]

    def mean_weights(self) -> dict[str, float]:
        if not self._weight_rows:
            return {}
        means = (self._weight_sum / self._weight_rows).tolist()
        self._weight_sum.zero_()
        self._weight_rows = 0
        return {f"teacher_weight.{k}": w for k, w in enumerate(means)}


class GateFitStrategy(Strategy):
    """Fits a learned combiner alone, on labelled rows whose teacher logits are out-of-sample
    (the valid split), before it is frozen for distillation. Why: on the teachers' own training
    rows the most overfitted teacher looks best, and a jointly trained gate collapses onto it."""

    name = "gate_fit"

    def __init__(self, ensemble: TeacherEnsemble, teachers: Sequence[CTRModel] = ()) -> None:
        super().__init__()
        self.ensemble = ensemble
        self.teachers = nn.ModuleList([freeze(t) for t in teachers])

    def _logit(self, batch: Batch) -> torch.Tensor:
        logits, hidden = teacher_outputs(batch, self.teachers, self.ensemble.uses_hidden)
        return self.ensemble(logits, batch, hidden)[0]

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss = bce(self._logit(batch), batch.label)
        return {"loss": loss, "bce": loss.detach()}

    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {SERVED: self._logit(batch)}
