"""A Criteo-sized run end to end on this machine, one CLI process per stage, each timed with
`/usr/bin/time -v` (issue 31 part 1):

    python -m benchmarks.bench_criteo_scale --workdir /work/bench_criteo45 --rows 45000000

Stages: synth (the `criteo` preset with `--max-vocab`, so the largest fields have millions of
distinct raw ids; the preset's other knobs unchanged); prepare with protocol x4 (min count 10);
one epoch of a DNN teacher in `--nproc` DDP processes (streaming loader: two in-memory copies of
the training split would not fit); `label` of the train split into a store, then of valid and
test (the student reads all three); one epoch of a small student distilled from the store;
`predict --input` on the first `--predict-rows` raw rows; `export` of the student (ONNX).

References for the goals: the same teacher and student configs on a dataset holding the first
`--reference-rows` training rows (the same vocabularies, so the same models: only the loader
and the label join see the size), and the teacher's pure scoring speed (rows/s of
`teacher_logits` over one in-memory training shard) beside the label stage's rows/s.

Per stage the JSON records the wall time, rows/s, the largest process's peak RSS (`time -v`)
and the peak summed RSS of the stage's process tree (DDP ranks together, sampled every 0.5 s).
`criteo_scale.json` is rewritten after every stage; a rerun skips the stages it records as
finished, so an interrupted run resumes. A record renamed `NAME, before (COMMIT)` stays in the
table for comparison and is left out of the goals. `criteo_scale.md` holds the table at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.schema import FEATURE_MAP_FILE
from ctrdistill.storage import atomic_directory, atomic_file

TEACHER = {"name": "dnn", "embedding_dim": 16, "hidden_units": [400, 400, 400]}
STUDENT = {"name": "dnn", "embedding_dim": 8, "hidden_units": [128, 64]}
RESULTS, TABLE = "criteo_scale.json", "criteo_scale.md"
GIB = 1024**3


@dataclass
class Stage:
    """One timed process: `argv` after the Python interpreter, `rows` it processes (None: no
    rate), and `run` the run directory whose metrics.json holds its training speed."""

    name: str
    argv: list[str]
    rows: Callable[[], int | None] = lambda: None
    run: Path | None = None
    extra: Callable[[], dict[str, Any]] = field(default=lambda: {})
    before: Callable[[], None] = lambda: None


def _tree_rss(root: int) -> int:
    """Summed resident bytes of `root` and all its descendants (one `ps` call)."""
    table = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,rss="], capture_output=True,
                           text=True, check=True).stdout.split()
    rows = [tuple(map(int, table[i:i + 3])) for i in range(0, len(table), 3)]
    children: dict[int, list[int]] = {}
    for pid, ppid, _ in rows:
        children.setdefault(ppid, []).append(pid)
    rss = {pid: kib for pid, _, kib in rows}
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0) * 1024
        todo += children.get(pid, [])
    return total


def cpu_seconds(time_output: str) -> float | None:
    """User + system CPU seconds of a process and its descendants, from `time -v`'s report: on
    a shared machine a stage's rate per CPU second says more about the code than its wall
    time does."""
    found = re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", time_output)
    return round(sum(map(float, found)), 2) if found else None


def _log(work: Path, stage: str) -> Path:
    return work / "logs" / f"{stage.replace(' ', '-')}.log"


def backfill(results: dict[str, Any], work: Path) -> None:
    """CPU seconds of stages recorded before the JSON held them, from their logs."""
    for name, stage in results["stages"].items():
        if "cpu_seconds" not in stage and _log(work, name).is_file():
            stage["cpu_seconds"] = cpu_seconds(_log(work, name).read_text())
        if stage.get("rows") and stage.get("cpu_seconds") and "rows_per_cpu_second" not in stage:
            stage["rows_per_cpu_second"] = round(stage["rows"] / stage["cpu_seconds"], 1)


def timed(argv: list[str], log: Path) -> dict[str, Any]:
    """Run `argv` under `/usr/bin/time -v` with its output in `log`: wall seconds, exit code,
    the largest process's peak RSS and the peak summed RSS of the process tree."""
    peak = [0]
    with log.open("w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(["/usr/bin/time", "-v", *argv], stdout=out,
                                   stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            while True:
                peak[0] = max(peak[0], _tree_rss(process.pid))
                if done.wait(0.5):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        done.set()
        sampler.join()
        wall = time.perf_counter() - started
    text = log.read_text()
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"returncode": code, "wall_seconds": round(wall, 2), "cpu_seconds": cpu_seconds(text),
            "max_rss_gib": round(int(found.group(1)) * 1024 / GIB, 3) if found else None,
            "tree_peak_rss_gib": round(peak[0] / GIB, 3)}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ctrdistill", *map(str, args)]


