"""Distillation strategies built from their config (`KDOptions`), for every verb that distils."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from ctrdistill.config import StrictConfig
from ctrdistill.data.schema import FeatureMap
from ctrdistill.errors import CtrDistillError
from ctrdistill.models.base import CTRModel
from ctrdistill.strategies.ensemble import Combine, GateInput, TeacherEnsemble
from ctrdistill.strategies.kd import AuxDistillStrategy, KDStrategy
from ctrdistill.strategies.losses import Distance


class KDOptions(StrictConfig):
    """How a student learns from its teachers (METHODS.md sections 1 and 2)."""

    model_config = ConfigDict(**StrictConfig.model_config, populate_by_name=True)

    kind: Literal["direct", "aux"] = Field(
        "direct", description="direct: the teacher term trains the served head; aux: it "
                      "trains an auxiliary head over shared lower layers")
    distance: Distance = Field("bce", description="D(teacher, student) on logits")
    temperature: float = Field(1.0, gt=0, description="soft-label BCE only")
    t2_scaling: bool = Field(True, description="multiply the soft-label BCE by T^2")
    lambda_: float = Field(1.0, ge=0, alias="lambda", description="weight of the teacher term")
    ensemble: Combine = Field("mean_logits", description="how teacher logits combine")
    gate_inputs: list[GateInput] = Field(
        default_factory=lambda: ["embedding", "logits"], min_length=1,
        description="what the gate reads: the sample's embeddings, the teachers' logits, the "
        "teachers' hidden vectors (live teachers, or a store labelled with --hidden)")
    gate_embedding_dim: int = Field(8, ge=1, description="the gate's own embedding width")
    gate_hidden: int = Field(32, ge=1, description="width of the gate's hidden layer")
    gate_fit: Literal["joint", "valid"] = Field(
        "joint", description="joint: the gate/weights learn with the student on training rows "
        "(the paper); valid: fitted first on the valid split (teacher logits out-of-sample), "
        "then frozen")
    hint: float = Field(0.0, ge=0, description="weight of the hint loss (direct only; 0: off)")

    @model_validator(mode="after")
    def _check(self) -> KDOptions:
        if self.hint and self.kind != "direct":
            raise ValueError("the hint loss applies to direct distillation only")
        if len(set(self.gate_inputs)) != len(self.gate_inputs):
            raise ValueError("gate_inputs lists an input twice")
        return self

    @property
    def needs_hidden(self) -> bool:
        """Whether the teachers' hidden vectors are read (hint loss or a gate fed by them)."""
        return bool(self.hint) or (self.ensemble == "gate" and "hidden" in self.gate_inputs)


def kd_strategy(options: KDOptions, student: CTRModel, teachers: list[CTRModel],
                num_teachers: int, feature_map: FeatureMap,
                stored_hidden_dim: int = 0) -> AuxDistillStrategy | KDStrategy:
    """Direct or auxiliary distillation of `student` from the ensemble of `num_teachers`
    teachers that `options` describe. `teachers` may be empty when batches carry cached or
    stored teacher outputs; `stored_hidden_dim` is then the width of stored hidden vectors.
    A combiner with `gate_fit: valid` comes out untrained: its fitting is the caller's (it
    needs the trainer)."""
    hidden_dim = stored_hidden_dim or sum(t.hidden_dim for t in teachers)
    if options.needs_hidden and not hidden_dim:
        raise CtrDistillError("the hint loss and a gate fed by hidden vectors need the teachers' "
                              "hidden vectors: live teachers, or a store labelled with --hidden")
    ensemble = TeacherEnsemble(options.ensemble, num_teachers, feature_map, options.gate_inputs,
                               options.gate_embedding_dim, options.gate_hidden, hidden_dim)
    common = dict(distance=options.distance, temperature=options.temperature,
                  t2_scaling=options.t2_scaling, weight=options.lambda_)
    if options.kind == "aux":
        return AuxDistillStrategy(student, teachers, ensemble, **common)
    return KDStrategy(student, teachers, ensemble, hint=options.hint,
                      teacher_hidden_dim=hidden_dim, **common)
