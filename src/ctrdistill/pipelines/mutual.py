"""`ctrdistill mutual`: a group of peers trained as one run with the mutual-learning term; the
served ensemble and every peer are evaluated and saved."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, model_validator

from ctrdistill.config import Name, StrictConfig
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.schema import FeatureMap
from ctrdistill.models.base import CTRModel
from ctrdistill.models.registry import ModelSpec, build_model
from ctrdistill.pipelines.common import Result, resolve
from ctrdistill.pipelines.ensembles import ensemble_run
from ctrdistill.pipelines.tracking import TRACKING_HELP, TrackingConfig
from ctrdistill.pipelines.writer import trained_on
from ctrdistill.strategies.losses import Distance
from ctrdistill.strategies.mutual import MutualStrategy
from ctrdistill.training.checkpoint import load_checkpoint
from ctrdistill.training.config import TrainConfig

logger = logging.getLogger(__name__)


class MutualConfig(StrictConfig):
    """Peers trained from scratch (`peers`) and/or fine-tuned from run directories (`peer_runs`)."""

    name: Name = Field(description="the run's name")
    data: Path = Field(description="a prepared dataset")
    output_dir: Path = Field(Path("runs"), description="where run directories go")
    peers: list[ModelSpec] = Field(default_factory=list, description="peers trained from scratch")
    peer_runs: list[Path] = Field(default_factory=list,
                                  description="finished runs fine-tuned as peers")
    distance: Distance = Field("mse_probs", description="D(sg(peer), self) on logits")
    weight: float = Field(1.0, ge=0, description="weight of the mutual term")
    warmup_steps: int = Field(0, ge=0, description="steps of plain BCE before the mutual term")
    train: TrainConfig = Field(default_factory=TrainConfig)
    overwrite: bool = Field(False, description="replace a finished run of the same name")
    tracking: TrackingConfig | None = Field(None, description=TRACKING_HELP)

    @model_validator(mode="after")
    def _check(self) -> MutualConfig:
        if len(self.peers) + len(self.peer_runs) < 2:
            raise ValueError("mutual learning needs at least two peers (peers + peer_runs)")
        return self


def load_peers(run_dirs: list[Path], feature_map: FeatureMap) -> list[CTRModel]:
    """Served models of finished runs, trainable again (refuses a different feature map)."""
    return [load_checkpoint(Path(d), feature_map)[0].train() for d in run_dirs]


def _warn_seen_rows(config: MutualConfig, data: PreparedData) -> None:
    """Fine-tuning on the rows a peer already trained on overfits: a second pass over seen rows
    loses about 1% AUC (the one-epoch phenomenon, BENCHMARKS.md §6.3), fresh rows do not."""
    if not config.peer_runs:
        return
    rows = data.fingerprint(("train",))
    seen = [run.name for run in config.peer_runs if trained_on(run) == rows]
    if seen:
        logger.warning("peer run(s) %s already trained on the training rows of %s; a second "
                       "pass over seen rows overfits CTR models (the one-epoch phenomenon, see "
                       "BENCHMARKS.md §6.3): fine-tune on new rows", ", ".join(seen), config.data)


def mutual(config: MutualConfig | dict[str, Any] | str | Path, resume: bool = False,
           **overrides: Any) -> Result:
    """Train the peers together; `config` is a MutualConfig, a mapping or a YAML path."""
    config = resolve(MutualConfig, config, **overrides)
    data = PreparedData(config.data)
    _warn_seen_rows(config, data)
    torch.manual_seed(config.train.seed)
    fm = data.feature_map
    peers = [build_model(spec, fm) for spec in config.peers] + load_peers(config.peer_runs, fm)
    strategy = MutualStrategy(peers, config.distance, config.weight, config.warmup_steps,
                              feature_map=fm)
    return ensemble_run(config, strategy, data, [f"peer{k}" for k in range(len(peers))], resume)
