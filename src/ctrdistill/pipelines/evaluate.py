"""`ctrdistill evaluate`: a finished run's metrics on a split of a prepared dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from ctrdistill.config import StrictConfig
from ctrdistill.pipelines.common import Result, resolve
from ctrdistill.pipelines.load import load_run
from ctrdistill.training.config import DEVICE_HELP, DEVICE_PATTERN


class EvaluateConfig(StrictConfig):
    run: Path = Field(description="a run directory")
    data: Path = Field(description="a prepared dataset with the run's feature map")
    split: str = Field("test", description="train, valid or test")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description=DEVICE_HELP)


def evaluate(config: EvaluateConfig | dict[str, Any] | str | Path | None = None,
             **overrides: Any) -> Result:
    """Metrics of the run's served model on `split`."""
    config = resolve(EvaluateConfig, config, **overrides)
    metrics = load_run(config.run, config.device).evaluate(config.data, config.split)
    return Result(config.run, metrics, [{"model": config.run.name, **metrics}],
                  title=f"{config.split} split")
