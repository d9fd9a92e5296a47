"""train -> distill -> export -> serve end to end: a real distilled student (its run directory
alone scores raw logs), its bundle served over loopback HTTP, answers checked against
`ctrdistill predict` on the same raw rows, every kind of bad request answered 400/422 while
the server keeps serving, the Prometheus metrics, and `serve` on a port already in use."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import hypothesis
import numpy as np
import polars as pl
import pytest
import uvicorn
from hypothesis import strategies as st

import ctrdistill as cd
from ctrdistill.cli import main
from ctrdistill.serving import load_bundle
from ctrdistill.serving.app import Settings, create_app
from ctrdistill.serving.versions import set_latest
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
        deadline = time.monotonic() + 180  # a busy machine starts slowly
        while time.monotonic() < deadline and process.poll() is None:
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


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300) | st.floats()
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12)


@st.composite
def bodies(draw, rows: list[dict]) -> bytes:
    """Any bytes, any JSON, and near-valid requests: real rows with values replaced by any
    JSON value, fields dropped or added, `rows` and `logits` of any type."""
    kind = draw(st.sampled_from(["bytes", "json", "rows"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    row = dict(draw(st.sampled_from(rows)))
    for column in draw(st.lists(st.sampled_from(sorted(row)), max_size=3)):
        row[column] = draw(JSON)
    if draw(st.booleans()):
        row.pop(draw(st.sampled_from(sorted(row))))
    if draw(st.booleans()):
        row[draw(st.text(max_size=4))] = draw(JSON)
    body = {"rows": draw(st.sampled_from([[row], row, [row, row], draw(JSON)]))}
    if draw(st.booleans()):
        body["logits"] = draw(JSON)
    return json.dumps(body).encode()


def test_any_body_gets_200_or_4xx(flow, url: str) -> None:
    """A bounded fuzz of the endpoint: never a 5xx, always JSON, and the server keeps serving."""
    rows = raw_rows(flow, 20)
    statuses = set()

    @hypothesis.settings(max_examples=400, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(bodies(rows))
    def answer(body: bytes) -> None:
        reply = httpx.post(f"{url}/predict", content=body,
                           headers={"content-type": "application/json"})
        assert reply.status_code == 200 or 400 <= reply.status_code < 500, (body, reply.text)
        assert isinstance(reply.json(), dict)
        statuses.add(reply.status_code)

    answer()
    assert {200, 400, 422} <= statuses  # the fuzz reached every kind of answer
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}


def test_dynamic_batching_gives_each_request_its_rows(flow) -> None:
    rows = raw_rows(flow, ROWS)
    expected = pl.read_parquet(flow["scores"]).head(ROWS)["probability"].to_numpy()
    with served(flow["bundle"], batch_delay=0.02) as address, httpx.Client() as client:
        def ask(index: int) -> list[float]:
            chunk = rows[index * 3:(index + 1) * 3]
            return client.post(f"{address}/predict", json={"rows": chunk}).json()[
                "probabilities"]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(ROWS // 3)))
        scrape = client.get(f"{address}/metrics").text
        assert client.get(f"{address}/metadata").json()["batching"] == {"max_delay_ms": 20.0}
    np.testing.assert_allclose(np.concatenate(answers), expected, atol=1e-5)
    assert metric(scrape, "ctrdistill_batch_rows_sum") == ROWS
    assert metric(scrape, "ctrdistill_batch_rows_count") < ROWS // 3  # some were batched


def test_live_reload_under_load(flow, tmp_path: Path, caplog) -> None:
    """A new version is switched to while requests flow, none fails; a version that cannot be
    loaded is refused with a log line and the old one keeps serving."""
    versions = tmp_path / "versions"
    assert cd.export(run=flow["run"], version_dir=versions).metrics["version"] == "v000001"
    rows = raw_rows(flow, 4)
    statuses: list[int] = []
    stop = threading.Event()

    def load(address: str) -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                statuses.append(client.post(f"{address}/predict", json={"rows": rows})
                                .status_code)

    def wait_for(check, address: str) -> None:
        deadline = time.monotonic() + 30
        while not check(httpx.get(f"{address}/metadata").json(),
                        httpx.get(f"{address}/metrics").text):
            assert time.monotonic() < deadline
            time.sleep(0.05)

    with served(versions, reload_interval=0.05) as address:
        assert httpx.get(f"{address}/metadata").json()["version"] == "v000001"
        client = threading.Thread(target=load, args=(address,))
        client.start()
        try:
            cd.export(run=flow["run"], version_dir=versions)  # v000002, under load
            wait_for(lambda meta, _: meta["version"] == "v000002", address)
            broken = versions / "v000003"
            shutil.copytree(versions / "v000002", broken)
            (broken / "model.onnx").write_bytes(b"not a model")
            set_latest(versions, "v000003")
            wait_for(lambda _, scrape: 'ctrdistill_reloads_total{result="failed"} 1.0'
                     in scrape, address)
            time.sleep(0.2)  # the refused version is not tried again and again
        finally:
            stop.set()
            client.join(30)
        meta = httpx.get(f"{address}/metadata").json()
        scrape = httpx.get(f"{address}/metrics").text
    assert meta["version"] == "v000002"
    assert metric(scrape, 'ctrdistill_reloads_total{result="ok"}') == 1
    assert metric(scrape, 'ctrdistill_reloads_total{result="failed"}') == 1
    assert metric(scrape, 'ctrdistill_model_version{model="dnn",version="v000002"}') == 1
    assert len(statuses) > 10 and set(statuses) == {200}
    assert "refused bundle version v000003" in caplog.text
    assert caplog.text.count("refused bundle version") == 1
