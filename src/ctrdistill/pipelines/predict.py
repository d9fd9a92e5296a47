"""`ctrdistill predict`: a finished run's scores on a split, keyed by row id, as Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from ctrdistill.config import StrictConfig
from ctrdistill.errors import CtrDistillError
from ctrdistill.pipelines.common import Result, resolve
from ctrdistill.pipelines.run import load_run
from ctrdistill.storage import atomic_file
from ctrdistill.training.config import DEVICE_HELP, DEVICE_PATTERN


class PredictConfig(StrictConfig):
    run: Path = Field(description="a run directory")
    data: Path = Field(description="a prepared dataset with the run's feature map")
    split: str = Field("test", description="train, valid or test")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description=DEVICE_HELP)
    output: Path = Field(description="the Parquet file to write")
    overwrite: bool = Field(False, description="replace an existing output file")


def predict(config: PredictConfig | dict[str, Any] | str | Path | None = None,
            **overrides: Any) -> Result:
    """Write row_id, logit and probability of every row of `split` to `output`, atomically."""
    config = resolve(PredictConfig, config, **overrides)
    if config.output.is_dir():
        raise CtrDistillError(f"{config.output} is a directory; give a file path")
    if config.output.exists() and not config.overwrite:
        raise CtrDistillError(f"output already exists: {config.output} (choose another path, "
                              "or overwrite)")
    frame = load_run(config.run, config.device).predict(config.data, config.split)
    with atomic_file(config.output) as tmp:
        frame.write_parquet(tmp)
    return Result(config.output, {"rows": len(frame)})
