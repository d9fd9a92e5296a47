"""Zoo table on the synthetic benchmark (Criteo-x4 protocol, embedding 16, Adam 1e-3, batch
4096, one epoch, one seed), and the training/inference speed of every model.

    python benchmarks/bench_zoo.py --workdir bench_out/synth2m --train-rows 1000000
    python benchmarks/bench_zoo.py --workdir bench_out/synth2m --speed-only

`--speed-only` times 2 s of training steps and inference on batches of 4096 for each model
(2 threads), without training to convergence.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from common import speed_batch, synthetic_dataset, train_samples_per_second
from ctrdistill.analysis.report import markdown_table, result_row
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.loader import BatchLoader
from ctrdistill.models import build_model, model_names
from ctrdistill.pipelines.writer import TrainJob, run_job
from ctrdistill.strategies import PlainStrategy
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.speed import inference_samples_per_second
from ctrdistill.training.trainer import Trainer

TRAIN = TrainConfig(epochs=1, batch_size=4096, early_stop=None, lr_plateau=None, progress=False)


def speed(prep: Path) -> str:
    data = PreparedData(prep)
    rows = data.load("valid")
    batch = speed_batch(rows)
    table = []
    for name in model_names():
        torch.manual_seed(0)
        model = build_model({"name": name}, data.feature_map)
        trainer = Trainer(PlainStrategy(model), TRAIN)
        table.append({"model": name, "params": model.num_parameters(),
                      "train_samples_per_second": train_samples_per_second(
                          trainer, batch, warmup=1, min_steps=2, min_seconds=2.0),
                      "inference_samples_per_second": inference_samples_per_second(model, rows)})
        print(markdown_table(table[-1:]), flush=True)
    return markdown_table(table)


def accuracy(root: Path, prep: Path, train_rows: int, names: list[str]) -> str:
    data = PreparedData(prep)
    train = data.load("train")
    train = train.subset(torch.arange(min(train_rows, len(train))))
    table = []
    for name in names:
        out = root / f"zoo-{train_rows}" / name
        if not (out / "metrics.json").exists():
            torch.manual_seed(TRAIN.seed)
            model = build_model({"name": name}, data.feature_map)
            run_job(TrainJob(name, PlainStrategy(model), data, TRAIN, out,
                             {"model": name, "train_rows": train_rows},
                             loader=BatchLoader(train, TRAIN.batch_size, seed=TRAIN.seed)))
        table.append(result_row(name, json.loads((out / "metrics.json").read_text())))
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
    root = Path(args.workdir)
    prep = synthetic_dataset(root, args.rows)
    if args.speed_only:
        table, out = speed(prep), root / "zoo_speed.md"
    else:
        table = accuracy(root, prep, args.train_rows, args.models or model_names())
        out = root / f"zoo_{args.train_rows}.md"
    out.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
