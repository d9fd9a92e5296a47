"""`ctrdistill analyze collapse`: dimensional-collapse spectra of finished runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from ctrdistill.analysis.collapse import analyze_collapse
from ctrdistill.config import StrictConfig
from ctrdistill.pipelines.common import Result, resolve
from ctrdistill.training.config import DEVICE_HELP, DEVICE_PATTERN
from ctrdistill.training.device import resolve_device


class CollapseConfig(StrictConfig):
    runs: list[Path] = Field(min_length=1, description="run directories")
    data: Path = Field(description="the prepared dataset they trained on")
    output: Path = Field(Path("collapse"), description="directory for JSON and PNG")
    sample_rows: int = Field(4096, ge=1, description="rows whose hidden vectors are analysed")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description=DEVICE_HELP)


def collapse(config: CollapseConfig | dict[str, Any] | str | Path | None = None,
             **overrides: Any) -> Result:
    """Write collapse.json, spectra-<run>.png per run and abundance.png under `output`; the
    history holds one report per run."""
    config = resolve(CollapseConfig, config, **overrides)
    reports = analyze_collapse(config.runs, config.data, config.output, config.sample_rows,
                               resolve_device(config.device))
    return Result(config.output, history=reports)
