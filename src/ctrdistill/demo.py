"""`ctrdistill demo`: the whole flow on built-in synthetic data, in a few minutes on 2 cores."""

from __future__ import annotations

import shutil
from pathlib import Path

from ctrdistill.analysis.report import print_table, result_row, save_table
from ctrdistill.data.prepare import PrepareConfig, prepare
from ctrdistill.data.synthetic import SynthConfig, write_synthetic
from ctrdistill.errors import CtrDistillError
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.run import RunConfig, run_train

DEMO_MODELS = {
    "lr": {"name": "lr"},
    "dnn": {"name": "dnn", "hidden_units": [400, 400, 400]},
}


def demo(workdir: Path, rows: int = 300_000, overwrite: bool = False) -> list[dict]:
    if workdir.exists():
        if not overwrite:
            raise CtrDistillError(f"{workdir} exists; pass --overwrite or choose --workdir")
        shutil.rmtree(workdir)
    raw, data, runs = workdir / "raw", workdir / "prepared", workdir / "runs"
    print(f"1/3 synthesising {rows:,} rows with a known click model -> {raw}")
    write_synthetic(SynthConfig(rows=rows), raw)
    print(f"2/3 preparing (Criteo-x4 protocol) -> {data}")
    prepare(PrepareConfig(recipe="synthetic", input=raw, output=data, protocol="x4"))
    print("3/3 training")
    train = TrainConfig(epochs=2, batch_size=4096)
    table = []
    for name, model in DEMO_MODELS.items():
        result = run_train(RunConfig(name=name, data=data, output_dir=runs, model=model,
                                     train=train))
        table.append(result_row(name, result.metrics))
    print_table(table, "demo results (test split; gaps to the Bayes-optimal model)")
    save_table(table, workdir)
    print(f"runs, curves and the results table are in {workdir}")
    return table
