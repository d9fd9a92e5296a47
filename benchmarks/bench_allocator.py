"""Training speed and peak memory with freed memory kept in the heap (the trainer's default on
glibc) against glibc's defaults (CTRDISTILL_KEEP_FREED_MEMORY=0), model by model.

    BENCH_THREADS=1 python -m benchmarks.bench_allocator --workdir bench_out/synth2m \
        --models dnn deepfm fibinet

Each (model, setting) trains in a fresh process, so the peak RSS is that setting's own: a few
warm-up steps, then timed steps on one batch of 4096 rows of the synthetic benchmark. It drives
a `Trainer` directly: the figure is of the training steps alone, which no verb measures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

import ctrdistill as cd
from benchmarks import common
from ctrdistill.data.dataset import PreparedData
from ctrdistill.strategies import PlainStrategy
from ctrdistill.training.memory import OPT_OUT
from ctrdistill.training.trainer import Trainer

BATCH = 4096
SETTINGS = {"glibc defaults": "0", "kept in the heap": "1"}


def measure(prep: Path, model_name: str, steps: int, warmup: int) -> dict:
    """Samples/s over `steps` training steps after `warmup` ones, and this process's peak RSS."""
    data = PreparedData(prep)
    rows = data.load("valid")
    torch.manual_seed(0)
    trainer = Trainer(PlainStrategy(cd.build_model({"name": model_name}, data.feature_map)),
                      cd.TrainConfig(batch_size=BATCH, early_stop=None, lr_plateau=None,
                                     progress=False))
    return {"train_samples_per_second": common.train_samples_per_second(
                trainer, common.speed_batch(rows, BATCH), warmup, min_steps=steps),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="bench_out/synth2m")
    parser.add_argument("--rows", type=int, default=2_500_000)
    parser.add_argument("--models", nargs="+", default=["dnn", "deepfm", "fibinet"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "PREP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.child:  # given the dataset, so that it imports only what training needs (peak RSS)
        name, prep = args.child
        print(json.dumps(measure(Path(prep), name, args.steps, args.warmup)))
        return
    prep = common.synthetic_dataset(Path(args.workdir), args.rows)
    lines = ["| model | freed memory | train samples/s | peak RSS (GiB) |", "|---|---|---|---|"]
    for name in args.models:
        for setting, value in SETTINGS.items():
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_allocator", "--steps", str(args.steps),
                 "--warmup", str(args.warmup), "--child", name, str(prep)],
                env=os.environ | {OPT_OUT: value}, check=True, capture_output=True, text=True)
            result = json.loads(child.stdout.splitlines()[-1])
            lines.append(f"| {name} | {setting} | {result['train_samples_per_second']:,.0f} "
                         f"| {result['peak_rss_gib']:.2f} |")
            print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    (Path(args.workdir) / "allocator.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
