"""`ctrdistill demo`: the whole flow on built-in synthetic data, in a few minutes on 2 cores.

Synthesise Criteo-like rows with a known click model, prepare them (Criteo-x4 protocol), train a
DCNv2 teacher, distil it into a DNN student, and compare the student with the same DNN trained
alone, every figure next to the Bayes-optimal limit of the hidden model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ctrdistill.analysis.report import print_table, result_row, save_table
from ctrdistill.data.prepare import PrepareConfig, prepare
from ctrdistill.data.synthetic import SynthConfig, write_synthetic
from ctrdistill.distill import DistillConfig, distill
from ctrdistill.errors import CtrDistillError
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.run import RunConfig, run_train

STUDENT = {"name": "dnn", "embedding_dim": 16, "hidden_units": [400, 400, 400]}
TEACHER = {"name": "dcnv2", "embedding_dim": 16}


def demo(workdir: Path, rows: int = 300_000, overwrite: bool = False) -> list[dict]:
    if workdir.exists():
        if not overwrite:
            raise CtrDistillError(f"{workdir} exists; pass --overwrite or choose --workdir")
        shutil.rmtree(workdir)
    raw, data, runs = workdir / "raw", workdir / "prepared", workdir / "runs"
    print(f"1/4 synthesising {rows:,} rows with a known click model -> {raw}")
    write_synthetic(SynthConfig(rows=rows), raw)
    print(f"2/4 preparing (Criteo-x4 protocol) -> {data}")
    prepare(PrepareConfig(recipe="synthetic", input=raw, output=data, protocol="x4"))
    train = TrainConfig(epochs=2, batch_size=4096, early_stop={"patience": 0})
    print("3/4 training the DNN alone (the baseline)")
    alone = run_train(RunConfig(name="dnn-alone", data=data, output_dir=runs, model=STUDENT,
                                train=train))
    print("4/4 training a DCNv2 teacher and distilling it into the same DNN")
    result = distill(DistillConfig(name="dnn-student", data=data, output_dir=runs,
                                   teachers=[{"model": TEACHER, "name": "dcnv2"}],
                                   student=STUDENT, train=train), log=print)
    table = [row for row in result.extra["rows"] if row["model"] != "teacher ensemble"]
    table.append(result_row("dnn alone", alone.metrics))
    print_table(table, "demo results (test split; gaps to the Bayes-optimal model)")
    save_table(table, workdir)
    print(f"runs, learning curves and the results table are in {workdir}")
    return table
