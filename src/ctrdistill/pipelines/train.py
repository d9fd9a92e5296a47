"""`ctrdistill train`: one model trained on hard labels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from ctrdistill.config import Name, StrictConfig
from ctrdistill.data.dataset import PreparedData
from ctrdistill.models.registry import ModelSpec, build_model
from ctrdistill.pipelines.common import Result, resolve
from ctrdistill.pipelines.tracking import TRACKING_HELP, TrackingConfig
from ctrdistill.pipelines.writer import TrainJob, run_job
from ctrdistill.strategies.plain import PlainStrategy
from ctrdistill.training.config import TrainConfig


class TrainRunConfig(StrictConfig):
    """One model trained on hard labels, saved as `output_dir/name/`."""

    name: Name = Field(description="the run's name: its directory under output_dir")
    data: Path = Field(description="a prepared dataset (ctrdistill prepare)")
    output_dir: Path = Field(Path("runs"), description="where run directories go")
    model: ModelSpec = Field(description="the zoo model and its hyperparameters")
    train: TrainConfig = Field(default_factory=TrainConfig)
    overwrite: bool = Field(False, description="replace a finished run of the same name")
    tracking: TrackingConfig | None = Field(None, description=TRACKING_HELP)


def train(config: TrainRunConfig | dict[str, Any] | str | Path, resume: bool = False,
          on_evaluate: Callable[[dict[str, Any]], None] | None = None,
          **overrides: Any) -> Result:
    """Train `config`'s model and write its run directory.

    `config` is a TrainRunConfig, a mapping or a YAML path; keyword arguments override its
    top-level keys. `resume` continues an interrupted run of the same config. `on_evaluate`
    sees every evaluation's record; an exception it raises stops the run, which writes
    nothing."""
    config = resolve(TrainRunConfig, config, **overrides)
    data = PreparedData(config.data)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, data.feature_map)
    return run_job(TrainJob(config.name, PlainStrategy(model), data, config.train,
                            config.output_dir / config.name, config.model_dump(mode="json"),
                            overwrite=config.overwrite, resume=resume,
                            tracking=config.tracking, on_evaluate=on_evaluate))
