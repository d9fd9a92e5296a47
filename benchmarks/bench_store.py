"""Many students, one teacher pass: three DNN students distilled from one label store of a DCNv2
teacher, against each student scoring the teacher itself.

    python -m benchmarks.bench_store --workdir bench_out/synth2m
    python -m benchmarks.bench_store --workdir bench_out/synth2m --timing-only   # quiet machine

Needs the DCNv2 teacher run of bench_distill (trained here if missing). The two per-student
costs are timed on the calls `distill` makes, which no verb times apart: live teacher scoring
(`labels.store.teacher_logits`) and reading the store (`LabelStore.check` + `join`), both on
splits loaded beforehand.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import ctrdistill as cd
from benchmarks import common
from ctrdistill.data.dataset import PreparedData
from ctrdistill.labels.store import LabelStore, teacher_logits

STUDENTS = [{"name": "dnn", "hidden_units": [400, 400, 400]},
            {"name": "dnn", "hidden_units": [256, 128]},
            {"name": "dnn", "hidden_units": [128, 64], "embedding_dim": 8}]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="bench_out/synth2m")
    parser.add_argument("--rows", type=int, default=2_500_000)
    parser.add_argument("--timing-only", action="store_true",
                        help="time the teacher pass, live scoring and store reads only (run it "
                        "alone on the machine); writes store_timing.{json,md}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(args.workdir)
    prep = common.synthetic_dataset(root, args.rows)
    teacher = common.teacher_run(root, prep, "dcnv2")
    data = PreparedData(prep)
    store_path = root / "stores" / "dcnv2-once"
    shutil.rmtree(store_path, ignore_errors=True)

    start = time.perf_counter()
    cd.label(cd.LabelConfig(teachers=[teacher], data=prep, output=store_path, progress=False))
    label_seconds = time.perf_counter() - start

    model = cd.load_run(teacher).model
    splits = {s: data.load(s) for s in ("train", "valid", "test")}
    start = time.perf_counter()
    for rows in splits.values():
        teacher_logits([model], rows)  # logits only, as the store holds
    live_seconds = time.perf_counter() - start  # what each student pays without a store

    store = LabelStore(store_path)
    start = time.perf_counter()
    store.check(data)
    for split, rows in splits.items():
        store.join(rows, split)
    read_seconds = time.perf_counter() - start  # what each student pays with the store

    results = []
    for k, student in enumerate([] if args.timing_only else STUDENTS):
        name = f"store-student{k}"
        out = root / "store-students" / name
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        result = cd.distill(cd.DistillConfig(name=name, data=prep, output_dir=out.parent,
                                             label_store=store_path, student=student,
                                             train=common.train_config(k + 1)))
        results.append({"student": student, "seconds": time.perf_counter() - start,
                        "test_auc": result.metrics["test"]["auc"]})
    n = len(STUDENTS)
    summary = {"rows": sum(len(r) for r in splits.values()), "label_seconds": label_seconds,
               "teacher_scoring_seconds_per_student": live_seconds,
               "store_read_seconds_per_student": read_seconds, "students": results,
               "teacher_cost_with_store": label_seconds + n * read_seconds,
               "teacher_cost_without_store": n * live_seconds}
    stem = "store_timing" if args.timing_only else "store_bench"
    (root / f"{stem}.json").write_text(json.dumps(summary, indent=1, default=str))
    lines = ["| quantity | value |", "|---|---|",
             f"| rows scored (all splits) | {summary['rows']:,} |",
             f"| one teacher pass into the store (`label`) | {label_seconds:.1f} s |",
             f"| teacher scoring per student without a store | {live_seconds:.1f} s |",
             f"| store check + join per student | {read_seconds:.1f} s |",
             f"| teacher cost for {n} students, with store | "
             f"{summary['teacher_cost_with_store']:.1f} s |",
             f"| teacher cost for {n} students, without store | "
             f"{summary['teacher_cost_without_store']:.1f} s |"]
    lines += [f"| student {k} {s['student'].get('hidden_units')}: wall time / test AUC | "
              f"{s['seconds']:.0f} s / {s['test_auc']:.5f} |" for k, s in enumerate(results)]
    table = "\n".join(lines) + "\n"
    (root / f"{stem}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
