"""Serving latency and throughput: teachers, their ensemble and distilled students, in PyTorch
eager and exported to onnxruntime, and the HTTP service end to end.

    python -m benchmarks.bench_serving --workdir bench_out/serving --rows 300000
    python -m benchmarks.bench_serving --workdir /tmp/serving-smoke --quick

Models: the teachers (trained one epoch by `common.teacher_run`), their ensemble (the mean of
their logits, the served output of a `PeerEnsemble` of the trained teachers) and students
distilled from a label store of the ensemble. Each is exported with `cd.export`. Latency is
the wall time of one call on encoded test rows (batch 1, 16, 256; p50/p99 over many calls),
throughput the rows per second at batch 4096; PyTorch with 1 and 2 intra-op threads,
onnxruntime with 1 and 2 intra-op threads.

The server (`ctrdistill serve`, one worker, onnxruntime on 1 thread) is timed from a client in
this process over loopback: raw rows in JSON, requests of 1 and 256 rows at concurrency 1 and
16, then a bounded load run in which every 20th request is malformed (4 kinds in turn); each
request must get its expected answer (200, or 400/422 for a malformed one), none may be lost,
and the server must be alive at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import torch

import ctrdistill as cd
from benchmarks import common
from ctrdistill.data.encode import PrepareState, copy_state
from ctrdistill.models.ensembles import PeerEnsemble
from ctrdistill.rundir import RunDirectory
from ctrdistill.serving import load_bundle
from ctrdistill.training.checkpoint import save_checkpoint

BATCHES = (1, 16, 256)
STUDENTS = {"student-dnn-small": {"name": "dnn", "embedding_dim": 16, "hidden_units": [64, 32]},
            "student-dnn": common.STUDENT}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Every key of the rows a column, in first-seen order; floats as given."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(f"{row.get(c, '')}" if not isinstance(row.get(c), int)
                                or isinstance(row.get(c), bool) else f"{row[c]:,}"
                                for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def ensemble_run(out: Path, prep: Path, teachers: list[Path]) -> Path:
    """The teachers' mean logit as one model: a run directory holding a PeerEnsemble."""
    if not out.exists():
        runs = [cd.load_run(t, "cpu") for t in teachers]
        model = PeerEnsemble.of(runs[0].feature_map, [r.model for r in runs])
        out.mkdir(parents=True)
        save_checkpoint(RunDirectory(out).checkpoint(), model, runs[0].feature_map)
        copy_state(prep, out)
    return out


def student_run(root: Path, prep: Path, store: Path, name: str, model: dict) -> Path:
    return common.run_once(root / "students" / name, cd.distill, {
        "name": name, "data": prep, "output_dir": root / "students", "label_store": store,
        "student": model, "train": common.train_config().model_dump()})


def percentiles(fn: Callable[[], Any], calls: int) -> tuple[float, float]:
    """(p50, p99) wall milliseconds of `fn()` over `calls` calls, after a short warm-up."""
    for _ in range(min(20, calls)):
        fn()
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def rows_per_second(fn: Callable[[], Any], rows: int, seconds: float) -> float:
    fn()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        done += rows
    return done / (time.perf_counter() - start)


def slice_blocks(blocks: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v[:rows]) for k, v in blocks.items()}


