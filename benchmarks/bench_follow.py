"""Continuous distillation over a landing zone (BENCHMARKS.md §13): `follow` over partitions of
the `criteo` preset that drift and bring new ids, one teacher and three students (tiny, small,
medium DNNs), each alone (`lambda: 0`) and distilled, scored on every partition before training
on it, against the partition's Bayes AUC.

    python -m benchmarks.bench_follow --workdir bench_out/follow

Runs (each a `follow --once` directory under `WORKDIR/runs/`; one that finished is kept):
- `main`: all seven models, growing vocabularies, the teacher one partition behind.
- `frozen`: the teacher and the distilled students on the prepared vocabulary alone.
- `broken` / `guarded`: `main` as committed after partition `--break-at`, its teacher's learning
  rate then multiplied by 100 (in its committed optimizer state), continued without and with
  the teacher guard (`behind_students_for: 2`, fallback: the last healthy version).
- `leaked` / `stale`: `teacher_updates: leaked` (the teacher trains on a partition before it
  labels it) and `stale` (it trains on the warm-up partitions only).
The prepared dataset whose preprocessing encodes the landing zone is partition 0 alone (the
history a deployment starts from); the first `--warmup` partitions train the teacher alone.
Each run's wall time and processed log go to `runs/NAME.json`; once all are there, `follow.md`
and `follow_*.png` are written into the workdir.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import polars as pl
import torch

import ctrdistill as cd
from ctrdistill.analysis.plots import pyplot, save_figure
from ctrdistill.continuous.synthetic import MARKER, partition_name
from ctrdistill.pipelines.follow import STATE, synth_landing
from ctrdistill.storage import atomic_file

logger = logging.getLogger("bench_follow")

TEACHER = {"name": "dcnv2", "size": "medium"}
SIZES = ("tiny", "small", "medium")
GUARD = {"behind_students_for": 2, "fallback": "last_healthy"}
RUNS = ("main", "broken", "guarded", "frozen", "leaked", "stale")
LATE = 16  # partitions at the end that the summary averages over


def _students(alone: bool) -> dict[str, Any]:
    students = {f"{size}-kd": {"model": {"name": "dnn", "size": size}} for size in SIZES}
    if alone:
        students |= {f"{size}-alone": {"model": {"name": "dnn", "size": size},
                                       "strategy": {"lambda": 0.0}} for size in SIZES}
    return students


def _zone(landing: Path, view: Path, partitions: int) -> Path:
    """A landing zone holding the first `partitions` partitions of `landing` (hard links: the
    source lists files as a landing zone on any filesystem would, without following links)."""
    for index in range(partitions):
        target = view / partition_name(index)
        target.mkdir(parents=True, exist_ok=True)
        for file in sorted((landing / partition_name(index)).iterdir()):  # the marker last
            if not (target / file.name).exists():
                (target / file.name).hardlink_to(file)
    return view


def _follow(config: dict[str, Any], zone: Path) -> float:
    began = time.perf_counter()
    cd.follow(config | {"landing": {"path": str(zone)}}, once=True)
    return time.perf_counter() - began


def _break_teacher(directory: Path, factor: float) -> None:
    """Multiply the committed teacher's learning rates by `factor` (a fault, injected where a
    bad deploy would put it: the optimizer state the next partition resumes from)."""
    state = torch.load(directory / STATE, map_location="cpu", weights_only=True)
    for optimizer in state["learners"]["teacher"]["optimizers"]:
        for group in optimizer["param_groups"]:
            group["lr"] *= factor
    with atomic_file(directory / STATE) as tmp:
        torch.save(state, tmp)


def run_all(args: argparse.Namespace) -> None:
    work: Path = args.workdir
    landing, runs = work / "landing", work / "runs"
    last = landing / partition_name(args.partitions - 1) / MARKER
    if not last.exists():
        synth_landing({"drift": args.drift, "seed": args.seed}, landing, args.partitions,
                      args.rows_per_partition, new_ids_rate=args.new_ids_rate)
    prep = work / "prep"
    if not (prep / "feature_map.json").exists():
        cd.prepare(recipe="synthetic", input=str(landing / partition_name(0)), output=str(prep))
    full = _zone(landing, work / "zones" / "all", args.partitions)
    first = _zone(landing, work / "zones" / f"first-{args.break_at}", args.break_at)
    base = {"name": "follow", "data": str(prep), "teacher": TEACHER,
            "warmup_partitions": args.warmup, "vocabulary": {"oov": "grow", "min_count": 2,
                                                             "window": 4},
            "train": {"batch_size": args.batch, "progress": False, "threads": args.threads}}
    wanted = set(args.runs)

    def run(name: str, config: dict[str, Any], zone: Path, before: Any = None) -> None:
        """Follow `zone` into `runs/NAME/follow` (after `before()`) unless its record exists."""
        record = runs / f"{name}.json"
        if name not in wanted or record.exists():
            return
        logger.info("run %s", name)
        seconds = before() if before is not None else 0.0
        seconds += _follow(config | {"output_dir": str(runs / name)}, zone)
        directory = runs / name / "follow"
        processed = torch.load(directory / STATE, map_location="cpu",
                               weights_only=True)["processed"]
        with atomic_file(record) as tmp:
            tmp.write_text(json.dumps({"seconds": seconds, "processed": processed}))

    main = base | {"students": _students(alone=True), "export_every": args.export_every}
    snapshot = runs / f"main-at-{args.break_at}" / "follow"

    def first_part() -> float:
        """main through the break, kept as the broken runs' start; returns its wall time."""
        timing = snapshot.parent / "seconds.json"
        if not timing.exists():
            seconds = _follow(main | {"output_dir": str(runs / "main")}, first)
            shutil.copytree(runs / "main" / "follow", snapshot, symlinks=True)
            timing.write_text(json.dumps(seconds))
        return json.loads(timing.read_text())

    run("main", main, full, before=first_part)
    for name, guard in (("broken", None), ("guarded", GUARD)):
        def broken(directory: Path = runs / name / "follow") -> float:
            if not (snapshot.parent / "seconds.json").exists():
                raise SystemExit(f"{directory.parent.name} starts from {snapshot}: run main "
                                 "first")
            if not directory.exists():
                shutil.copytree(snapshot, directory, symlinks=True)
                _break_teacher(directory, args.break_factor)
            return 0.0
        run(name, main | {"teacher_guard": guard, "export_every": 0}, full, before=broken)
    distilled = base | {"students": _students(alone=False)}
    run("frozen", distilled | {"vocabulary": {"oov": "single"}}, full)
    run("leaked", distilled | {"teacher_updates": "leaked"}, full)
    run("stale", distilled | {"teacher_updates": "stale"}, full)


