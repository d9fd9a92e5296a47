"""`ctrdistill serve`: an export bundle as an HTTP JSON scoring service under uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field

from ctrdistill.config import StrictConfig
from ctrdistill.errors import CtrDistillError
from ctrdistill.pipelines.common import Result, resolve
from ctrdistill.serving.settings import ENVIRONMENT, MAX_BODY_BYTES, MAX_ROWS


class ServeConfig(StrictConfig):
    bundle: Path = Field(description="an ONNX bundle written by `ctrdistill export`")
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    threads: int | None = Field(None, ge=1, description="onnxruntime threads per worker "
                                "(default: onnxruntime's own)")
    max_rows: int = Field(MAX_ROWS, ge=1, description="rows per request at most")
    max_body_bytes: int = Field(MAX_BODY_BYTES, ge=1, description="request body size at most")


def serve(config: ServeConfig | dict[str, Any] | str | Path | None = None,
          **overrides: Any) -> Result:
    """Serve until interrupted (Ctrl-C or SIGTERM), then return."""
    config = resolve(ServeConfig, config, **overrides)
    try:
        import uvicorn
    except ImportError:
        raise CtrDistillError("serving needs FastAPI and uvicorn: pip install "
                              "'ctrdistill[serve]'") from None
    from ctrdistill.serving.bundle import load_bundle

    load_bundle(config.bundle, config.threads)  # a bad bundle fails here, in one line
    values = {"bundle": str(config.bundle.resolve()), "threads": config.threads or "",
              "max_rows": config.max_rows, "max_body_bytes": config.max_body_bytes}
    os.environ.update({ENVIRONMENT[k]: str(v) for k, v in values.items()})
    uvicorn.run("ctrdistill.serving.app:app_from_environment", factory=True, host=config.host,
                port=config.port, workers=config.workers, log_level="warning")
    return Result(config.bundle, {"host": config.host, "port": config.port})
