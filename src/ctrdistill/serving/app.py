"""The HTTP JSON scoring service of a bundle (FastAPI; run by `ctrdistill serve` under uvicorn).

`POST /predict` takes `{"rows": [{column: value, ...}, ...], "logits": false}` (`rows` may be one
object) with the raw inputs of the bundle's graph, and returns `{"probabilities": [...]}` (and
`"logits"` when asked). Ids are text or integers, numbers are numbers, null is a missing value;
an id never seen in training is out-of-vocabulary, not an error. Any body gets 200 or a 4xx:
400 (body too large, not JSON, too many rows) or 422 (a missing, unknown or wrongly typed
field, naming the field and the 0-based row). Checking and scoring run in one worker thread
(onnxruntime and numpy release the GIL; one thread keeps a worker's requests from contending),
so a large request never blocks `/health`; with `batch_delay` > 0 concurrent requests are
scored together (`ctrdistill.serving.batching`).

Served from a folder of versions (`v000001/`, ..., `latest`), the service watches `latest` and
switches to a new version once it has loaded and scored a row; requests in flight finish on the
version they started with. A version that fails to load is refused with a log line, and the
old one keeps serving. `GET /health`, `GET /metadata` (model, inputs, version, versions of the
libraries) and `GET /metrics` (Prometheus) complete the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ctrdistill.errors import CtrDistillError
from ctrdistill.serving.batching import Batcher
from ctrdistill.serving.bundle import Bundle, load_bundle
from ctrdistill.serving.metrics import Metrics
from ctrdistill.serving.requests import BadRequest, RequestSchema
from ctrdistill.serving.settings import ENVIRONMENT, MAX_BODY_BYTES, MAX_ROWS
from ctrdistill.serving.versions import is_versioned, latest

logger = logging.getLogger(__name__)
WARM_UP_HOUR = "14102100"


@dataclass(frozen=True)
class Settings:
    threads: int | None = None  # onnxruntime intra-op threads
    max_rows: int = MAX_ROWS
    max_body_bytes: int = MAX_BODY_BYTES
    batch_delay: float = 0.0  # seconds a request waits for others; 0: no batching
    reload_interval: float = 1.0  # seconds between looks at a version folder's `latest`


@dataclass
class Served:
    """One loaded bundle version and what answers its requests."""

    bundle: Bundle
    version: str | None
    schema: RequestSchema
    metadata: dict[str, Any]
    batcher: Batcher | None

    def score_body(self, body: bytes) -> dict[str, Any]:
        feeds, logits = self.schema.feeds_of(body)
        return _answer(*self.bundle.score(feeds), logits)


def _answer(logit: Any, probability: Any, logits: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"probabilities": probability.tolist()}
    if logits:
        out["logits"] = logit.tolist()
    return out


def load_served(folder: Path, version: str | None, settings: Settings, metrics: Metrics,
                executor: Executor) -> Served:
    """Open a bundle and check it scores: a bundle that fails here is never served."""
    bundle = load_bundle(folder, settings.threads)
    if not bundle.raw:
        raise CtrDistillError(f"{folder}: its graph takes encoded ids; serving needs raw "
                              "inputs (export it again without --inputs ids)")
    schema = RequestSchema(bundle.inputs, settings.max_rows)
    # a row of missing values (and a valid time) scores, or the bundle fails here
    bundle.score(schema.feeds([{i["name"]: WARM_UP_HOUR if i.get("format") else None
                                for i in bundle.inputs}]))
    batcher = (Batcher(bundle.score, settings.batch_delay, settings.max_rows,
                       metrics.batches.observe, executor) if settings.batch_delay > 0 else None)
    return Served(bundle, version, schema, _metadata(bundle, version, settings), batcher)


def _metadata(bundle: Bundle, version: str | None, settings: Settings) -> dict[str, Any]:
    import onnxruntime

    manifest = bundle.manifest
    return {"version": version, "model": manifest["model"],
            "parameters": manifest["parameters"], "source_run": manifest["source_run"],
            "exporter": manifest["exporter"], "opset": manifest["opset"],
            "inputs": manifest["inputs"], "outputs": manifest["outputs"],
            "versions": {**manifest["versions"], "onnxruntime_serving": onnxruntime.__version__},
            "limits": {"max_rows": settings.max_rows, "max_body_bytes": settings.max_body_bytes},
            "batching": {"max_delay_ms": settings.batch_delay * 1000} if settings.batch_delay
            else None}


class Service:
    """The version being served, and the watch of a version folder for the next one."""

    def __init__(self, source: Path, settings: Settings, metrics: Metrics) -> None:
        self.source = Path(source)
        self.settings = settings
        self.metrics = metrics
        self.versioned = is_versioned(self.source)
        version, folder = latest(self.source) if self.versioned else (None, self.source)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="ctrdistill-score")
        self.current = load_served(folder, version, settings, metrics, self.executor)
        self.refused: str | None = None  # the version that failed: tried again once replaced
        self._announce()

    def _announce(self) -> None:
        self.metrics.serving(self.current.version or "",
                             str(self.current.bundle.manifest["model"].get("name", "")))

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval)
            try:
                await self.check()
            except Exception:  # the watch goes on whatever one look at the folder does
                logger.exception("looking for a new bundle version failed")

    async def check(self) -> None:
        """Load the version `latest` names, if new; serve it if it loads."""
        try:
            version, folder = latest(self.source)
        except CtrDistillError as error:
            if self.refused != str(error):
                logger.error("%s; still serving %s", error, self.current.version)
                self.refused = str(error)
            return
        if version in (self.current.version, self.refused):
            return
        try:
            served = await anyio.to_thread.run_sync(load_served, folder, version, self.settings,
                                                    self.metrics, self.executor)
        except Exception as error:
            logger.error("refused bundle version %s (%s); still serving %s", version,
                         str(error).splitlines()[0] if str(error) else type(error).__name__,
                         self.current.version)
            self.refused = version
            self.metrics.reloads.labels(result="failed").inc()
            return
        self.current, self.refused = served, None
        self.metrics.reloads.labels(result="ok").inc()
        self._announce()
        logger.warning("now serving bundle version %s", version)


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, refused as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(400, f"body too large: {declared} bytes (at most {limit})")
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(400, f"body too large: more than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def create_app(source: str | Path, settings: Settings | None = None) -> FastAPI:
    """The service of a bundle, or of the `latest` version of a version folder."""
    settings = settings or Settings()
    metrics = Metrics()
    service = Service(Path(source), settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watcher = asyncio.create_task(service.watch()) if service.versioned else None
        yield
        if watcher is not None:
            watcher.cancel()
        service.executor.shutdown(wait=False)

    async def off_loop(work: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(service.executor, work, *args)

    app = FastAPI(title="ctrdistill scoring", lifespan=lifespan)
    app.state.service = service

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    def get_metadata() -> dict[str, Any]:
        return service.current.metadata

    @app.get("/metrics")
    def get_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        start = time.perf_counter()
        served = service.current  # the whole request is answered by this version
        status, rows = 200, 0
        try:
            body = await _body(request, settings.max_body_bytes)
            if served.batcher is None:
                out = await off_loop(served.score_body, body)
            else:
                feeds, logits = await off_loop(served.schema.feeds_of, body)
                out = _answer(*await served.batcher(feeds), logits)
            rows = len(out["probabilities"])
            response = Response(json.dumps(out), media_type="application/json")
        except BadRequest as error:
            status = error.status
            response = JSONResponse({"error": str(error)}, status_code=status)
        except Exception as error:  # a defect: logged, this request alone fails
            logger.exception("predict failed")
            status = 500
            response = JSONResponse({"error": f"internal error: {type(error).__name__}"},
                                    status_code=status)
        metrics.requests.labels(status=str(status)).inc()
        metrics.latency.observe(time.perf_counter() - start)
        if rows:
            metrics.rows.inc(rows)
        return response

    return app


def settings_from_environment() -> tuple[Path, Settings]:
    env = {key: os.environ.get(name) for key, name in ENVIRONMENT.items()}
    return Path(env["bundle"] or "."), Settings(
        threads=int(env["threads"]) if env["threads"] else None,
        max_rows=int(env["max_rows"] or MAX_ROWS),
        max_body_bytes=int(env["max_body_bytes"] or MAX_BODY_BYTES),
        batch_delay=float(env["batch_delay"] or 0), reload_interval=float(
            env["reload_interval"] or 1.0))


def app_from_environment() -> FastAPI:
    """The app of the bundle named by CTRDISTILL_BUNDLE (uvicorn's factory in each worker)."""
    return create_app(*settings_from_environment())
