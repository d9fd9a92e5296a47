"""Biased and stale teachers on drifting synthetic data (10 days, the hidden model rotating
0.15 rad a day).

    python -m benchmarks.bench_drift --experiment bias --seeds 3
    python -m benchmarks.bench_drift --experiment stream

bias:   auxiliary vs direct distillation when the teacher is biased. Data split by day: train
        days 0-7, valid day 8, test day 9. Teacher A trains on days 0-3 only (stale); teacher B
        trains on days 0-7 but its stored logits carry a constant +1.0 shift (miscalibrated).
        Reported: AUC and calibration of the served head of a DNN student, with the DNN alone.
stream: `ctrdistill stream` day by day (each day scored by both models before they train on
        it): a stale teacher trained once on day 0 vs a continually updated one, direct vs
        auxiliary distillation.

The shifted teacher's store is the stored one rewritten with shifted logits: the miscalibration
is the experiment's intervention, which no verb makes, so this writes label-store files
(`labels.store` names) itself. The stale teacher trains on a `data_subset` of days 0-3.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import polars as pl

import ctrdistill as cd
from benchmarks import common
from ctrdistill.analysis.plots import plot_daily
from ctrdistill.data.dataset import PreparedData
from ctrdistill.labels.store import LOGITS, MANIFEST
from ctrdistill.storage import atomic_directory

DAYS, DRIFT, ROWS = 10, 0.15, 2_500_000
TEACHER = "dcnv2"


def stale_teacher(root: Path, prep: Path, days: list[int]) -> Path:
    """A teacher trained on the train rows of `days` only."""
    name = f"{TEACHER}-days{days[0]}-{days[-1]}"
    view = common.data_subset(prep, root / f"prep-{name}", PreparedData(prep).scan("train", days))
    return common.train_run(root / "teachers" / name, view, {"name": TEACHER})


def write_shifted(store: Path, out: Path, shift: float) -> None:
    """`store` copied to `out` with every logit shifted (the manifest holds no logit digests)."""
    with atomic_directory(out) as tmp:
        shutil.copy(store / MANIFEST, tmp / MANIFEST)
        (tmp / "partitions").mkdir()
        for part in (store / "partitions").glob("*.parquet"):
            frame = pl.read_parquet(part)
            frame.with_columns(pl.col(LOGITS) + shift).write_parquet(
                tmp / "partitions" / part.name)


def shifted_store(root: Path, prep: Path, teacher: Path, shift: float) -> Path:
    """A label store of `teacher` whose logits are all shifted by `shift` (a biased teacher)."""
    store = common.teacher_store(root, prep, [teacher])
    shifted = root / "stores" / f"{teacher.name}+{shift}"
    return common.run_once(shifted, write_shifted, store, shifted, shift)


def experiment_bias(root: Path, seeds: list[int], rows: int) -> dict[str, list[dict]]:
    prep = common.synthetic_dataset(root / "byday", rows, DAYS, DRIFT, split={
        "kind": "day", "valid_days": [8], "test_days": [9]})
    stale = stale_teacher(root, prep, [0, 1, 2, 3])
    full = common.teacher_run(root, prep, TEACHER)
    sources = {
        "stale teacher (days 0-3)": {"label_store": common.teacher_store(root, prep, [stale])},
        "shifted teacher (+1.0 logit)": {"label_store": shifted_store(root, prep, full, 1.0)}}
    results: dict[str, list[dict]] = {}
    for name, run in (("teacher: stale (days 0-3)", stale), ("teacher: days 0-7", full)):
        results[name] = [common.run_metrics(run)["test"]]
    for seed in seeds:
        results.setdefault("DNN alone", []).append(
            common.run_metrics(common.student_alone_run(root, prep, seed))["test"])
        for source, config in sources.items():
            tag = "stale" if "stale" in source else "shifted"
            for kind in ("direct", "aux"):
                out = root / "students" / f"{kind}-{tag}-s{seed}"
                common.run_once(out, cd.distill, cd.DistillConfig(
                    name=out.name, data=prep, output_dir=out.parent, student=common.STUDENT,
                    train=common.train_config(seed), strategy={"kind": kind}, **config))
                results.setdefault(f"{kind} KD, {source}", []).append(
                    common.run_metrics(out)["test"])
    return results


def experiment_stream(root: Path, rows: int) -> str:
    """Daily table: for each evaluation day, AUC and calibration of every stream's models."""
    prep = common.synthetic_dataset(root / "random", rows, DAYS, DRIFT)
    histories = {}
    for updates in ("stale", "continual"):
        for kind in ("direct", "aux"):
            name = f"stream-{updates}-{kind}"
            out = root / "streams" / name
            # train: a mapping (a PartitionTrainConfig takes no TrainConfig)
            daily = common.run_once(out / "daily.json", cd.stream, cd.StreamConfig(
                name=name, data=prep, output_dir=out.parent, teacher={"name": TEACHER},
                student=common.STUDENT, teacher_updates=updates, strategy={"kind": kind},
                train=common.train_config().model_dump()))
            histories[name] = json.loads(daily.read_text())
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
    common.add_seed_arguments(parser)
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(args.workdir)
    root.mkdir(parents=True, exist_ok=True)
    if args.experiment == "bias":
        results = experiment_bias(root, common.seed_range(args), args.rows)
        (root / "bias.json").write_text(json.dumps(results, indent=1))
        table = common.summarise(results)
    else:
        table = experiment_stream(root, args.rows)
    (root / f"{args.experiment}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
