"""`ctrdistill prepare` and `ctrdistill synth`: raw logs into an encoded dataset, and the
synthetic benchmark's raw logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctrdistill.data.prepare import PrepareConfig
from ctrdistill.data.prepare import prepare as prepare_data
from ctrdistill.data.synthetic import SynthConfig, write_synthetic
from ctrdistill.pipelines.common import Result, resolve


def prepare(config: PrepareConfig | dict[str, Any] | str | Path | None = None,
            show_progress: bool = True, **overrides: Any) -> Result:
    """Prepare raw logs (`recipe`, `input`, `output`, ...); metrics: fields and rows per split."""
    config = resolve(PrepareConfig, config, **overrides)
    feature_map = prepare_data(config, show_progress=show_progress)
    return Result(config.output, {"fields": feature_map.num_fields,
                                  "rows": dict(feature_map.splits)})


def synth(config: SynthConfig | dict[str, Any] | str | Path | None = None,
          output: str | Path | None = None, show_progress: bool = True,
          **overrides: Any) -> Result:
    """Write the synthetic benchmark's raw logs (with their hidden click probability) to
    `output` (an argument here, or the config's)."""
    if output is not None:
        overrides["output"] = output
    config = resolve(SynthConfig, config, **overrides)
    path = write_synthetic(config, config.output, show_progress=show_progress)
    return Result(path, {"rows": config.rows})
