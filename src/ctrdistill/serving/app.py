"""The HTTP JSON scoring service of a bundle (FastAPI; run by `ctrdistill serve` under uvicorn).

`POST /predict` takes `{"rows": [{column: value, ...}, ...], "logits": false}` (`rows` may also
be one object) with the raw feature columns of the bundle's schema, and returns
`{"probabilities": [...]}` (and `"logits"` when asked). Ids are text or integers, numbers are
numbers, null is a missing value; an id never seen in training is out-of-vocabulary, not an
error. A bad request gets 400 (body too large, not JSON, too many rows) or 422 (a missing,
unknown or wrongly typed field), with a message naming the field and the 0-based row; any other
failure is a 500 for that request alone: the server keeps serving.
`GET /health` and `GET /metadata` (model, fields, versions) complete the service.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import polars as pl
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ctrdistill.serving.bundle import Bundle, load_bundle
from ctrdistill.serving.settings import ENVIRONMENT, MAX_BODY_BYTES, MAX_ROWS

logger = logging.getLogger(__name__)



class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _kind_error(values: list[Any], numeric: bool) -> int | None:
    """The first row whose value has the wrong JSON type (None: all fine)."""
    allowed = (int, float) if numeric else (str, int)
    for index, value in enumerate(values):
        if value is not None and (isinstance(value, bool) or not isinstance(value, allowed)):
            return index
    return None


def rows_frame(payload: Any, columns: dict[str, pl.DataType], max_rows: int) -> pl.DataFrame:
    """The request's rows as a frame of the raw columns, or BadRequest naming field and row."""
    if not isinstance(payload, dict) or "rows" not in payload:
        raise BadRequest(422, 'the body must be a JSON object with "rows": a list of rows '
                         "(objects of raw feature values) or one row")
    unknown_keys = set(payload) - {"rows", "logits"}
    if unknown_keys:
        raise BadRequest(422, f"unknown key(s) {sorted(unknown_keys)} (valid: rows, logits)")
    rows = payload["rows"]
    rows = [rows] if isinstance(rows, dict) else rows
    if not isinstance(rows, list) or not rows:
        raise BadRequest(422, '"rows" must be a non-empty list of objects, or one object')
    if len(rows) > max_rows:
        raise BadRequest(400, f"too many rows: {len(rows)} (at most {max_rows} per request)")
    expected = set(columns)
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BadRequest(422, f"row {index}: not an object of field values")
        if row.keys() != expected:
            missing, unknown = sorted(expected - row.keys()), sorted(row.keys() - expected)
            what = (f"missing field '{missing[0]}'" if missing else
                    f"unknown field '{unknown[0]}' (valid: {', '.join(sorted(expected))})")
            raise BadRequest(422, f"row {index}: {what}")
    series = []
    for column, dtype in columns.items():
        values = [row[column] for row in rows]
        numeric = dtype == pl.Float64
        bad = _kind_error(values, numeric)
        if bad is not None:
            wanted = "a number" if numeric else "text or an integer id"
            raise BadRequest(422, f"row {bad}: field '{column}' must be {wanted} or null, not "
                             f"{type(values[bad]).__name__}")
        series.append(pl.Series(column, values, dtype=dtype, strict=False))
    return pl.DataFrame(series)


def create_app(bundle: Bundle, max_rows: int = MAX_ROWS,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    app = FastAPI(title="ctrdistill scoring", version=str(bundle.manifest["versions"]
                                                             .get("ctrdistill", "")))
    columns = bundle.columns
    metadata = _metadata(bundle, max_rows, max_body_bytes)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    def get_metadata() -> dict[str, Any]:
        return metadata

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        try:
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
                raise BadRequest(400, f"body too large: {declared} bytes (at most "
                                 f"{max_body_bytes})")
            body = await request.body()
            if len(body) > max_body_bytes:
                raise BadRequest(400, f"body too large: {len(body)} bytes (at most "
                                 f"{max_body_bytes})")
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError) as error:
                raise BadRequest(400, f"the body is not valid JSON ({error})") from None
            frame = rows_frame(payload, columns, max_rows)
            logit, probability = bundle.score_frame(frame)
            out: dict[str, Any] = {"probabilities": probability.tolist()}
            if payload.get("logits"):
                out["logits"] = logit.tolist()
            return JSONResponse(out)
        except BadRequest as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        except Exception as error:  # one request failed; the service goes on
            logger.exception("predict failed")
            return JSONResponse({"error": f"internal error: {type(error).__name__}"},
                                status_code=500)

    return app


def _metadata(bundle: Bundle, max_rows: int, max_body_bytes: int) -> dict[str, Any]:
    import onnxruntime

    manifest = bundle.manifest
    fields = [{"name": f.name, "column": f.column, "kind": f.kind, "transform": f.transform}
              for f in bundle.state.schema.fields]
    return {"model": manifest["model"], "parameters": manifest["parameters"],
            "source_run": manifest["source_run"], "exporter": manifest["exporter"],
            "fields": fields, "inputs": manifest["inputs"], "outputs": manifest["outputs"],
            "versions": {**manifest["versions"], "onnxruntime": onnxruntime.__version__},
            "limits": {"max_rows": max_rows, "max_body_bytes": max_body_bytes}}


def app_from_environment() -> FastAPI:
    """The app of the bundle named by CTRDISTILL_BUNDLE (uvicorn's factory in each worker)."""
    env = {key: os.environ.get(name) for key, name in ENVIRONMENT.items()}
    threads = int(env["threads"]) if env["threads"] else None
    return create_app(load_bundle(Path(env["bundle"] or "."), threads),
                      int(env["max_rows"] or MAX_ROWS),
                      int(env["max_body_bytes"] or MAX_BODY_BYTES))
