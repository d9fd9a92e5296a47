"""train -> distill -> export -> serve end to end: a real distilled student (its run directory
alone scores raw logs), its bundle served over loopback HTTP, answers checked against
`ctrdistill predict` on the same raw rows, every kind of bad request answered 400/422 while
the server keeps serving, the Prometheus metrics, and `serve` on a port already in use."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
import uvicorn

import ctrdistill as cd
from ctrdistill.cli import main
from ctrdistill.serving import load_bundle
from ctrdistill.serving.app import Settings, create_app
from test_export import make_dataset

TINY = {"name": "dnn", "embedding_dim": 4, "hidden_units": [16]}
TRAIN = {"epochs": 1, "batch_size": 256, "progress": False, "early_stop": None,
         "lr_plateau": None}
ROWS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    raw, prep = make_dataset(root)
    student = cd.distill({"name": "student", "data": prep, "output_dir": root / "runs",
                          "teachers": [{"model": {"name": "deepfm", "embedding_dim": 4}}],
                          "student": TINY, "train": TRAIN}).path
    assert main(["predict", str(student), "--input", str(raw), "--output",
                 str(root / "scores.parquet")]) == 0
    assert main(["export", str(student), "--output", str(root / "bundle")]) == 0
    return {"raw": raw, "run": student, "scores": root / "scores.parquet",
            "bundle": root / "bundle"}


@contextlib.contextmanager
def served(source: Path, **settings) -> Iterator[str]:
    """The service of `source` by uvicorn on a loopback port, in a thread; always shut down."""
    port = free_port()
    app = create_app(source, Settings(threads=1, **settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def url(flow) -> Iterator[str]:
    with served(flow["bundle"], max_rows=100, max_body_bytes=200_000) as address:
        yield address


def raw_rows(flow, n: int) -> list[dict]:
    """The first `n` raw rows as a client sends them: ids as text, numbers as numbers."""
    inputs = load_bundle(flow["bundle"]).inputs
    text = [i["name"] for i in inputs if i["dtype"] == "string"]
    frame = pl.read_csv(flow["raw"], n_rows=n, schema_overrides=dict.fromkeys(text, pl.String))
    return frame.select(i["name"] for i in inputs).to_dicts()


def test_the_run_directory_alone_scores_raw_logs(flow) -> None:
    scores = pl.read_parquet(flow["scores"])
    assert scores.columns == ["row_id", "logit", "probability"] and len(scores) == 3000
    assert (flow["run"] / "prepare" / "prepare_state.json").is_file()
    keyed = flow["run"].parent / "keyed.parquet"
    cd.predict(run=flow["run"], input=flow["raw"], key="C1", output=keyed, progress=False)
    assert pl.read_parquet(keyed).columns == ["C1", "logit", "probability"]


def test_served_scores_match_predict(flow, url: str) -> None:
    rows = raw_rows(flow, ROWS)
    reply = httpx.post(f"{url}/predict", json={"rows": rows, "logits": True})
    assert reply.status_code == 200, reply.text
    expected = pl.read_parquet(flow["scores"]).head(ROWS)
    np.testing.assert_allclose(reply.json()["logits"], expected["logit"], atol=1e-4)
    np.testing.assert_allclose(reply.json()["probabilities"], expected["probability"],
                               atol=1e-5)
    one = httpx.post(f"{url}/predict", json={"rows": rows[0]}).json()
    assert one.keys() == {"probabilities"} and len(one["probabilities"]) == 1
    # an id never seen in training, and missing values, are scored (OOV, fill), not refused
    unseen = {**rows[0], "C1": "never-seen", "I1": None, "tags": None}
    assert httpx.post(f"{url}/predict", json={"rows": [unseen]}).status_code == 200


@pytest.mark.parametrize(("change", "status", "message"), [
    (lambda rows: {"rows": [rows[0], {k: v for k, v in rows[1].items() if k != "C2"}]}, 422,
     "row 1: missing field 'C2'"),
    (lambda rows: {"rows": [{**rows[0], "colour": "red"}]}, 422, "row 0: unknown field 'colour'"),
    (lambda rows: {"rows": [rows[0], {**rows[1], "I2": "high"}]}, 422,
     "row 1: field 'I2' must be a number"),
    (lambda rows: {"rows": [{**rows[0], "C3": [1]}]}, 422, "row 0: field 'C3' must be text"),
    (lambda rows: {"rows": rows * 2}, 400, "too many rows: 120"),
    (lambda rows: {"rows": []}, 422, "non-empty list"),
    (lambda rows: {"rows": rows[:1], "extra": 1}, 422, "unknown key"),
    (lambda rows: [rows[0]], 422, "JSON object"),
])
def test_bad_requests_name_the_field_and_row(flow, url, change, status, message) -> None:
    reply = httpx.post(f"{url}/predict", json=change(raw_rows(flow, ROWS)))
    assert reply.status_code == status and message in reply.json()["error"], reply.text


def test_malformed_bodies_and_the_server_survives(url: str) -> None:
    for body, message in ((b"{not json", "not valid JSON"), (b"x" * 300_000, "body too large"),
                          (b"\xff\xfe", "not valid JSON")):
        reply = httpx.post(f"{url}/predict", content=body,
                           headers={"content-type": "application/json"})
        assert reply.status_code == 400 and message in reply.json()["error"]
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    metadata = httpx.get(f"{url}/metadata").json()
    assert metadata["model"]["name"] == "dnn"
    assert {i["name"] for i in metadata["inputs"]} >= {"C1", "tags", "I2"}
    assert "onnxruntime" in metadata["versions"] and metadata["limits"]["max_rows"] == 100
    assert metadata["version"] is None and metadata["opset"] == 20


def metric(text: str, name: str) -> float:
    """The value of one sample line `name` (with its labels) of a Prometheus scrape."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {name}")


def test_metrics(flow, url: str) -> None:
    before = httpx.get(f"{url}/metrics").text
    rows = raw_rows(flow, 5)
    assert httpx.post(f"{url}/predict", json={"rows": rows}).status_code == 200
    assert httpx.post(f"{url}/predict", json={"rows": [{}]}).status_code == 422
    reply = httpx.get(f"{url}/metrics")
    assert reply.headers["content-type"].startswith("text/plain")
    after = reply.text
    for name, grew in (('ctrdistill_requests_total{status="200"}', 1),
                       ('ctrdistill_requests_total{status="422"}', 1),
                       ("ctrdistill_rows_scored_total", 5),
                       ("ctrdistill_request_latency_seconds_count", 2)):
        assert metric(after, name) - (metric(before, name) if name in before else 0) == grew
    assert metric(after, 'ctrdistill_model_version{model="dnn",version=""}') == 1
    assert "ctrdistill_reloads_total" in after


def test_port_in_use_is_one_line(flow, capsys) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert main(["serve", str(flow["bundle"]), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ctrdistill serve: error: cannot listen on "
                                               f"127.0.0.1:{port}"), err


def test_serve_command(flow) -> None:
    """`ctrdistill serve` in its own process (uvicorn's factory reads the bundle per worker)."""
    port = free_port()
    source = str(Path(cd.__file__).parents[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "ctrdistill.cli", "serve", str(flow["bundle"]), "--port",
         str(port), "--threads", "1"], env={**os.environ, "PYTHONPATH": source},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        reply = httpx.post(f"http://127.0.0.1:{port}/predict",
                           content=json.dumps({"rows": raw_rows(flow, 3)}))
        assert reply.status_code == 200 and len(reply.json()["probabilities"]) == 3
    finally:
        process.terminate()
        process.wait(20)
