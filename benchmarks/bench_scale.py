"""CPU scaling: one process with 2 threads against 2 DDP processes (gloo) with 1 thread each, on
the same config, data and global batch: training samples/s and the time to reach the same
validation AUC.

    python -m benchmarks.bench_scale --workdir bench_out/scale --rows 500000

Both runs evaluate every `--eval-every` steps; "time to AUC" is the training time (samples seen
/ samples per second, evaluation excluded) at the first evaluation whose valid AUC is within
0.001 of the 1-process run's final one. The 2-process run goes through the CLI's `--nproc`.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

import yaml

from benchmarks import common
from ctrdistill.analysis.report import markdown_table
from ctrdistill.rundir import RunDirectory

MODEL = {"name": "dnn", "embedding_dim": 16, "hidden_units": [400, 400, 400]}


def run_config(path: Path, name: str, prep: Path, threads: int, eval_every: int) -> Path:
    train = common.train_config(threads=threads, eval_every_steps=eval_every).model_dump(
        mode="json")
    path.write_text(yaml.safe_dump({"name": name, "data": str(prep), "output_dir": str(
        path.parent / "runs"), "model": MODEL, "train": train}))
    return path


def train(config: Path, nproc: int) -> None:
    subprocess.run([sys.executable, "-m", "ctrdistill", "train", str(config),
                    "--nproc", str(nproc)], check=True)


def summary(run: Path, target: float) -> dict:
    history = RunDirectory(run).history()
    metrics = common.run_metrics(run)
    reached = next((r for r in history if r["valid"]["auc"] >= target), None)
    return {"model": run.name, "train_samples_per_second": metrics["train_samples_per_second"],
            "auc": metrics["test"]["auc"], "logloss": metrics["test"]["logloss"],
            "seconds_to_target": None if reached is None
            else reached["samples"] / reached["samples_per_second"],
            "valid_auc": history[-1]["valid"]["auc"]}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench_out/scale"))
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--eval-every", type=int, default=20)
    args = parser.parse_args()
    prep = common.synthetic_dataset(args.workdir, args.rows)
    runs = args.workdir / "runs"
    variants = {"1 process x 2 threads": ("one", 1, 2), "2 processes x 1 thread": ("two", 2, 1)}
    for name, nproc, threads in variants.values():
        config = run_config(args.workdir / f"{name}.yaml", name, prep, threads, args.eval_every)
        common.run_once(runs / name, train, config, nproc)
    target = RunDirectory(runs / "one").history()[-1]["valid"]["auc"] - 1e-3
    rows = [{**summary(runs / run, target), "model": label}
            for label, (run, _, _) in variants.items()]
    (args.workdir / "scale.json").write_text(json.dumps({"target_valid_auc": target,
                                                          "rows": rows}, indent=1))
    print(markdown_table(rows))
    for row in rows:
        seconds = row["seconds_to_target"]
        print(f"{row['model']}: valid AUC {row['valid_auc']:.5f}, time to valid AUC "
              f"{target:.5f}: {'not reached' if seconds is None else f'{seconds:.1f} s'}")


if __name__ == "__main__":
    main()
