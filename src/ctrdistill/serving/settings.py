"""The service's limits and how `ctrdistill serve` passes its settings to uvicorn's workers
(environment variables, read by `app_from_environment` in each worker process)."""

MAX_ROWS = 4096
MAX_BODY_BYTES = 8 << 20
ENVIRONMENT = {"bundle": "CTRDISTILL_BUNDLE", "threads": "CTRDISTILL_THREADS",
               "max_rows": "CTRDISTILL_MAX_ROWS", "max_body_bytes": "CTRDISTILL_MAX_BODY_BYTES",
               "batch_delay": "CTRDISTILL_BATCH_DELAY",
               "reload_interval": "CTRDISTILL_RELOAD_INTERVAL"}
MIN_OPSET = 20  # of a graph of raw inputs: StringSplit splits sequences
