"""Parity with FuxiCTR: the same synthetic data, split and protocol through both libraries.

    python -m benchmarks.bench_fuxictr_parity --rows 300000 --seeds 3

1. Synthetic raw rows (`write_synthetic`), prepared by us with the x4 protocol (8:1:1 random
   split, min count 10, numerics bucketised floor(ln(x)^2) for x > 2). Timed: `prepare`.
2. Each split's raw rows (joined back by `row_id`) written as CSV; FuxiCTR preprocesses them from
   raw with its own Criteo-x4 recipe (`fuxictr_adapters.py prepare`). Timed: fit + transform.
3. DNN, DeepFM and DCNv2 trained for the same epochs and seeds on both sides; ours through the
   same calls `cd.train` makes (its `Trainer` driven directly, to time loading, the epoch and
   evaluation apart, as FuxiCTR's side is timed), FuxiCTR's through its `BaseModel.fit` in its
   own venv (`bench_out/fuxictr-venv`, made here when missing: torch==2.13.0 first, so pip keeps
   the CPU wheel, then fuxictr==2.3.10 and polars<2).

Writes bench_out/parity/results.json and a markdown table to stdout (and --table).

Run it on an otherwise idle machine: FuxiCTR preprocesses and loads through Ray Data, whose
worker start-up crawls when other processes hold the cores (532 s to preprocess 20k rows beside
two training processes on 2 cores, 36 s for 300k rows idle).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
import venv
from pathlib import Path

import polars as pl
import torch

import ctrdistill as cd
from benchmarks import common
from ctrdistill.data.dataset import SPLITS, PreparedData
from ctrdistill.pipelines.loaders import train_loader
from ctrdistill.strategies import PlainStrategy
from ctrdistill.training.trainer import Trainer

ADAPTERS = Path(__file__).with_name("fuxictr_adapters.py")
RAW_COLUMNS = ["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]
MODELS = ["dnn", "deepfm", "dcnv2"]


def fuxictr_venv(path: Path) -> Path:
    """The venv's python; created and filled on first use, reused after."""
    python = path / "bin" / "python"
    if not python.exists():
        venv.create(path, with_pip=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)  # first: the local CPU wheel
        subprocess.run([*pip, "fuxictr==2.3.10", "polars<2", "torch==2.13.0"], check=True)
    return python