def _train_config(args: argparse.Namespace, streaming: bool) -> dict[str, Any]:
    return {"epochs": 1, "batch_size": args.batch, "early_stop": None, "lr_plateau": None,
            "progress": False, "seed": 2026, "device": "cpu", "streaming": streaming,
            "threads": args.threads}


def _write_yaml(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _split_rows(prep: Path, split: str) -> int:
    return PreparedData(prep).feature_map.splits[split]


def _samples_per_second(run: Path) -> float:
    return json.loads((run / "metrics.json").read_text())["train_samples_per_second"]


def _subset(source: Path, out: Path, rows: int) -> None:
    """A dataset over the first `rows` training rows of `source` and the first tenth as many
    valid and test rows, with `source`'s vocabularies and feature map (so the same models and
    teacher checkpoints apply)."""
    data = PreparedData(source)
    counts = {"train": rows, "valid": max(rows // 10, 1), "test": max(rows // 10, 1)}
    with atomic_directory(out) as tmp:
        for split, n in counts.items():
            (tmp / split).mkdir()
            frame = data.scan(split).head(n).collect()
            frame.write_parquet(tmp / split / "part-00000.parquet")
            counts[split] = len(frame)
        for entry in source.resolve().iterdir():  # vocabularies, schema: linked
            if entry.name not in (*counts, FEATURE_MAP_FILE):
                (tmp / entry.name).symlink_to(entry)
        data.feature_map.model_copy(update={"splits": counts}).save(tmp / FEATURE_MAP_FILE)


def score_teacher(run: Path, prep: Path) -> float:
    """Rows/s of the teacher scoring one in-memory training shard (no reading or writing)."""
    import torch

    from ctrdistill.data.dataset import frame_to_columns
    from ctrdistill.labels.store import teacher_logits
    from ctrdistill.training.checkpoint import load_checkpoint

    data = PreparedData(prep)
    rows = frame_to_columns(pl.read_parquet(data.shards("train")[0]), data.feature_map)
    teacher = load_checkpoint(run, data.feature_map)[0]
    teacher_logits([teacher], rows.subset(torch.arange(len(rows)) < 16384))  # warm-up
    started = time.perf_counter()
    teacher_logits([teacher], rows)
    rate = len(rows) / (time.perf_counter() - started)
    print(json.dumps({"rows": len(rows), "threads": torch.get_num_threads(),
                      "score_rows_per_second": rate}))
    return rate


def stages(args: argparse.Namespace) -> list[Stage]:
    work = args.workdir
    raw, prep, ref = work / "raw", work / "prep", work / "prep-reference"
    teacher, teacher_ref = work / "runs" / "teacher", work / "runs" / "teacher-reference"
    student, student_ref = work / "runs" / "student", work / "runs" / "student-reference"
    store, store_ref = work / "store", work / "store-reference"
    predict_input = work / "raw-predict"
    configs = work / "configs"
    configs.mkdir(parents=True, exist_ok=True)

    def teacher_yaml(name: str, data: Path) -> Path:
        return _write_yaml(configs / f"{name}.yaml", {
            "name": name, "data": str(data), "output_dir": str(work / "runs"), "model": TEACHER,
            "train": _train_config(args, streaming=True)})

    def student_yaml(name: str, data: Path, labels: Path) -> Path:
        return _write_yaml(configs / f"{name}.yaml", {
            "name": name, "data": str(data), "output_dir": str(work / "runs"),
            "label_store": str(labels), "student": STUDENT,
            "train": _train_config(args, streaming=False)})

    def predict_parts() -> None:
        """Symlinks to the first raw parts holding `--predict-rows` rows (synth writes
        `chunk_rows` per part)."""
        predict_input.mkdir(exist_ok=True)
        parts = sorted(raw.glob("part-*.parquet"))[:-(-args.predict_rows // args.chunk_rows)]
        for part in parts:
            link = predict_input / part.name
            if not link.exists():
                link.symlink_to(part.resolve())

    def predict_rows() -> int:
        return pl.scan_parquet(predict_input / "*.parquet").select(pl.len()).collect().item()

    def distinct() -> dict[str, Any]:
        """Distinct raw ids of the three largest fields (the last ones: vocabularies grow with
        the field's index)."""
        fields = json.loads((raw / "synth.json").read_text())["categorical_fields"]
        names = [f"C{fields - k}" for k in range(3)]
        counts = pl.scan_parquet(raw / "*.parquet").select(
            [pl.col(n).n_unique() for n in names]).collect()
        return {"distinct_raw_ids": {n: int(counts[n][0]) for n in names}}

    def vocabularies() -> dict[str, Any]:
        fields = PreparedData(prep).feature_map.categorical
        sizes = sorted((f.vocab_size for f in fields), reverse=True)
        return {"vocab_total": sum(sizes), "vocab_largest": sizes[:3]}

    rows = args.rows
    train_rows = lambda: _split_rows(prep, "train")  # noqa: E731
    ref_rows = lambda: _split_rows(ref, "train")  # noqa: E731
    return [
        Stage("synth", _cli("synth", "--output", raw, "--rows", rows, "--set",
                            f"max_vocab={args.max_vocab}", "--set",
                            f"chunk_rows={args.chunk_rows}"), lambda: rows, extra=distinct),
        Stage("prepare", _cli("prepare", "--recipe", "synthetic", "--input", raw, "--output",
                              prep, "--protocol", "x4"), lambda: rows, extra=vocabularies),
        Stage("teacher", _cli("train", teacher_yaml("teacher", prep), "--nproc", args.nproc),
              train_rows, run=teacher),
        Stage("reference subset", [sys.executable, "-m", "benchmarks.bench_criteo_scale",
                                   "--subset", str(prep), str(ref),
                                   str(args.reference_rows)]),
        Stage("teacher reference", _cli("train", teacher_yaml("teacher-reference", ref),
                                        "--nproc", args.nproc), ref_rows, run=teacher_ref),
        Stage("teacher scoring", [sys.executable, "-m", "benchmarks.bench_criteo_scale",
                                  "--score", str(teacher), str(prep)]),
        Stage("label train", _cli("label", teacher, "--data", prep, "--output", store,
                                  "--split", "train", "--device", "cpu"), train_rows),
        Stage("label valid+test", _cli("label", teacher, "--data", prep, "--output", store,
                                       "--split", "valid", "--split", "test", "--device",
                                       "cpu"),
              lambda: _split_rows(prep, "valid") + _split_rows(prep, "test")),
        Stage("label reference", _cli("label", teacher, "--data", ref, "--output", store_ref,
                                      "--device", "cpu"),
              lambda: sum(PreparedData(ref).feature_map.splits.values())),
        Stage("student", _cli("distill", student_yaml("student", prep, store)), train_rows,
              run=student),
        Stage("student reference", _cli("distill", student_yaml("student-reference", ref,
                                                                store_ref)),
              ref_rows, run=student_ref),
        Stage("predict", _cli("predict", student, "--input", predict_input, "--output",
                              work / "predictions.parquet", "--overwrite", "--device", "cpu"),
              predict_rows, before=predict_parts),
        Stage("export", _cli("export", student, "--output", work / "bundle", "--overwrite")),
    ]


def _stage_record(stage: Stage, log: Path) -> dict[str, Any]:
    record = {"command": " ".join(stage.argv)} | timed(stage.argv, log)
    if record["returncode"] != 0:
        return record
    rows = stage.rows()
    if rows:
        record["rows"] = rows
        record["rows_per_second"] = round(rows / record["wall_seconds"], 1)
        if record["cpu_seconds"]:
            record["rows_per_cpu_second"] = round(rows / record["cpu_seconds"], 1)
    if stage.run is not None:
        record["train_samples_per_second"] = round(_samples_per_second(stage.run), 1)
    if stage.name == "teacher scoring":
        scored = json.loads(log.read_text().splitlines()[0])
        record |= {"rows": scored["rows"], "rows_per_second": round(
            scored["score_rows_per_second"], 1), "note": "scoring time alone"}
    return record | stage.extra()


def _save(path: Path, results: dict[str, Any]) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(results, indent=1))


def goals(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals, from what the stages recorded (absent stages are skipped)."""
    stage = results["stages"]
    out: dict[str, Any] = {}
    if "prepare" in stage:
        out["prepare rows/s >= 400k"] = stage["prepare"].get("rows_per_second")
        out["prepare peak RSS <= 6 GiB"] = stage["prepare"]["tree_peak_rss_gib"]
    out["largest stage tree peak RSS GiB (<= 20)"] = max(
        s["tree_peak_rss_gib"] for name, s in stage.items() if ", before" not in name)
    for model in ("teacher", "student"):
        if model in stage and f"{model} reference" in stage:
            full = stage[model].get("train_samples_per_second")
            small = stage[f"{model} reference"].get("train_samples_per_second")
            if full and small:
                out[f"{model} samples/s full / reference (>= 0.9)"] = round(full / small, 3)
    if "label train" in stage and "teacher scoring" in stage:
        out["label rows/s / teacher scoring rows/s (>= 1)"] = round(
            stage["label train"]["rows_per_second"]
            / stage["teacher scoring"]["rows_per_second"], 3)
    return out


def _cell(record: dict[str, Any], key: str, spec: str = ",.0f") -> str:
    return "" if record.get(key) is None else format(record[key], spec)


def table(results: dict[str, Any]) -> str:
    lines = ["| stage | wall s | CPU s | rows | rows/s | rows/CPU s | train samples/s | peak RSS, "
             "largest process (GiB) | peak RSS, all processes (GiB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, s in results["stages"].items():
        cells = [_cell(s, "wall_seconds", ",.1f"), _cell(s, "cpu_seconds", ",.0f"),
                 _cell(s, "rows"), _cell(s, "rows_per_second"), _cell(s, "rows_per_cpu_second"),
                 _cell(s, "train_samples_per_second"), _cell(s, "max_rss_gib", ".2f"),
                 _cell(s, "tree_peak_rss_gib", ".2f")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| goal | measured |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in goals(results).items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench_out/criteo_scale"))
    parser.add_argument("--rows", type=int, default=45_000_000)
    parser.add_argument("--max-vocab", type=int, default=10_000_000,
                        help="the largest field's vocabulary (the criteo preset's other knobs "
                        "stay)")
    parser.add_argument("--chunk-rows", type=int, default=250_000, help="synth rows per part")
    parser.add_argument("--reference-rows", type=int, default=2_000_000)
    parser.add_argument("--predict-rows", type=int, default=4_500_000)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--subset", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--score", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--table", action="store_true",
                        help="only write and print the table of the stages recorded so far")
    args = parser.parse_args()
    if args.subset:  # stages run as their own processes
        _subset(Path(args.subset[0]), Path(args.subset[1]), int(args.subset[2]))
        return
    if args.score:
        score_teacher(*args.score)
        return
    work = args.workdir
    (work / "logs").mkdir(parents=True, exist_ok=True)
    path = work / RESULTS
    results = json.loads(path.read_text()) if path.exists() else {"stages": {}}
    if args.table:
        backfill(results, work)
        (work / TABLE).write_text(table(results))
        print(table(results))
        return
    results["settings"] = {k: str(v) for k, v in vars(args).items()
                           if k not in ("subset", "score")}
    for stage in stages(args):
        if results["stages"].get(stage.name, {}).get("returncode") == 0:
            continue
        stage.before()
        logging.info("stage %s: %s", stage.name, " ".join(stage.argv))
        record = _stage_record(stage, _log(work, stage.name))
        results["stages"][stage.name] = record
        _save(path, results)
        logging.info("stage %s: %s", stage.name, record)
        if record["returncode"] != 0:
            raise SystemExit(f"stage {stage.name} failed (exit {record['returncode']}); see "
                             f"its log in {work / 'logs'}")
    results["goals"] = goals(results)
    _save(path, results)
    (work / TABLE).write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
