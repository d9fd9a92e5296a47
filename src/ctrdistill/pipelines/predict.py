"""`ctrdistill predict`: a finished run's scores as Parquet, on a split of prepared data (keyed by
row id) or on new raw logs encoded with the run's own fitted preprocessing (streamed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import Field, model_validator

from ctrdistill.config import StrictConfig
from ctrdistill.errors import CtrDistillError
from ctrdistill.pipelines.common import Result, resolve
from ctrdistill.pipelines.load import load_run
from ctrdistill.progress import progress
from ctrdistill.storage import atomic_file
from ctrdistill.training.config import DEVICE_HELP, DEVICE_PATTERN


class PredictConfig(StrictConfig):
    run: Path = Field(description="a run directory")
    data: Path | None = Field(None, description="a prepared dataset with the run's feature map")
    split: str = Field("test", description="train, valid or test (with `data`)")
    input: Path | None = Field(
        None, description="new raw logs (file or directory) in the format of the run's recipe, "
        "plain or gzip; encoded with the run's fitted preprocessing")
    key: str | None = Field(None, description="with `input`: a raw column carried to the output "
                            "(default: row_id, the 0-based row number)")
    chunk_rows: int = Field(100_000, ge=1, description="with `input`: rows read and scored at a "
                            "time (bounds memory)")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description=DEVICE_HELP)
    output: Path = Field(description="the Parquet file to write")
    overwrite: bool = Field(False, description="replace an existing output file")
    progress: bool = Field(True, description="show a progress bar (rows/s) on stderr")

    @model_validator(mode="after")
    def _one_source(self) -> PredictConfig:
        if (self.data is None) == (self.input is None):
            raise ValueError("give either data (a prepared dataset) or input (raw logs)")
        if self.key is not None and self.input is None:
            raise ValueError("key applies to raw input only")
        return self


def _score_raw(config: PredictConfig) -> int:
    run = load_run(config.run, config.device)
    rows = 0
    with atomic_file(config.output) as tmp, progress(None, "predict", "rows",
                                                     config.progress) as bar:
        writer = None
        for frame in run.score_raw(config.input, config.key, config.chunk_rows):  # type: ignore[arg-type]
            table = frame.to_arrow()
            writer = writer or pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            rows += len(frame)
            bar.update(len(frame))
        if writer is None:
            raise CtrDistillError(f"{config.input}: no rows")
        writer.close()
    return rows


def predict(config: PredictConfig | dict[str, Any] | str | Path | None = None,
            **overrides: Any) -> Result:
    """Write the key (row_id), logit and probability of every row to `output`, atomically."""
    config = resolve(PredictConfig, config, **overrides)
    if config.output.is_dir():
        raise CtrDistillError(f"{config.output} is a directory; give a file path")
    if config.output.exists() and not config.overwrite:
        raise CtrDistillError(f"output already exists: {config.output} (choose another path, "
                              "or overwrite)")
    if config.input is not None:
        return Result(config.output, {"rows": _score_raw(config)})
    frame = load_run(config.run, config.device).predict(config.data, config.split)
    with atomic_file(config.output) as tmp:
        frame.write_parquet(tmp)
    return Result(config.output, {"rows": len(frame)})
