"""`ctrdistill demo`: what distillation is for, on built-in synthetic data.

Synthesise Criteo-like rows with a known click model (the `criteo` preset, whose Bayes AUC is
the true bound), prepare them (Criteo-x4 protocol), train a PNN teacher, then a small DNN
student alone and distilled from the teacher, one epoch each. One table compares them: AUC, the
Bayes AUC, serving cost, the speed-up over the teacher and the share of the teacher's lead the
distilled student recovers.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from pydantic import Field

from ctrdistill.analysis.report import result_row, save_table
from ctrdistill.config import StrictConfig
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.prepare import PrepareConfig
from ctrdistill.data.synthetic import SynthConfig
from ctrdistill.errors import CtrDistillError
from ctrdistill.pipelines.common import Result, resolve
from ctrdistill.pipelines.fit import DistillConfig, TrainRunConfig, distill, train
from ctrdistill.pipelines.load import load_run
from ctrdistill.pipelines.prepare import prepare, synth
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.speed import side_by_side

logger = logging.getLogger(__name__)

TEACHER = {"name": "pnn"}
STUDENT = {"name": "dnn", "size": "small"}
# On the criteo preset, matching the teacher's logits beat soft-label BCE for small students
# (BENCHMARKS.md §10.2).
STRATEGY = {"distance": "mse_logits"}


class DemoConfig(StrictConfig):
    workdir: Path = Field(Path("ctrdistill-demo"),
                          description="directory for the demo's data, runs and results")
    rows: int = Field(1_000_000, ge=1, description="synthetic rows to generate")
    overwrite: bool = Field(False, description="replace an existing workdir")


def demo(config: DemoConfig | dict[str, Any] | str | Path | None = None,
         **overrides: Any) -> Result:
    """Run the demo (`workdir`, `rows`, ...); the result's rows are its results table (test
    split)."""
    config = resolve(DemoConfig, config, **overrides)
    workdir, rows = config.workdir, config.rows
    if workdir.exists():
        if not config.overwrite:
            raise CtrDistillError(f"{workdir} exists; pass --overwrite or choose --workdir")
        shutil.rmtree(workdir)
    raw, data, runs = workdir / "raw", workdir / "prepared", workdir / "runs"
    logger.info("1/4 synthesising %s rows with a known click model -> %s", f"{rows:,}", raw)
    synth(SynthConfig(rows=rows), output=raw)
    logger.info("2/4 preparing (Criteo-x4 protocol) -> %s", data)
    prepare(PrepareConfig(recipe="synthetic", input=raw, output=data, protocol="x4"))
    # One epoch, as CTR models are trained: a second one overfits (the one-epoch phenomenon).
    # Batch 1024, the criteo preset's benchmark batch: at 4096 one epoch of 1M rows is 244
    # steps, too few for the PNN to pass the small student (test AUC 0.8091 vs 0.8098 on the
    # preset's first calibration); at 1024 and lr 3e-3 it leads by 0.011.
    train_config = TrainConfig(epochs=1, batch_size=1024, lr=3e-3, early_stop=None,
                               lr_plateau=None)
    logger.info("3/4 training the small student alone (the baseline)")
    alone = train(TrainRunConfig(name="student-alone", data=data, output_dir=runs,
                                 model=STUDENT, train=train_config))
    logger.info("4/4 training a PNN teacher and distilling it into the same small student")
    result = distill(DistillConfig(name="student-distilled", data=data, output_dir=runs,
                                   teachers=[{"model": TEACHER, "name": "pnn"}],
                                   student=STUDENT, strategy=STRATEGY, train=train_config))
    rows_by_name = {row["model"]: row for row in result.rows}
    teacher = rows_by_name["teacher pnn"] | {"model": "teacher: PNN"}
    student = rows_by_name["student student-distilled"] | {"model": "small DNN, distilled"}
    baseline = result_row("small DNN, alone", alone.metrics)
    # The three timed side by side, at the end: a speed-up compares like with like
    models = {"teacher": runs / "student-distilled-teachers" / "pnn",
              "student": result.path, "alone": alone.path}
    timed = side_by_side({k: load_run(path).model for k, path in models.items()},
                         PreparedData(data).load("test"))
    for row, key in ((teacher, "teacher"), (student, "student"), (baseline, "alone")):
        row |= timed[key]
    for row in (teacher, student, baseline):
        row["speedup"] = row["inference_samples_per_second"] / teacher[
            "inference_samples_per_second"]
        row["bayes_auc"] = alone.metrics["test"]["bayes_auc"]
    lead = teacher["auc"] - baseline["auc"]
    if lead > 0:
        student["gap_recovered"] = (student["auc"] - baseline["auc"]) / lead
    else:  # a share of a lead the teacher does not have means nothing
        logger.warning("the teacher (test AUC %.5f) is not above the student alone (%.5f): no "
                       "gap to recover; try more --rows", teacher["auc"], baseline["auc"])
    table = [teacher, student, baseline]
    save_table(table, workdir)
    return Result(workdir.resolve(), rows=table, title="demo results (test split)")
