"""Biased and stale teachers on drifting synthetic data (10 days, the hidden model rotating
0.15 rad a day).

    python benchmarks/bench_drift.py --experiment bias --seeds 3
    python benchmarks/bench_drift.py --experiment stream

bias:   auxiliary vs direct distillation when the teacher is biased. Data split by day: train
        days 0-7, valid day 8, test day 9. Teacher A trains on days 0-3 only (stale); teacher B
        trains on days 0-7 but its stored logits carry a constant +1.0 shift (miscalibrated).
        Reported: AUC and calibration of the served head of a DNN student, with the DNN alone.
stream: `ctrdistill stream` day by day (random 8:1:1 split within each day): a stale teacher
        trained once on day 0 vs a continually updated one, direct vs auxiliary distillation.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).parent))

from bench_distill import STUDENT, summarise, teacher_store, train_config
from common import add_seed_arguments, seed_range, synthetic_dataset
from ctrdistill.analysis.plots import plot_daily
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.loader import BatchLoader
from ctrdistill.labels.store import LOGITS, MANIFEST
from ctrdistill.models.registry import build_model
from ctrdistill.pipelines.distill import DistillConfig, distill
from ctrdistill.pipelines.stream import StreamConfig, stream
from ctrdistill.pipelines.train import TrainRunConfig as RunConfig
from ctrdistill.pipelines.train import train as run_train
from ctrdistill.pipelines.writer import TrainJob, run_job
from ctrdistill.storage import atomic_directory
from ctrdistill.strategies.plain import PlainStrategy

DAYS, DRIFT, ROWS = 10, 0.15, 2_500_000
TEACHER = "dcnv2"


def stale_teacher(root: Path, prep: Path, days: list[int]) -> Path:
    """A teacher trained on the train rows of `days` only."""
    out = root / "teachers" / f"{TEACHER}-days{days[0]}-{days[-1]}"
    if not (out / "metrics.json").exists():
        data = PreparedData(prep)
        config = train_config(2026)
        model = build_model({"name": TEACHER}, data.feature_map)
        loader = BatchLoader(data.load("train", days), config.batch_size, seed=config.seed)
        run_job(TrainJob(out.name, PlainStrategy(model), data, config, out, {"days": days},
                         loader=loader))
    return out


def shifted_store(root: Path, prep: Path, teacher: Path, shift: float) -> Path:
    """A label store of `teacher` whose logits are all shifted by `shift` (a biased teacher)."""
    store = teacher_store(root, prep, [teacher])
    shifted = root / "stores" / f"{teacher.name}+{shift}"
    if not shifted.exists():
        with atomic_directory(shifted) as tmp:
            shutil.copy(store / MANIFEST, tmp / MANIFEST)
            (tmp / "partitions").mkdir()
            for part in (store / "partitions").glob("*.parquet"):
                frame = pl.read_parquet(part)
                frame.with_columns(pl.col(LOGITS) + shift).write_parquet(
                    tmp / "partitions" / part.name)
    return shifted


def experiment_bias(root: Path, seeds: list[int], rows: int) -> dict[str, list[dict]]:
    prep = synthetic_dataset(root / "byday", rows, DAYS, DRIFT, split={
        "kind": "day", "valid_days": [8], "test_days": [9]})
    stale = stale_teacher(root, prep, [0, 1, 2, 3])
    full = root / "teachers" / TEACHER
    if not (full / "metrics.json").exists():
        run_train(RunConfig(name=TEACHER, data=prep, output_dir=full.parent,
                            model={"name": TEACHER}, train=train_config(2026)))
    sources = {"stale teacher (days 0-3)": {"label_store": teacher_store(root, prep, [stale])},
               "shifted teacher (+1.0 logit)": {"label_store": shifted_store(root, prep, full,
                                                                             1.0)}}
    results: dict[str, list[dict]] = {}
    for name, run in (("teacher: stale (days 0-3)", stale), ("teacher: days 0-7", full)):
        results[name] = [json.loads((run / "metrics.json").read_text())["test"]]
    for seed in seeds:
        alone = root / "students" / f"dnn-alone-s{seed}"
        if not (alone / "metrics.json").exists():
            run_train(RunConfig(name=alone.name, data=prep, output_dir=alone.parent,
                                model=STUDENT, train=train_config(seed)))
        results.setdefault("DNN alone", []).append(
            json.loads((alone / "metrics.json").read_text())["test"])
        for source, config in sources.items():
            for kind in ("direct", "aux"):
                name = f"{kind}-{'stale' if 'stale' in source else 'shifted'}-s{seed}"
                out = root / "students" / name
                if not (out / "metrics.json").exists():
                    distill(DistillConfig(name=name, data=prep, output_dir=out.parent,
                                          student=STUDENT, train=train_config(seed),
                                          strategy={"kind": kind}, **config))
                metrics = json.loads((out / "metrics.json").read_text())["test"]
                results.setdefault(f"{kind} KD, {source}", []).append(metrics)
    return results


def experiment_stream(root: Path, rows: int) -> str:
    """Daily table: for each evaluation day, AUC and calibration of every stream's models."""
    prep = synthetic_dataset(root / "random", rows, DAYS, DRIFT)
    histories = {}
    for updates in ("stale", "continual"):
        for kind in ("direct", "aux"):
            name = f"stream-{updates}-{kind}"
            out = root / "streams" / name
            if not (out / "daily.json").exists():
                stream(StreamConfig(name=name, data=prep, output_dir=out.parent,
                                    teacher={"name": TEACHER}, student=STUDENT,
                                    teacher_updates=updates, distill={"kind": kind},
                                    train=train_config(2026)))
            histories[name] = json.loads((out / "daily.json").read_text())
    plot_daily(histories, root / "streams" / "daily.png")
    header = ["day"] + [f"{n.removeprefix('stream-')} {who} AUC / calib"
                        for n in histories for who in ("teacher", "student")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, record in enumerate(next(iter(histories.values()))):
        cells = [str(record["eval_day"])]
        for history in histories.values():
            for who in ("teacher", "student"):
                m = history[index][who]
                cells.append(f"{m['auc']:.4f} / {m['calibration']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="bench_out/drift")
    parser.add_argument("--experiment", choices=["bias", "stream"], default="bias")
    add_seed_arguments(parser)
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args()
    root = Path(args.workdir)
    root.mkdir(parents=True, exist_ok=True)
    if args.experiment == "bias":
        results = experiment_bias(root, seed_range(args), args.rows)
        (root / "bias.json").write_text(json.dumps(results, indent=1))
        table = summarise(results)
    else:
        table = experiment_stream(root, args.rows)
    (root / f"{args.experiment}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
