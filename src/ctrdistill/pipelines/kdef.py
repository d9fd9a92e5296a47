"""`ctrdistill kdef`: a KDEF ensemble of sub-networks (or its naive / independent baselines)
trained as one run; the served mean and every sub-network are evaluated and saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from ctrdistill.config import Name, StrictConfig
from ctrdistill.data.dataset import PreparedData
from ctrdistill.models.ensembles import KDEFModel, default_backbone
from ctrdistill.models.registry import ModelSpec
from ctrdistill.pipelines.common import Result, resolve
from ctrdistill.pipelines.ensembles import ensemble_run
from ctrdistill.pipelines.tracking import TRACKING_HELP, TrackingConfig
from ctrdistill.strategies.kdef import KDEFStrategy
from ctrdistill.training.config import TrainConfig


class KDEFConfig(StrictConfig):
    name: Name = Field(description="the run's name")
    data: Path = Field(description="a prepared dataset")
    output_dir: Path = Field(Path("runs"), description="where run directories go")
    backbone: ModelSpec = Field(default_factory=default_backbone,
                                description="every sub-network's model (default: DNN)")
    num_subnetworks: int = Field(4, ge=1, description="N, the number of sub-networks")
    mode: Literal["kdef", "naive", "independent"] = Field(
        "kdef", description="kdef and naive share one embedding; independent sub-networks own "
        "theirs")
    train: TrainConfig = Field(default_factory=TrainConfig)
    overwrite: bool = Field(False, description="replace a finished run of the same name")
    tracking: TrackingConfig | None = Field(None, description=TRACKING_HELP)


def kdef(config: KDEFConfig | dict[str, Any] | str | Path, resume: bool = False,
         **overrides: Any) -> Result:
    """Train the ensemble; `config` is a KDEFConfig, a mapping or a YAML path."""
    config = resolve(KDEFConfig, config, **overrides)
    data = PreparedData(config.data)
    torch.manual_seed(config.train.seed)
    model = KDEFModel.build(config.backbone, data.feature_map, config.num_subnetworks,
                            shared_embedding=config.mode != "independent")
    return ensemble_run(config, KDEFStrategy(model, config.mode), data,
                        [f"sub{k}" for k in range(config.num_subnetworks)], resume)
