"""Serving latency and throughput: teachers, their ensemble and distilled students, in PyTorch
eager and exported to onnxruntime, and the HTTP service end to end.

    python -m benchmarks.bench_serving --workdir bench_out/serving --rows 300000
    python -m benchmarks.bench_serving --workdir bench_out/serving --rows 300000 --server-only
    python -m benchmarks.bench_serving --workdir /tmp/serving-smoke --quick

Models: the teachers (trained one epoch by `common.teacher_run`), their ensemble (the mean of
their logits, the served output of a `PeerEnsemble` of the trained teachers) and students
distilled from a label store of the ensemble. Each is exported with `cd.export(inputs="ids")`.
Latency is the wall time of one call on encoded test rows (batch 1, 16, 256; p50/p99 over many
calls), throughput the rows per second at batch 4096; PyTorch with 1 and 2 intra-op threads,
onnxruntime with 1 and 2 intra-op threads.

The server (`ctrdistill serve`, one worker, onnxruntime on 1 thread) serves the DNN 64-32
student's bundle of raw inputs (`--server-only`: the same architecture freshly initialised, as
the cost of serving does not depend on the weights). Load comes from `wrk` (Debian package) in
its own process over loopback: one-row requests at concurrency 1 for p50/p99 end to end, set
against the bare onnxruntime call of the raw graph on the same row and against the request's
work timed in-process (parse, check, feeds, score); requests/s at concurrency 1, 16 and 64 with
1-row and 256-row requests, with and without dynamic batching; a reload under load (a new
version exported and switched to while wrk runs: every answer must be a 200); then the bounded
10,000-request run in which every 20th request is malformed (4 kinds in turn), from an httpx
client that counts each answer: none may be lost, none may be a 5xx.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import torch

import ctrdistill as cd
from benchmarks import common
from ctrdistill.data.encode import PrepareState, copy_state
from ctrdistill.data.schema import FeatureMap
from ctrdistill.models import build_model
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
                score = load_bundle(bundle, threads=threads).score
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


class Server:
    """`ctrdistill serve` in its own process, one worker, onnxruntime on one thread."""

    def __init__(self, source: Path, log: Path, batch_delay_ms: float = 0.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(Path(cd.__file__).parents[1])}
        with log.open("ab") as stderr:  # the server's log lines (a refused version, errors)
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ctrdistill.cli", "serve", str(source), "--port",
                 str(self.port), "--threads", "1", "--batch-delay-ms", str(batch_delay_ms)],
                env=env, stdout=subprocess.DEVNULL, stderr=stderr)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/health").status_code == 200:
                    return self
            except httpx.TransportError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.2)

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait(30)


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, body: Path, concurrency: int, seconds: float,
        pid: int | None = None) -> dict[str, float]:
    """Run wrk (1 thread) POSTing `body`: requests/s, p50/p99 ms, non-2xx answers, socket
    errors (connect, read, write, timeout), and with the server's `pid` its CPU ms per request
    (what a request costs whatever else runs on the machine)."""
    cpu = cpu_seconds(pid) if pid else 0.0
    script = body.with_suffix(".lua")
    script.write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"'
                      f'\nlocal f = io.open("{body}", "rb")\nwrk.body = f:read("*a")\nf:close()\n')
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency",
                          "--timeout", "30s",
                          "-s", str(script), f"{url}/predict"], capture_output=True, text=True,
                         check=True).stdout
    result = {"requests/s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
              "non-2xx": 0.0, "socket errors": 0.0}
    for percent in ("50", "99"):
        value, unit = re.search(rf"\s{percent}%\s+([\d.]+)(us|ms|s)\b", out).groups()
        result[f"p{percent} ms"] = float(value) * UNITS[unit]
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        result["non-2xx"] = float(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                          r"timeout (\d+)", out):
        result["socket errors"] = float(sum(int(g) for g in match.groups()))
    if pid:
        requests = float(re.search(r"(\d+) requests in", out).group(1))
        result["server CPU ms/request"] = (cpu_seconds(pid) - cpu) * 1e3 / max(requests, 1)
    return result


def in_process(bundle: Path, row: dict[str, Any], calls: int) -> dict[str, float]:
    """p50/p99 ms of the bare onnxruntime call of the raw graph on one row, and of the
    request's whole work without HTTP (parse and check the body, build the feeds, score)."""
    from ctrdistill.serving.app import Settings, load_served
    from ctrdistill.serving.metrics import Metrics

    served = load_served(bundle, None, Settings(threads=1), Metrics(),
                         ThreadPoolExecutor(1))
    body = json.dumps({"rows": [row]}).encode()
    feeds = served.schema.feeds([row])
    bare = percentiles(lambda: served.bundle.score(feeds), calls)
    work = percentiles(lambda: served.score_body(body), calls)
    return {"bare p50": bare[0], "bare p99": bare[1], "work p50": work[0], "work p99": work[1]}


