"""`plain`: one model trained on hard labels (`ctrdistill train`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ctrdistill.data.dataset import PreparedData
from ctrdistill.models.registry import ModelSpec, build_model
from ctrdistill.pipelines.methods import MethodBuild, MethodConfig, register_method
from ctrdistill.strategies.plain import PlainStrategy

if TYPE_CHECKING:
    from ctrdistill.pipelines.fit import RunConfig


@register_method
class PlainMethod(MethodConfig):
    kind: Literal["plain"] = Field(
        "plain", description="the method: one model trained on hard labels")
    model: ModelSpec = Field(description="the zoo model and its hyperparameters")

    def build(self, run: RunConfig, data: PreparedData) -> MethodBuild:
        return MethodBuild(PlainStrategy(build_model(self.model, data.feature_map)))