def model_rows(name: str, run: Path, bundle: Path, blocks: dict[str, np.ndarray],
               calls: int, seconds: float) -> list[dict[str, Any]]:
    loaded = cd.load_run(run, "cpu")
    params = loaded.model.num_parameters()
    rows = []
    for runtime in ("pytorch", "onnxruntime"):
        for threads in (1, 2):
            if runtime == "pytorch":
                torch.set_num_threads(threads)
                score = loaded.score_blocks
            else:
                score = load_bundle(bundle, threads=threads).score_blocks
            row: dict[str, Any] = {"model": name, "params": params, "runtime": runtime,
                                   "threads": threads}
            for size in BATCHES:
                part = slice_blocks(blocks, size)
                p50, p99 = percentiles(lambda p=part, f=score: f(p), calls if size < 256
                                       else max(calls // 4, 20))
                row[f"b{size} p50 ms"], row[f"b{size} p99 ms"] = round(p50, 3), round(p99, 3)
            big = slice_blocks(blocks, 4096)
            row["rows/s @4096"] = round(rows_per_second(lambda b=big, f=score: f(b), 4096,
                                                        seconds))
            rows.append(row)
            print(markdown_table([row]), flush=True)
    return rows


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def malformed(row: dict[str, Any], kind: int) -> bytes:
    """Four kinds of bad request in turn: missing field, wrong type, unknown field, not JSON."""
    first = next(iter(row))
    if kind == 0:
        return json.dumps({"rows": [{k: v for k, v in row.items() if k != first}]}).encode()
    if kind == 1:
        return json.dumps({"rows": [{**row, first: {"nested": 1}}]}).encode()
    if kind == 2:
        return json.dumps({"rows": [{**row, "not_a_field": 1}]}).encode()
    return b'{"rows": [ {'


async def fire(url: str, bodies: list[bytes], concurrency: int, timeout: float
               ) -> tuple[np.ndarray, list[int]]:
    """Send every body with at most `concurrency` in flight; (latencies s, status codes; -1 for
    a request that got no answer)."""
    latencies = np.zeros(len(bodies))
    statuses = [0] * len(bodies)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(bodies)):
        queue.put_nowait(index)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                start = time.perf_counter()
                try:
                    reply = await client.post(url, content=bodies[index],
                                              headers={"content-type": "application/json"})
                    statuses[index] = reply.status_code
                except httpx.HTTPError:
                    statuses[index] = -1
                latencies[index] = time.perf_counter() - start

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses


def server_tables(bundle: Path, raw_rows: list[dict[str, Any]], requests: int,
                  load_requests: int) -> tuple[str, str, float]:
    """(latency table, load-run table, p50 ms of one-row requests at concurrency 1)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(cd.__file__).parents[1])}
    process = subprocess.Popen([sys.executable, "-m", "ctrdistill.cli", "serve", str(bundle),
                                "--port", str(port), "--threads", "1"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        table, one_row_p50 = [], float("nan")
        for size in (1, 256):
            body = json.dumps({"rows": raw_rows[:size]}).encode()
            for concurrency in (1, 16):
                count = requests if size == 1 else max(requests // 4, 50)
                asyncio.run(fire(f"{base}/predict", [body] * 20, concurrency, 30))  # warm-up
                latencies, statuses = asyncio.run(
                    fire(f"{base}/predict", [body] * count, concurrency, 30))
                p50, p99 = np.percentile(latencies, [50, 99]) * 1e3
                if size == 1 and concurrency == 1:
                    one_row_p50 = float(p50)
                table.append({"rows/request": size, "concurrency": concurrency,
                              "requests": count, "p50 ms": round(float(p50), 3),
                              "p99 ms": round(float(p99), 3),
                              "errors": sum(s != 200 for s in statuses)})
                print(markdown_table(table[-1:]), flush=True)
        bodies, bad = [], []
        for index in range(load_requests):
            row = raw_rows[index % len(raw_rows)]
            is_bad = index % 20 == 19
            bad.append(is_bad)
            bodies.append(malformed(row, (index // 20) % 4) if is_bad
                          else json.dumps({"rows": [row]}).encode())
        start = time.perf_counter()
        latencies, statuses = asyncio.run(fire(f"{base}/predict", bodies, 16, 30))
        elapsed = time.perf_counter() - start
        codes = np.array(statuses)
        bad_mask = np.array(bad)
        alive = httpx.get(f"{base}/health").status_code == 200 and process.poll() is None
        load = [{"requests": load_requests, "malformed": int(bad_mask.sum()),
                 "good answered 200": int((codes[~bad_mask] == 200).sum()),
                 "malformed answered 400/422": int(np.isin(codes[bad_mask], (400, 422)).sum()),
                 "5xx": int((codes >= 500).sum()), "lost": int((codes == -1).sum()),
                 "p50 ms": round(float(np.percentile(latencies, 50) * 1e3), 3),
                 "p99 ms": round(float(np.percentile(latencies, 99) * 1e3), 3),
                 "requests/s": round(load_requests / elapsed), "server alive after": alive}]
        print(markdown_table(load), flush=True)
        return markdown_table(table), markdown_table(load), one_row_p50
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="bench_out/serving")
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--teachers", nargs="+", default=["dcnv2", "finalmlp"])
    parser.add_argument("--calls", type=int, default=400, help="timed calls per batch size")
    parser.add_argument("--requests", type=int, default=1000, help="per server latency cell")
    parser.add_argument("--load-requests", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="a smoke run on tiny data")
    args = parser.parse_args()
    seconds = 2.0
    if args.quick:
        args.rows, args.calls, args.requests, args.load_requests = 20_000, 30, 40, 200
        args.teachers, seconds = args.teachers[:1], 0.3
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    root = Path(args.workdir)
    prep = common.synthetic_dataset(root, args.rows)
    teachers = [common.teacher_run(root, prep, name) for name in args.teachers]
    models = {f"teacher-{t.name}": t for t in teachers}
    if len(teachers) > 1:
        models["teacher-ensemble"] = ensemble_run(root / "ensemble", prep, teachers)
    store = common.teacher_store(root, prep, teachers)
    students = dict(list(STUDENTS.items())[:1]) if args.quick else STUDENTS
    for name, spec in students.items():
        models[name] = student_run(root, prep, store, name, spec)
    bundles = {name: common.run_once(root / "bundles" / name, cd.export, run=run,
                                     output=root / "bundles" / name)
               for name, run in models.items()}
    state = PrepareState.load(prep)
    test = pl.read_parquet(prep / "test" / "*.parquet")
    blocks = state.encoder.blocks(test.head(4096))
    table = []
    for name, run in models.items():
        table += model_rows(name, run, bundles[name], blocks, args.calls, seconds)
    student = next(iter(students))
    raw = pl.read_parquet(root / "raw" / "*.parquet").head(256)
    columns = load_bundle(bundles[student]).columns
    raw_rows = raw.select(pl.col(c).cast(t) for c, t in columns.items()).to_dicts()
    server, load, one_row_p50 = server_tables(bundles[student], raw_rows, args.requests,
                                              args.load_requests)
    bare = next(r for r in table if r["model"] == student and r["runtime"] == "onnxruntime"
                and r["threads"] == 1)
    ensemble = next((r for r in table if r["model"] == "teacher-ensemble"
                     and r["threads"] == 1 and r["runtime"] == "pytorch"), None)
    lines = [f"- server overhead at batch 1: p50 {one_row_p50:.3f} ms end to end vs "
             f"{bare['b1 p50 ms']:.3f} ms bare onnxruntime ({student}, 1 thread): "
             f"+{one_row_p50 - bare['b1 p50 ms']:.3f} ms"]
    if ensemble is not None:
        ratio = ensemble["b1 p99 ms"] / bare["b1 p99 ms"]
        lines.append(f"- batch-1 p99: teacher ensemble (PyTorch, 1 thread) "
                     f"{ensemble['b1 p99 ms']:.3f} ms vs exported {student} (onnxruntime, 1 "
                     f"thread) {bare['b1 p99 ms']:.3f} ms: {ratio:.1f}x")
    report = "\n\n".join([markdown_table(table), server, load, "\n".join(lines)]) + "\n"
    (root / "serving.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
