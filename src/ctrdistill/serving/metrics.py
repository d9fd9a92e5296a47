"""The service's Prometheus metrics (prometheus_client), in one registry per app.

Each uvicorn worker process counts its own requests: a scrape sees one worker's numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# latency buckets around the 1 ms budget of a one-row request, up to a 4096-row one
BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("ctrdistill_requests", "scoring requests answered, by HTTP "
                                "status (4xx: refused requests)", ["status"], registry=r)
        self.latency = Histogram("ctrdistill_request_latency_seconds", "time from a scoring "
                                 "request's body read to its answer", buckets=BUCKETS,
                                 registry=r)
        self.rows = Counter("ctrdistill_rows_scored", "rows scored", registry=r)
        self.version = Gauge("ctrdistill_model_version", "1 for the bundle version served",
                             ["version", "model"], registry=r)
        self.batches = Histogram("ctrdistill_batch_rows", "rows per onnxruntime call of the "
                                 "dynamic batcher", buckets=(1, 2, 4, 8, 16, 32, 64, 256, 1024,
                                                             4096), registry=r)
        self.reloads = Counter("ctrdistill_reloads", "bundle versions loaded after the first, "
                               "by result (failed: refused, the old one kept serving)",
                               ["result"], registry=r)

    def serving(self, version: str, model: str) -> None:
        self.version.clear()
        self.version.labels(version=version, model=model).set(1)
