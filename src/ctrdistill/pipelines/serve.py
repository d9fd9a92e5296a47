"""`ctrdistill serve`: an export bundle, or a folder of bundle versions, as an HTTP JSON scoring
service under uvicorn."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from ctrdistill.config import StrictConfig
from ctrdistill.errors import CtrDistillError
from ctrdistill.pipelines.common import Result, resolve
from ctrdistill.serving.settings import ENVIRONMENT, MAX_BODY_BYTES, MAX_ROWS


class ServeConfig(StrictConfig):
    bundle: Path = Field(description="an ONNX bundle written by `ctrdistill export`, or a folder "
                         "of versions written by `export --version-dir` (the `latest` one is "
                         "served, and a new one is switched to live)")
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    threads: int | None = Field(None, ge=1, description="onnxruntime threads per worker "
                                "(default: onnxruntime's own)")
    max_rows: int = Field(MAX_ROWS, ge=1, description="rows per request at most")
    max_body_bytes: int = Field(MAX_BODY_BYTES, ge=1, description="request body size at most")
    batch_delay_ms: float = Field(0.0, ge=0, le=1000, description="dynamic batching: how long "
                                  "a request waits for others to be scored with (0: off)")
    reload_interval: float = Field(1.0, gt=0, description="seconds between looks at a version "
                                   "folder's `latest` pointer")


def check_port(host: str, port: int) -> None:
    """Fail in one line if `host:port` cannot be listened on (in use, not allowed, no such
    address), before uvicorn tries and exits with its own message."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise CtrDistillError(f"cannot listen on {host}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as error:
            hint = (" (another server holds it: stop it or choose another --port)"
                    if error.errno == errno.EADDRINUSE else "")
            raise CtrDistillError(f"cannot listen on {host}:{port}: {error.strerror}{hint}"
                                  ) from None


def serve(config: ServeConfig | dict[str, Any] | str | Path | None = None,
          on_start: Callable[[], None] | None = None, **overrides: Any) -> Result:
    """Serve until interrupted (Ctrl-C or SIGTERM), then return; `on_start` is called once
    the bundle loaded and the port is free."""
    config = resolve(ServeConfig, config, **overrides)
    try:
        import uvicorn

        from ctrdistill.serving.app import Service, Settings
        from ctrdistill.serving.metrics import Metrics
    except ImportError as error:
        raise CtrDistillError(f"serving needs FastAPI, uvicorn and prometheus_client ({error}): "
                              "pip install 'ctrdistill[serve]'") from None
    settings = Settings(threads=config.threads, max_rows=config.max_rows,
                        max_body_bytes=config.max_body_bytes,
                        batch_delay=config.batch_delay_ms / 1000,
                        reload_interval=config.reload_interval)
    Service(config.bundle, settings, Metrics())  # a bad bundle fails here, in one line
    check_port(config.host, config.port)
    values = {"bundle": str(config.bundle.resolve()), "threads": config.threads or "",
              "max_rows": config.max_rows, "max_body_bytes": config.max_body_bytes,
              "batch_delay": settings.batch_delay, "reload_interval": config.reload_interval}
    os.environ.update({ENVIRONMENT[k]: str(v) for k, v in values.items()})
    if on_start is not None:
        on_start()
    uvicorn.run("ctrdistill.serving.app:app_from_environment", factory=True, host=config.host,
                port=config.port, workers=config.workers, log_level="warning")
    return Result(config.bundle, {"host": config.host, "port": config.port})