# --- what the runs show -----------------------------------------------------------------------
def metrics(work: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(work / "runs" / name / "follow" / "metrics.parquet")


def _auc(frame: pl.DataFrame, model: str, lo: int, hi: int) -> float:
    part = frame.filter((pl.col("model") == model) & pl.col("index").is_between(lo, hi - 1))
    return float(part["auc"].mean())


def summary(work: Path, args: argparse.Namespace) -> str:
    n, late = args.partitions, max(args.partitions - LATE, args.warmup)
    main = metrics(work, "main")
    bayes = float(main.filter(pl.col("index") >= late).unique("index")["bayes_auc"].mean())
    rows = args.rows_per_partition * n
    record = json.loads((work / "runs" / "main.json").read_text())
    stage_rates = pl.DataFrame([p["rows_per_second"] for p in record["processed"]])
    seconds = record["seconds"]
    lines = [f"## main: {n} partitions x {args.rows_per_partition:,} rows, drift {args.drift}, "
             f"new ids {args.new_ids_rate}, teacher {TEACHER}", "",
             f"end to end {rows / seconds:,.0f} rows/s ({seconds / n:.1f} s per partition: "
             "a landing interval above this keeps the lag at zero); per stage rows/s (median): "
             + ", ".join(f"{c} {stage_rates[c].median():,.0f}" for c in stage_rates.columns),
             "", f"mean progressive AUC over partitions {late}-{n - 1} (Bayes {bayes:.4f}):", "",
             "| student | alone | distilled | teacher | gap recovered |", "|---|---|---|---|---|"]
    teacher = _auc(main, "teacher", late, n)
    for size in SIZES:
        alone, kd = _auc(main, f"{size}-alone", late, n), _auc(main, f"{size}-kd", late, n)
        lines.append(f"| {size} | {alone:.4f} | {kd:.4f} | {teacher:.4f} | "
                     f"{(kd - alone) / (teacher - alone):.2f} |")
    windows = list(range(args.warmup, n, 8))
    lines += ["", "gap recovered by window of partitions (distilled - alone) / (teacher - alone):",
              "", "| student | " + " | ".join(f"{w}-{min(w + 8, n) - 1}" for w in windows) + " |",
              "|---|" + "---|" * len(windows)]
    for size in SIZES:
        cells = []
        for w in windows:
            t, a, k = (_auc(main, m, w, w + 8) for m in ("teacher", f"{size}-alone",
                                                         f"{size}-kd"))
            cells.append(f"{(k - a) / (t - a):.2f}")
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    variants = [("main", "one partition behind, growing vocabulary"),
                ("frozen", "frozen vocabulary"), ("leaked", "leaked teacher"),
                ("stale", f"stale teacher (warm-up {args.warmup} partitions only)")]
    lines += ["", f"distilled students and teacher, mean AUC over partitions {late}-{n - 1}; "
              "OOV rate over the same:", "",
              "| run | teacher | tiny-kd | small-kd | medium-kd | OOV rate |",
              "|---|---|---|---|---|---|"]
    for name, what in variants:
        frame = metrics(work, name)
        oov = float(frame.filter(pl.col("index") >= late).unique("index")["oov_rate"].mean())
        lines.append(f"| {what} | " + " | ".join(f"{_auc(frame, m, late, n):.4f}" for m in (
            "teacher", *(f"{s}-kd" for s in SIZES))) + f" | {oov:.3f} |")
    brk = args.break_at
    lines += ["", f"teacher broken at partition {brk} (lr x{args.break_factor:g}): mean AUC over "
              f"partitions {brk}-{n - 1}:", "",
              "| run | teacher | tiny-kd | small-kd | medium-kd | partitions guarded |",
              "|---|---|---|---|---|---|"]
    for name, what in (("main", "healthy teacher"), ("broken", "broken, no guard"),
                       ("guarded", "broken, guard")):
        frame = metrics(work, name)
        guarded = frame.filter((pl.col("model") == "teacher") & ~pl.col("teacher_healthy")
                               & (pl.col("index") >= brk))["index"].to_list()
        span = f"{len(guarded)} (from {min(guarded)})" if guarded else "0"
        lines.append(f"| {what} | " + " | ".join(f"{_auc(frame, m, brk, n):.4f}" for m in (
            "teacher", *(f"{s}-kd" for s in SIZES))) + f" | {span} |")
    return "\n".join(lines) + "\n"


def _trained(frame: pl.DataFrame, warmup: int) -> pl.DataFrame:
    """Rows of models that had trained before being scored: students score their first
    partition (the warm-up's end) untrained, at chance."""
    return frame.filter((pl.col("model") == "teacher") | (pl.col("index") > warmup))


def plot(work: Path, args: argparse.Namespace) -> list[Path]:
    plt = pyplot()
    main = _trained(metrics(work, "main"), args.warmup)
    # the students' range after warm-up; the teacher's first partitions and a broken teacher
    # fall below it
    bottom = float(main.filter(pl.col("model") != "teacher")["auc"].min()) - 0.01
    fig, ax = plt.subplots(figsize=(9, 5))
    for (model,), part in main.sort("index").group_by("model", maintain_order=True):
        style = "-" if model == "teacher" or model.endswith("-kd") else ":"
        ax.plot(part["index"], part["auc"], style, lw=1.5 if model == "teacher" else 1,
                label=model)
    data = metrics(work, "main").unique("index").sort("index")
    ax.plot(data["index"], data["bayes_auc"], "k--", lw=1, label="Bayes AUC")
    ax.set(xlabel="partition (arrival order)", ylabel="progressive AUC (before training)",
           title="teacher and students on arriving partitions (dotted: alone)")
    ax.set_ylim(bottom=bottom)
    ax.legend(fontsize=8, ncol=3)
    ax.grid(alpha=0.3)
    paths = [save_figure(fig, work / "follow_students.png")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=True)
    panels = [("vocabulary", [("main", "growing"), ("frozen", "frozen")]),
              (f"teacher broken at partition {args.break_at}",
               [("main", "healthy"), ("broken", "broken, no guard"),
                ("guarded", "broken, guard")]),
              ("teacher labels", [("main", "one behind"), ("leaked", "leaked"),
                                  ("stale", "stale")])]
    for ax, (title, runs) in zip(axes, panels, strict=True):
        for name, label in runs:
            frame = _trained(metrics(work, name), args.warmup).sort("index")
            for model, style in (("teacher", "--"), ("small-kd", "-")):
                part = frame.filter(pl.col("model") == model)
                ax.plot(part["index"], part["auc"], style, lw=1,
                        label=f"{label}: {model}")
        ax.plot(data["index"], data["bayes_auc"], "k:", lw=1, label="Bayes AUC")
        ax.set(title=title, xlabel="partition")
        ax.set_ylim(bottom=bottom)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("progressive AUC")
    paths.append(save_figure(fig, work / "follow_variants.png"))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench_out/follow"))
    parser.add_argument("--partitions", type=int, default=48)
    parser.add_argument("--rows-per-partition", type=int, default=100_000)
    parser.add_argument("--drift", type=float, default=0.02)
    parser.add_argument("--new-ids-rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--break-at", type=int, default=30)
    parser.add_argument("--break-factor", type=float, default=100.0)
    parser.add_argument("--export-every", type=int, default=16)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS),
                        help="the runs this process does (two processes may share a workdir: "
                        "one with main first)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.workdir.mkdir(parents=True, exist_ok=True)
    run_all(args)
    if not all((args.workdir / "runs" / f"{name}.json").exists() for name in RUNS):
        return  # another process runs the rest
    text = summary(args.workdir, args)
    with atomic_file(args.workdir / "follow.md") as tmp:
        tmp.write_text(text)
    plot(args.workdir, args)
    print(text)


if __name__ == "__main__":
    main()
