"""`mutual`: a group of peers trained as one run with the mutual-learning term; the served
ensemble and every peer are evaluated and saved."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.schema import FeatureMap
from ctrdistill.models.base import CTRModel
from ctrdistill.models.registry import ModelSpec, build_model
from ctrdistill.pipelines.methods import MethodBuild, MethodConfig, register_method
from ctrdistill.rundir import RunDirectory
from ctrdistill.strategies.losses import Distance
from ctrdistill.strategies.mutual import MutualStrategy
from ctrdistill.training.checkpoint import load_checkpoint

if TYPE_CHECKING:
    from ctrdistill.pipelines.fit import RunConfig

logger = logging.getLogger(__name__)


def load_peers(run_dirs: list[Path], feature_map: FeatureMap) -> list[CTRModel]:
    """Served models of finished runs, trainable again (refuses a different feature map)."""
    return [load_checkpoint(RunDirectory(d).checkpoint(), feature_map)[0].train()
            for d in run_dirs]


@register_method
class MutualMethod(MethodConfig):
    """Peers trained from scratch (`peers`) and/or fine-tuned from run directories (`peer_runs`)."""

    kind: Literal["mutual"] = Field(
        "mutual", description="the method: peers trained together with the mutual-learning term")
    peers: list[ModelSpec] = Field(default_factory=list, description="peers trained from scratch")
    peer_runs: list[Path] = Field(default_factory=list,
                                  description="finished runs fine-tuned as peers")
    distance: Distance = Field("mse_probs", description="D(sg(peer), self) on logits")
    weight: float = Field(1.0, ge=0, description="weight of the mutual term")
    warmup_steps: int = Field(0, ge=0, description="steps of plain BCE before the mutual term")

    @model_validator(mode="after")
    def _check(self) -> MutualMethod:
        if len(self.peers) + len(self.peer_runs) < 2:
            raise ValueError("mutual learning needs at least two peers (peers + peer_runs)")
        return self

    def outputs(self) -> list[str]:
        return [f"peer{k}" for k in range(len(self.peers) + len(self.peer_runs))]

    def _warn_seen_rows(self, run: RunConfig, data: PreparedData) -> None:
        """Fine-tuning on the rows a peer already trained on overfits: a second pass over seen
        rows loses about 1% AUC (the one-epoch phenomenon, BENCHMARKS.md §6.3), fresh rows do
        not."""
        if not self.peer_runs:
            return
        rows = data.fingerprint(("train",))
        seen = [path.name for path in self.peer_runs if RunDirectory(path).trained_on() == rows]
        if seen:
            logger.warning("peer run(s) %s already trained on the training rows of %s; a second "
                           "pass over seen rows overfits CTR models (the one-epoch phenomenon, "
                           "see BENCHMARKS.md §6.3): fine-tune on new rows", ", ".join(seen),
                           run.data)

    def build(self, run: RunConfig, data: PreparedData) -> MethodBuild:
        self._warn_seen_rows(run, data)
        fm = data.feature_map
        peers = [build_model(spec, fm) for spec in self.peers] + load_peers(self.peer_runs, fm)
        return MethodBuild(MutualStrategy(peers, self.distance, self.weight, self.warmup_steps,
                                          feature_map=fm))
