"""GPU training and labelling throughput (run it on a machine with a CUDA device):

    python -m benchmarks.bench_gpu --workdir bench_out/gpu --rows 2000000 --device cuda

For DNN, DCNv2, DeepFM and FiBiNET: training samples/s on one device at batch 4096 and 16384,
precision fp32 and bf16, with the training rows in device memory (batches are index slices
there) and streamed from page-locked host memory (an asynchronous copy per batch), each timed
over `--seconds` of steps after a warm-up; then teacher-labelling rows/s (`cd.label`) per
model. Writes gpu.json and gpu.md in the workdir. FuxiCTR on the same GPU is
`benchmarks.bench_fuxictr_parity` (it installs FuxiCTR 2.3.10 into a venv from PyPI, so run it
where PyPI is reachable). `--quick` (small data, two models, a
few steps) checks the script anywhere, on the CPU too.

It drives `Trainer` steps directly: the figures are of the steps alone, which no verb reports.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

import ctrdistill as cd
from benchmarks import common
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.loader import BatchLoader
from ctrdistill.strategies import PlainStrategy
from ctrdistill.training.device import resolve_device, synchronize
from ctrdistill.training.trainer import Trainer

MODELS = ["dnn", "dcnv2", "deepfm", "fibinet"]


def samples_per_second(model_name: str, rows, batch_size: int, precision: str, device,
                       seconds: float) -> float:
    torch.manual_seed(0)
    model = cd.build_model({"name": model_name}, rows.feature_map)
    config = common.train_config(batch_size=batch_size, precision=precision,
                                 device=str(device))
    trainer = Trainer(PlainStrategy(model), config)
    trainer.strategy.train()
    loader = BatchLoader(rows, batch_size, seed=0)
    batches = loader.epoch_batches(0)
    for _ in range(3):  # warm-up: kernels chosen, memory pools grown
        trainer.train_step(next(batches))
    synchronize(device)
    started, steps = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        batch = next(batches, None)
        if batch is None:
            batches = loader.epoch_batches(steps)
            batch = next(batches)
        trainer.train_step(batch)
        steps += 1
        if steps % 10 == 0:
            synchronize(device)
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - started)


def labelling_rows_per_second(root: Path, prep: Path, model_name: str, device) -> float:
    run = common.train_run(root / "teachers" / model_name, prep, {"name": model_name})
    started = time.perf_counter()
    result = cd.label(teachers=[run], data=prep, output=root / "stores" / model_name,
                      device=str(device), progress=False)
    return result.metrics["rows"] / (time.perf_counter() - started)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench_out/gpu"))
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    models, sizes, precisions = MODELS, [4096, 16384], ["fp32", "bf16"]
    if args.quick:
        args.rows, args.seconds, models, sizes = 20_000, 0.5, ["dnn", "deepfm"], [1024]
    device = resolve_device(args.device)
    prep = common.synthetic_dataset(args.workdir, args.rows)
    host = PreparedData(prep).load("train")
    placements = {"on device": host.to(device),
                  "streamed": host.pin_memory() if device.type == "cuda" else host}
    table = []
    for name in models:
        for size in sizes:
            for precision in precisions:
                for placement, rows in placements.items():
                    rate = samples_per_second(name, rows, size, precision, device, args.seconds)
                    table.append({"model": name, "batch": size, "precision": precision,
                                  "data": placement, "train_samples_per_second": rate})
                    logging.info("%s", table[-1])
    labelling = {name: labelling_rows_per_second(args.workdir, prep, name, device)
                 for name in models}
    report = {"device": str(device), "name": torch.cuda.get_device_name(device)
              if device.type == "cuda" else "cpu", "torch": torch.__version__,
              "rows": args.rows, "training": table, "labelling_rows_per_second": labelling}
    (args.workdir / "gpu.json").write_text(json.dumps(report, indent=1))
    lines = [f"device: {report['name']} ({device}), torch {torch.__version__}", "",
             "| model | batch | precision | data | train samples/s |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['batch']} | {r['precision']} | {r['data']} | "
              f"{r['train_samples_per_second']:,.0f} |" for r in table]
    lines += ["", "| teacher | labelled rows/s |", "|---|---|"]
    lines += [f"| {name} | {rate:,.0f} |" for name, rate in labelling.items()]
    (args.workdir / "gpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
