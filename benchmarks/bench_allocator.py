"""Training speed and peak memory with freed memory kept in the heap (the trainer's default on
glibc) against glibc's defaults (CTRDISTILL_KEEP_FREED_MEMORY=0), model by model.

    BENCH_THREADS=1 python benchmarks/bench_allocator.py --workdir bench_out/synth2m \
        --models dnn deepfm fibinet

Each (model, setting) trains in a fresh process, so the peak RSS is that setting's own: a few
warm-up steps, then timed steps on one batch of 4096 rows of the synthetic benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from common import speed_batch, synthetic_dataset, train_samples_per_second
from ctrdistill.data.dataset import PreparedData
from ctrdistill.models import build_model
from ctrdistill.strategies import PlainStrategy
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.memory import OPT_OUT
from ctrdistill.training.trainer import Trainer

BATCH = 4096
SETTINGS = {"glibc defaults": "0", "kept in the heap": "1"}


def measure(prep: Path, model_name: str, steps: int, warmup: int) -> dict:
    """Samples/s over `steps` training steps after `warmup` ones, and this process's peak RSS."""
    data = PreparedData(prep)
    rows = data.load("valid")
    torch.manual_seed(0)
    trainer = Trainer(PlainStrategy(build_model({"name": model_name}, data.feature_map)),
                      TrainConfig(batch_size=BATCH, early_stop=None, lr_plateau=None,
                                  progress=False))
    return {"train_samples_per_second": train_samples_per_second(
                trainer, speed_batch(rows, BATCH), warmup, min_steps=steps),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="bench_out/synth2m")
    parser.add_argument("--rows", type=int, default=2_500_000)
    parser.add_argument("--models", nargs="+", default=["dnn", "deepfm", "fibinet"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    prep = synthetic_dataset(Path(args.workdir), args.rows)
    if args.child:
        print(json.dumps(measure(prep, args.child, args.steps, args.warmup)))
        return
    lines = ["| model | freed memory | train samples/s | peak RSS (GiB) |", "|---|---|---|---|"]
    for name in args.models:
        for setting, value in SETTINGS.items():
            child = subprocess.run(
                [sys.executable, __file__, "--workdir", args.workdir, "--rows", str(args.rows),
                 "--steps", str(args.steps), "--warmup", str(args.warmup), "--child", name],
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
