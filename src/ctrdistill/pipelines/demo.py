"""`ctrdistill demo`: the whole flow on built-in synthetic data, in a few minutes on 2 cores.

Synthesise Criteo-like rows with a known click model, prepare them (Criteo-x4 protocol), train a
DCNv2 teacher, distil it into a DNN student, and compare the student with the same DNN trained
alone, every figure next to the Bayes-optimal limit of the hidden model.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ctrdistill.analysis.report import result_row, save_table
from ctrdistill.data.prepare import PrepareConfig
from ctrdistill.data.synthetic import SynthConfig
from ctrdistill.errors import CtrDistillError
from ctrdistill.pipelines.common import Result
from ctrdistill.pipelines.distill import DistillConfig, distill
from ctrdistill.pipelines.prepare import prepare, synth
from ctrdistill.pipelines.train import TrainRunConfig, train
from ctrdistill.training.config import TrainConfig

logger = logging.getLogger(__name__)

STUDENT = {"name": "dnn", "embedding_dim": 16, "hidden_units": [400, 400, 400]}
TEACHER = {"name": "dcnv2", "embedding_dim": 16}


def demo(workdir: str | Path = "ctrdistill-demo", rows: int = 300_000,
         overwrite: bool = False) -> Result:
    """Run the demo in `workdir`; the result's rows are its results table (test split)."""
    workdir = Path(workdir)
    if workdir.exists():
        if not overwrite:
            raise CtrDistillError(f"{workdir} exists; pass --overwrite or choose --workdir")
        shutil.rmtree(workdir)
    raw, data, runs = workdir / "raw", workdir / "prepared", workdir / "runs"
    logger.info("1/4 synthesising %s rows with a known click model -> %s", f"{rows:,}", raw)
    synth(SynthConfig(rows=rows), output=raw)
    logger.info("2/4 preparing (Criteo-x4 protocol) -> %s", data)
    prepare(PrepareConfig(recipe="synthetic", input=raw, output=data, protocol="x4"))
    train_config = TrainConfig(epochs=2, batch_size=4096, early_stop={"patience": 0})
    logger.info("3/4 training the DNN alone (the baseline)")
    alone = train(TrainRunConfig(name="dnn-alone", data=data, output_dir=runs, model=STUDENT,
                                 train=train_config))
    logger.info("4/4 training a DCNv2 teacher and distilling it into the same DNN")
    result = distill(DistillConfig(name="dnn-student", data=data, output_dir=runs,
                                   teachers=[{"model": TEACHER, "name": "dcnv2"}],
                                   student=STUDENT, train=train_config))
    table = [row for row in result.rows if row["model"] != "teacher ensemble"]
    table.append(result_row("dnn alone", alone.metrics))
    save_table(table, workdir)
    return Result(workdir.resolve(), rows=table,
                  title="demo results (test split; gaps to the Bayes-optimal model)")