def run_fuxictr(python: Path, *args: str) -> tuple[dict, float]:
    """Run one adapter command; its RESULT line and the whole subprocess's wall time."""
    started = time.perf_counter()
    proc = subprocess.run([str(python), str(ADAPTERS), *args], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
        raise SystemExit(f"FuxiCTR side failed: {' '.join(args[:1])} (exit {proc.returncode})")
    line = next(x for x in reversed(proc.stdout.splitlines()) if x.startswith("RESULT:"))
    return json.loads(line.removeprefix("RESULT:")), wall


def export_csv(raw: Path, prep: Path, out: Path) -> None:
    """Each split's raw rows as CSV, the split taken from our prepared data's row ids."""
    frame = pl.concat([pl.read_parquet(part) for part in sorted(raw.glob("part-*.parquet"))])
    frame = frame.with_row_index("row_id").with_columns(pl.col("row_id").cast(pl.Int64))
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        ids = pl.concat([pl.read_parquet(p, columns=["row_id", "label"])
                         for p in sorted((prep / split).glob("*.parquet"))])
        rows = frame.join(ids.rename({"label": "prepared_label"}), on="row_id", how="inner")
        if not (rows["label"].cast(pl.Float32) == rows["prepared_label"]).all():
            raise SystemExit(f"row ids of split {split} do not match the raw rows")
        rows.sort("row_id").select(RAW_COLUMNS).write_csv(out / f"{split}.csv")


def train_ours(prep: Path, name: str, seed: int, config: cd.TrainConfig) -> dict:
    """What `cd.train` does (build, fit with validation, evaluate), timed step by step."""
    started = time.perf_counter()
    data = PreparedData(prep)
    config = config.model_copy(update={"seed": seed})
    torch.manual_seed(seed)
    model = cd.build_model({"name": name}, data.feature_map)
    trainer = Trainer(PlainStrategy(model), config)
    loader = train_loader(data, config)
    valid, test = data.load("valid"), data.load("test")
    load_s = time.perf_counter() - started
    t0 = time.perf_counter()
    fit = trainer.fit(loader, valid)
    fit_s = time.perf_counter() - t0
    last = fit.history[-1]
    train_s = last["samples"] / last["samples_per_second"]  # the loop, before validation
    t0 = time.perf_counter()
    metrics = trainer.evaluate(test)
    eval_s = time.perf_counter() - t0
    return {"model": name, "seed": seed, "auc": metrics["auc"], "logloss": metrics["logloss"],
            "fit_s": fit_s, "valid_s": fit_s - train_s, "train_s": train_s, "eval_s": eval_s,
            "load_s": load_s, "params": sum(p.numel() for p in model.parameters())}


def table(results: dict) -> str:
    head = ("| model | library | test AUC | test logloss | preprocess s | epoch s | eval s | "
            "end-to-end s |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for name in results["models"]:
        mean = {}
        for lib in ("ours", "fuxictr"):
            runs = [r for r in results[lib]["runs"] if r["model"] == name]
            prep_s = results[lib]["preprocess_s"]
            epoch = statistics.mean(r["train_s"] for r in runs)
            ev = statistics.mean(r["eval_s"] for r in runs)
            e2e = prep_s + statistics.mean(r["end_to_end_s"] for r in runs)
            mean[lib] = (prep_s, epoch, ev, e2e)
            lines.append(f"| {name} | {lib} | {common.mean_std([r['auc'] for r in runs], 5)} | "
                         f"{common.mean_std([r['logloss'] for r in runs], 5)} | {prep_s:.1f} | "
                         f"{epoch:.1f} | {ev:.2f} | {e2e:.1f} |")
        ratios = [o / t for o, t in zip(mean["ours"], mean["fuxictr"], strict=True)]
        lines.append(f"| {name} | ours/theirs | | | {ratios[0]:.2f} | {ratios[1]:.2f} | "
                     f"{ratios[2]:.2f} | {ratios[3]:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--workdir", type=Path, default=Path("bench_out/parity"))
    parser.add_argument("--venv", type=Path, default=Path("bench_out/fuxictr-venv"))
    parser.add_argument("--table", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = args.workdir / f"rows{args.rows}"
    seeds = list(range(1, args.seeds + 1))
    python = fuxictr_venv(args.venv.absolute())

    raw, prep, csv = work / "raw", work / "prep", work / "csv"
    common.run_once(raw, cd.synth, cd.SynthConfig(rows=args.rows), output=raw, show_progress=False)
    started = time.perf_counter()  # ours: raw -> encoded shards, timed from scratch
    cd.prepare(cd.PrepareConfig(recipe="synthetic", input=raw, output=prep, protocol="x4",
                                overwrite=True))
    ours_prep_s = time.perf_counter() - started
    export_csv(raw, prep, csv)

    fuxi_root = work / "fuxictr"
    subprocess.run(["rm", "-rf", str(fuxi_root)], check=True)  # FuxiCTR skips an existing map
    fuxi_prep, fuxi_prep_wall = run_fuxictr(python, "prepare", "--csv-dir", str(csv.absolute()),
                                            "--data-root", str((fuxi_root / "data").absolute()))
    print(f"preprocess: ours {ours_prep_s:.1f}s, FuxiCTR {fuxi_prep['preprocess_s']:.1f}s "
          f"(process {fuxi_prep_wall:.1f}s)", flush=True)

    config = cd.TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3,
                            embedding_l2=1e-5, early_stop=None, lr_plateau=None, progress=False,
                            threads=2)
    ours_runs = []
    for name in args.models:
        for seed in seeds:
            run = train_ours(prep, name, seed, config)
            run["end_to_end_s"] = run["load_s"] + run["fit_s"] + run["eval_s"]
            ours_runs.append(run)
            print("ours", json.dumps(run), flush=True)

    fuxi_train, fuxi_train_wall = run_fuxictr(
        python, "train", "--data-root", str((fuxi_root / "data").absolute()),
        "--model-root", str((fuxi_root / "checkpoints").absolute()),
        "--models", *args.models, "--seeds", *map(str, seeds), "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size))
    for run in fuxi_train["runs"]:  # data loaders are built once for all runs: share it out
        run["end_to_end_s"] = fuxi_train["loader_s"] + run["fit_s"] + run["eval_s"]
        print("fuxictr", json.dumps(run), flush=True)

    results = {
        "rows": args.rows, "seeds": seeds, "epochs": args.epochs,
        "batch_size": args.batch_size, "models": args.models,
        "ours": {"preprocess_s": ours_prep_s, "runs": ours_runs},
        "fuxictr": {"preprocess_s": fuxi_prep["preprocess_s"],
                    "preprocess_process_s": fuxi_prep_wall, "loader_s": fuxi_train["loader_s"],
                    "train_process_s": fuxi_train_wall, "runs": fuxi_train["runs"]},
        "torch_threads": 2,
    }
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "results.json").write_text(json.dumps(results, indent=1))
    text = table(results)
    if args.table:
        args.table.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
