"""`kdef`: a KDEF ensemble of sub-networks (or its naive / independent baselines) trained as
one run; the served mean and every sub-network are evaluated and saved."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ctrdistill.data.dataset import PreparedData
from ctrdistill.models.ensembles import KDEFModel, default_backbone
from ctrdistill.models.registry import ModelSpec
from ctrdistill.pipelines.methods import MethodBuild, MethodConfig, register_method
from ctrdistill.strategies.kdef import KDEFStrategy

if TYPE_CHECKING:
    from ctrdistill.pipelines.fit import RunConfig


@register_method
class KDEFMethod(MethodConfig):
    kind: Literal["kdef"] = Field(
        "kdef", description="the method: a KDEF ensemble of sub-networks or its baselines")
    backbone: ModelSpec = Field(default_factory=default_backbone,
                                description="every sub-network's model (default: DNN)")
    num_subnetworks: int = Field(4, ge=1, description="N, the number of sub-networks")
    mode: Literal["kdef", "naive", "independent"] = Field(
        "kdef", description="kdef and naive share one embedding; independent sub-networks own "
        "theirs")

    def outputs(self) -> list[str]:
        return [f"sub{k}" for k in range(self.num_subnetworks)]

    def build(self, run: RunConfig, data: PreparedData) -> MethodBuild:
        model = KDEFModel.build(self.backbone, data.feature_map, self.num_subnetworks,
                                shared_embedding=self.mode != "independent")
        return MethodBuild(KDEFStrategy(model, self.mode))
