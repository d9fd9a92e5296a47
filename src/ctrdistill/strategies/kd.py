"""Knowledge distillation from frozen teachers (METHODS.md sections 1 and 2).

`KDStrategy` (direct): L = BCE(y, p_s) + lambda * D(z_E, z_s) [+ hint * ||h_t - W h_s||^2].
`AuxDistillStrategy`: the teacher term trains an auxiliary head on the student's hidden vector;
the main head sees hard labels only and is the one served, so teacher miscalibration does not
leak into served scores. Both add the ensemble's own fitting loss when it is learned (weights or
gate) and report the label-free distillation loss as the held-out term "distill".

Teacher logits (B, M) and hidden vectors come from the batch when cached or read from a label
store, else from the frozen teachers run live (`ensemble.teacher_outputs`); a batch with
neither (follow's fallback while its teacher is unhealthy) trains on the hard labels alone.
"""

from __future__ import annotations

import torch
from torch import nn

from ctrdistill.models.base import Batch, CTRModel
from ctrdistill.strategies.base import SERVED, Strategy, bce, freeze
from ctrdistill.strategies.ensemble import TeacherEnsemble, teacher_outputs
from ctrdistill.strategies.losses import Distance, distill_distance

ENSEMBLE = "ensemble"


class _Distill(Strategy):
    def __init__(self, student: CTRModel, teachers: list[CTRModel], ensemble: TeacherEnsemble,
                 distance: Distance = "bce", temperature: float = 1.0, t2_scaling: bool = True,
                 weight: float = 1.0) -> None:
        super().__init__()
        self.student = student
        self.teachers = nn.ModuleList([freeze(t) for t in teachers])
        self.ensemble = ensemble
        self.distance, self.temperature, self.t2_scaling = distance, temperature, t2_scaling
        self.weight = weight

    @property
    def needs_hidden(self) -> bool:
        """Whether the teachers' hidden vectors are read (hint loss, or a gate fed by them)."""
        return self.ensemble.uses_hidden

    def has_teacher(self, batch: Batch) -> bool:
        """Whether teacher outputs exist for this batch (evaluation data may have none)."""
        return batch.teacher_logits is not None or len(self.teachers) > 0

    def ensemble_logit(self, batch: Batch):
        """(z_E, weights (B, M), teacher hidden vectors or None)."""
        logits, teacher_hidden = teacher_outputs(batch, self.teachers, self.needs_hidden)
        z_e, weights = self.ensemble(logits, batch, teacher_hidden)
        return z_e, weights, teacher_hidden

    def d(self, teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
        return distill_distance(teacher, student, self.distance, self.temperature,
                                self.t2_scaling)

    def _ensemble_terms(self, z_e: torch.Tensor, weights: torch.Tensor,
                        batch: Batch) -> dict[str, torch.Tensor]:
        if self.training:
            self.ensemble.record(weights)
        fit = self.ensemble.fit_loss(z_e, batch.label)
        return {} if fit is None else {"gate": fit}

    def heads(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The student's evaluated logits: "served" plus any extra head."""
        return {SERVED: self.student(batch)}

    def distilled_head(self, heads: dict[str, torch.Tensor]) -> torch.Tensor:
        """The head the teacher term trains."""
        return heads[SERVED]

    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self.heads(batch)
        if self.has_teacher(batch):
            out[ENSEMBLE] = self.ensemble_logit(batch)[0]
        return out

    def held_out_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        if not self.has_teacher(batch):
            return {}
        student = self.distilled_head(self.heads(batch))
        return {"distill": self.d(self.ensemble_logit(batch)[0], student)}

    def epoch_logs(self) -> dict[str, float]:
        return self.ensemble.mean_weights()

    def served_model(self) -> CTRModel:
        return self.student


class KDStrategy(_Distill):
    """Direct distillation onto the served head, with an optional hint loss."""

    name = "kd"

    def __init__(self, student: CTRModel, teachers: list[CTRModel], ensemble: TeacherEnsemble,
                 distance: Distance = "bce", temperature: float = 1.0, t2_scaling: bool = True,
                 weight: float = 1.0, hint: float = 0.0, teacher_hidden_dim: int = 0) -> None:
        super().__init__(student, teachers, ensemble, distance, temperature, t2_scaling, weight)
        self.hint = hint
        if hint:
            width = teacher_hidden_dim or sum(t.hidden_dim for t in teachers)
            if not width:
                raise ValueError("the hint loss needs the teachers' hidden vectors: live "
                                 "teachers or a store labelled with hidden vectors")
            # W maps the student's hidden vector onto the teachers' (concatenated) ones.
            self.hint_map = nn.Linear(student.hidden_dim, width)

    @property
    def needs_hidden(self) -> bool:
        return bool(self.hint) or self.ensemble.uses_hidden

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self.student.encode(batch)
        hard = bce(out.logit, batch.label)
        if not self.has_teacher(batch):  # no teacher outputs (follow's hard-label fallback)
            return {"loss": hard, "bce": hard}
        z_e, weights, teacher_hidden = self.ensemble_logit(batch)
        distill = self.d(z_e, out.logit)  # z_e is detached inside: the gate gets no gradient
        terms = {"bce": hard, "distill": distill}
        total = hard + self.weight * distill
        if self.hint and teacher_hidden is not None:
            hint = (teacher_hidden - self.hint_map(out.hidden)).pow(2).sum(1).mean()
            terms["hint"] = hint
            total = total + self.hint * hint
        terms |= self._ensemble_terms(z_e, weights, batch)
        if "gate" in terms:
            total = total + terms["gate"]
        return {"loss": total, **terms}


class AuxDistillStrategy(_Distill):
    """Main head on hard labels (served); auxiliary head on the teachers (reported as "aux")."""

    name = "aux_distill"

    def __init__(self, student: CTRModel, teachers: list[CTRModel], ensemble: TeacherEnsemble,
                 distance: Distance = "bce", temperature: float = 1.0, t2_scaling: bool = True,
                 weight: float = 1.0) -> None:
        super().__init__(student, teachers, ensemble, distance, temperature, t2_scaling, weight)
        self.aux_head = nn.Linear(student.hidden_dim, 1)

    def heads(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self.student.encode(batch)
        return {SERVED: out.logit, "aux": self.aux_head(out.hidden).squeeze(-1)}

    def distilled_head(self, heads: dict[str, torch.Tensor]) -> torch.Tensor:
        return heads["aux"]

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        heads = self.heads(batch)
        main, aux = heads[SERVED], heads["aux"]
        hard = bce(main, batch.label)
        if not self.has_teacher(batch):  # no teacher outputs: the main head on hard labels
            return {"loss": hard, "bce": hard}
        z_e, weights, _ = self.ensemble_logit(batch)
        distill = self.d(z_e, aux)  # reaches the shared layers through the aux head only
        terms = {"bce": hard, "distill": distill} | self._ensemble_terms(z_e, weights, batch)
        total = hard + self.weight * distill + terms.get("gate", 0.0)
        return {"loss": total, **terms}