def server_tables(run: Path, bundle: Path, raw_rows: list[dict[str, Any]], seconds: float,
                  calls: int, load_requests: int, root: Path) -> str:
    """The server's tables and findings, as markdown."""
    bodies = root / "bodies"
    bodies.mkdir(exist_ok=True)
    for size in (1, 256):
        (bodies / f"rows{size}.json").write_text(json.dumps({"rows": raw_rows[:size]}))
    load_before = os.getloadavg()[0]
    cost = in_process(bundle, raw_rows[0], calls)
    table = []
    for delay in (0.0, 1.0):
        with Server(bundle, root / "server.log", delay) as server:
            for size in (1, 256):
                for concurrency in (1, 16, 64):
                    wrk(server.url, bodies / f"rows{size}.json", concurrency, 1)  # warm-up
                    result = wrk(server.url, bodies / f"rows{size}.json", concurrency, seconds,
                                 server.process.pid)
                    table.append({"batching": f"{delay:g} ms" if delay else "off",
                                  "rows/request": size, "concurrency": concurrency,
                                  **{k: round(v, 3) if "ms" in k else round(v)
                                     for k, v in result.items()}})
                    print(markdown_table(table[-1:]), flush=True)
    one = table[0]
    lines = [f"- load average (1 min) {load_before:.1f} before the timed runs and "
             f"{os.getloadavg()[0]:.1f} after them, on {os.cpu_count()} cores",
             f"- one row, concurrency 1: p50 {one['p50 ms']:.3f} ms / p99 {one['p99 ms']:.3f} "
             f"ms end to end; the bare onnxruntime call of the raw graph on that row p50 "
             f"{cost['bare p50']:.3f} / p99 {cost['bare p99']:.3f} ms: overhead "
             f"+{one['p50 ms'] - cost['bare p50']:.3f} ms p50, "
             f"+{one['p99 ms'] - cost['bare p99']:.3f} ms p99; the request's work in-process "
             f"(parse, check, feeds, score) p50 {cost['work p50']:.3f} / p99 "
             f"{cost['work p99']:.3f} ms"]
    versions = root / "versions"
    if versions.exists():
        shutil.rmtree(versions)
    cd.export(run=run, version_dir=versions)
    with Server(versions, root / "server.log") as server:
        reload_seconds = max(seconds * 4, 30)
        result: dict[str, dict[str, float]] = {}
        load = threading.Thread(target=lambda: result.update(
            run=wrk(server.url, bodies / "rows1.json", 16, reload_seconds)))
        load.start()
        time.sleep(reload_seconds / 5)
        cd.export(run=run, version_dir=versions)  # v000002, switched to while wrk runs
        load.join()
        version = httpx.get(f"{server.url}/metadata").json()["version"]
        reload = {"requests": round(result["run"]["requests/s"] * reload_seconds),
                  "non-2xx": int(result["run"]["non-2xx"]),
                  "socket errors": int(result["run"]["socket errors"]),
                  "serving after": version}
        lines.append(f"- reload under load (wrk, 16 connections, {reload_seconds:g} s, "
                     f"v000002 exported and switched to mid-run): {markdown_table([reload])}")
        bad_bodies, bad = [], []
        for index in range(load_requests):
            row = raw_rows[index % len(raw_rows)]
            is_bad = index % 20 == 19
            bad.append(is_bad)
            bad_bodies.append(malformed(row, (index // 20) % 4) if is_bad
                              else json.dumps({"rows": [row]}).encode())
        start = time.perf_counter()
        latencies, statuses = asyncio.run(fire(f"{server.url}/predict", bad_bodies, 16, 30))
        elapsed = time.perf_counter() - start
        codes, bad_mask = np.array(statuses), np.array(bad)
        alive = (httpx.get(f"{server.url}/health").status_code == 200
                 and server.process.poll() is None)
        malformed_run = [{
            "requests": load_requests, "malformed": int(bad_mask.sum()),
            "good answered 200": int((codes[~bad_mask] == 200).sum()),
            "malformed answered 400/422": int(np.isin(codes[bad_mask], (400, 422)).sum()),
            "5xx": int((codes >= 500).sum()), "lost": int((codes == -1).sum()),
            "p50 ms": round(float(np.percentile(latencies, 50) * 1e3), 3),
            "p99 ms": round(float(np.percentile(latencies, 99) * 1e3), 3),
            "requests/s": round(load_requests / elapsed), "server alive after": alive}]
    return "\n\n".join([markdown_table(table), markdown_table(malformed_run),
                         "\n".join(lines)]) + "\n"


def untrained_run(out: Path, prep: Path, model: dict[str, Any]) -> Path:
    """A run directory of `model` freshly initialised on `prep`'s feature map."""
    if not out.exists():
        feature_map = FeatureMap.load(prep / "feature_map.json")
        torch.manual_seed(0)
        out.mkdir(parents=True)
        save_checkpoint(RunDirectory(out).checkpoint(), build_model(model, feature_map),
                        feature_map)
        copy_state(prep, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="bench_out/serving")
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--teachers", nargs="+", default=["dcnv2", "finalmlp"])
    parser.add_argument("--calls", type=int, default=400, help="timed calls per batch size")
    parser.add_argument("--seconds", type=float, default=10, help="per wrk cell")
    parser.add_argument("--load-requests", type=int, default=10_000)
    parser.add_argument("--server-only", action="store_true",
                        help="only the service, of a freshly initialised DNN 64-32 student")
    parser.add_argument("--quick", action="store_true", help="a smoke run on tiny data")
    args = parser.parse_args()
    seconds = 2.0
    if args.quick:
        args.rows, args.calls, args.seconds, args.load_requests = 20_000, 30, 1, 200
        args.teachers, seconds = args.teachers[:1], 0.3
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    root = Path(args.workdir)
    prep = common.synthetic_dataset(root, args.rows)
    student = next(iter(STUDENTS))
    parts = []
    if args.server_only:
        models = {student: untrained_run(root / "untrained" / student, prep, STUDENTS[student])}
    else:
        models, table = model_tables(root, prep, args, seconds)
        parts.append(markdown_table(table))
    bundle = common.run_once(root / "bundles" / f"{student}-raw", cd.export,
                             run=models[student], output=root / "bundles" / f"{student}-raw")
    inputs = load_bundle(bundle).inputs
    raw = pl.read_parquet(root / "raw" / "*.parquet").head(256)
    raw_rows = raw.select(pl.col(i["name"]).cast(pl.Float64 if i["dtype"] == "double"
                                                 else pl.String) for i in inputs).to_dicts()
    parts.append(server_tables(models[student], bundle, raw_rows, args.seconds, args.calls,
                               args.load_requests, root))
    report = "\n\n".join(parts)
    (root / ("serving-server.md" if args.server_only else "serving.md")).write_text(report)
    print(report)


def model_tables(root: Path, prep: Path, args: argparse.Namespace, seconds: float
                 ) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    """The runs by name, and the bare-model latency table of their bundles of id inputs."""
    teachers = [common.teacher_run(root, prep, name) for name in args.teachers]
    models = {f"teacher-{t.name}": t for t in teachers}
    if len(teachers) > 1:
        models["teacher-ensemble"] = ensemble_run(root / "ensemble", prep, teachers)
    store = common.teacher_store(root, prep, teachers)
    students = dict(list(STUDENTS.items())[:1]) if args.quick else STUDENTS
    for name, spec in students.items():
        models[name] = student_run(root, prep, store, name, spec)
    bundles = {name: common.run_once(root / "bundles" / name, cd.export, run=run,
                                     output=root / "bundles" / name, inputs="ids")
               for name, run in models.items()}
    state = PrepareState.load(prep)
    test = pl.read_parquet(prep / "test" / "*.parquet")
    blocks = state.encoder.blocks(test.head(4096))
    table = []
    for name, run in models.items():
        table += model_rows(name, run, bundles[name], blocks, args.calls, seconds)
    return models, table


if __name__ == "__main__":
    main()
