"""`ctrdistill prepare` and `ctrdistill synth`: raw logs into an encoded dataset, and the
synthetic benchmark's raw logs."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from ctrdistill.data.prepare import PrepareConfig
from ctrdistill.data.prepare import prepare as prepare_data
from ctrdistill.data.synthetic import SynthConfig, write_synthetic
from ctrdistill.pipelines.common import Result, resolve

logger = logging.getLogger(__name__)

#: The keys of a synthetic landing zone (`ctrdistill synth --landing`).
LANDING = ("landing", "partitions", "rows_per_partition", "new_ids_rate", "interval_seconds")


class SynthCommand(SynthConfig):
    """The generator's config and where its rows go: a dataset (`output`) or, with `landing`,
    time partitions written as a live source writes them (for `ctrdistill follow`)."""

    landing: Path | None = Field(None, description="write partitions here instead of a dataset "
                                 "(drift is then per partition)")
    partitions: int = Field(4, ge=1, description="with landing: partitions to write")
    rows_per_partition: int = Field(100_000, ge=1, description="with landing: rows of each")
    new_ids_rate: float = Field(0.0, ge=0, lt=1, description="with landing: share of ids that "
                                "appear only from a later partition on")
    interval_seconds: float = Field(0.0, ge=0, description="with landing: wait between "
                                    "partitions, as logs arriving")

    @model_validator(mode="after")
    def _landing_keys_need_landing(self) -> SynthCommand:
        given = [k for k in LANDING[1:] if k in self.model_fields_set]
        if self.landing is None and given:
            raise ValueError(f"{', '.join(given)} describe a landing zone: give landing "
                             "(--landing DIR) too, or drop them")
        return self


def prepare(config: PrepareConfig | dict[str, Any] | str | Path | None = None,
            show_progress: bool = True, **overrides: Any) -> Result:
    """Prepare raw logs (`recipe`, `input`, `output`, ...); metrics: fields and rows per split."""
    config = resolve(PrepareConfig, config, **overrides)
    started = time.perf_counter()
    feature_map = prepare_data(config, show_progress=show_progress)
    rows = sum(feature_map.splits.values())
    seconds = time.perf_counter() - started
    logger.info("prepared %s rows in %.1f s (%s rows/s)", f"{rows:,}", seconds,
                f"{rows / max(seconds, 1e-9):,.0f}")
    return Result(config.output, {"fields": feature_map.num_fields,
                                  "rows": dict(feature_map.splits)})


def synth(config: SynthConfig | dict[str, Any] | str | Path | None = None,
          output: str | Path | None = None, show_progress: bool = True,
          **overrides: Any) -> Result:
    """Write the synthetic benchmark's raw logs (with their hidden click probability) to
    `output` (an argument here, or the config's), or with `landing` as time partitions."""
    if output is not None:
        overrides["output"] = output
    if isinstance(config, SynthConfig) and not isinstance(config, SynthCommand):
        config = config.model_dump()
    command = resolve(SynthCommand, config, **overrides)
    generator = SynthConfig.model_validate(command.model_dump(exclude=set(LANDING)))
    if command.landing is not None:
        from ctrdistill.pipelines.follow import synth_landing  # the continuous machinery

        return synth_landing(generator, landing=command.landing, partitions=command.partitions,
                             rows_per_partition=command.rows_per_partition,
                             new_ids_rate=command.new_ids_rate,
                             interval_seconds=command.interval_seconds)
    path = write_synthetic(generator, generator.output, show_progress=show_progress)
    return Result(path, {"rows": generator.rows})
