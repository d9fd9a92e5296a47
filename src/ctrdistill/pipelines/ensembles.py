"""The run shared by `mutual` and `kdef`: one strategy over several models, with a results
table of the served ensemble and every member."""

from __future__ import annotations

from typing import Any

from ctrdistill.analysis.report import result_row, save_table
from ctrdistill.data.dataset import PreparedData
from ctrdistill.pipelines.common import Result
from ctrdistill.pipelines.writer import TrainJob, run_job
from ctrdistill.strategies.base import Strategy


def ensemble_run(config: Any, strategy: Strategy, data: PreparedData, outputs: list[str],
                 resume: bool) -> Result:
    """Run `strategy` as `config.output_dir / config.name`; `outputs` name the members."""
    result = run_job(TrainJob(config.name, strategy, data, config.train,
                              config.output_dir / config.name, config.model_dump(mode="json"),
                              overwrite=config.overwrite, resume=resume,
                              tracking=config.tracking))
    rows = [result_row(f"{config.name} (served)", result.metrics)]
    rows += [result_row(f"{config.name}/{o}", result.metrics, output=o) for o in outputs]
    save_table(rows, result.path)  # curves.png (from the run writer) draws every output
    result.rows, result.title = rows, f"{config.name}: test split"
    return result
