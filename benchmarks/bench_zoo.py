"""Zoo table on the synthetic benchmark (Criteo-x4 protocol, embedding 16, Adam 1e-3, batch
4096, one epoch, one seed), and the training/inference speed of every model.

    python -m benchmarks.bench_zoo --workdir bench_out/synth2m --train-rows 1000000
    python -m benchmarks.bench_zoo --workdir bench_out/synth2m --speed-only

`--speed-only` times 2 s of training steps and inference on batches of 4096 for each model
(2 threads), without training to convergence. It drives a `Trainer` and the library's
inference timer directly: the figures are of the steps alone, on one fixed batch, which no verb
measures (a run's own speeds include loading, shuffling and evaluation). The zoo table trains on
the first `--train-rows` training rows, a `common.data_subset` of the benchmark data.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

import ctrdistill as cd
from benchmarks import common
from ctrdistill.analysis.report import markdown_table, result_row
from ctrdistill.data.dataset import PreparedData
from ctrdistill.strategies import PlainStrategy
from ctrdistill.training.speed import inference_samples_per_second
from ctrdistill.training.trainer import Trainer


def speed(prep: Path) -> str:
    data = PreparedData(prep)
    rows = data.load("valid")
    batch = common.speed_batch(rows)
    table = []
    for name in cd.model_names():
        torch.manual_seed(0)
        model = cd.build_model({"name": name}, data.feature_map)
        trainer = Trainer(PlainStrategy(model), common.train_config())
        table.append({"model": name, "params": model.num_parameters(),
                      "train_samples_per_second": common.train_samples_per_second(
                          trainer, batch, warmup=1, min_steps=2, min_seconds=2.0),
                      "inference_samples_per_second": inference_samples_per_second(model, rows)})
        print(markdown_table(table[-1:]), flush=True)
    return markdown_table(table)


def accuracy(root: Path, prep: Path, train_rows: int, names: list[str]) -> str:
    subset = common.data_subset(prep, root / f"prep-train{train_rows}",
                                PreparedData(prep).scan("train").head(train_rows))
    table = []
    for name in names:
        run = common.train_run(root / f"zoo-{train_rows}" / name, subset, {"name": name})
        table.append(result_row(name, common.run_metrics(run)))
        print(markdown_table(table[-1:]), flush=True)
    return markdown_table(table)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_500_000)
    parser.add_argument("--workdir", default="bench_out/synth2m")
    parser.add_argument("--train-rows", type=int, default=1_000_000)
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--speed-only", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(args.workdir)
    prep = common.synthetic_dataset(root, args.rows)
    if args.speed_only:
        table, out = speed(prep), root / "zoo_speed.md"
    else:
        table = accuracy(root, prep, args.train_rows, args.models or cd.model_names())
        out = root / f"zoo_{args.train_rows}.md"
    out.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
