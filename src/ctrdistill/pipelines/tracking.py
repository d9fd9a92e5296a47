"""Optional experiment tracking: a finished run is also logged to MLflow (`tracking:` key of
every training verb; absent: off). The run directory stays the source of truth: the MLflow
run is a copy made once it is in place, with the history records logged afterwards at their
step numbers. Needs the extra `pip install 'ctrdistill[mlflow]'`; mlflow is imported only when
a run is logged, so the base install works without it."""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ctrdistill.config import StrictConfig
from ctrdistill.errors import CtrDistillError
from ctrdistill.rundir import RunDirectory

logger = logging.getLogger(__name__)

TRACKING_HELP = ("also log the finished run to MLflow, e.g. {kind: mlflow, uri: null, "
                 "experiment: ctrdistill}; None: off")
_BATCH = 100  # MLflow's limit of params per log_batch call (metrics: 1000)


class TrackingConfig(StrictConfig):
    """Where a finished run is also logged."""

    kind: Literal["mlflow"] = Field("mlflow", description="the tracking backend")
    uri: str | None = Field(
        None, description="an MLflow tracking URI (http://..., sqlite:///...); None: the "
        "SQLite store output_dir/mlflow.db with artifacts in output_dir/mlartifacts/ (with a "
        "URI, a new experiment's artifacts go where MLflow puts them, locally ./mlruns)")
    experiment: str = Field("ctrdistill", min_length=1, description="the MLflow experiment")

    @model_validator(mode="after")
    def _installed(self) -> TrackingConfig:
        if importlib.util.find_spec("mlflow") is None:  # refuse before training, not after
            raise ValueError("tracking kind 'mlflow' needs mlflow: pip install "
                             "'ctrdistill[mlflow]'")
        return self


def _numbers(values: dict[str, Any], prefix: str) -> dict[str, float]:
    """Numeric leaves of nested metrics as `prefix.key` (booleans as 0/1, None skipped)."""
    flat: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            flat |= _numbers(value, name)
        elif isinstance(value, bool | int | float):
            flat[name] = float(value)
    return flat


def _metrics(history: list[dict[str, Any]], final: dict[str, Any]):
    """Every evaluation's train and valid figures at its step, then the final metrics
    (`final.test.auc`, ...) at the last step."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(key, value, now, record["step"]) for record in history
               for part in ("train", "valid") if part in record
               for key, value in _numbers(record[part], part).items()]
    last = history[-1]["step"] if history else 0
    metrics += [Metric(key, value, now, last) for key, value in _numbers(final, "final").items()
                if math.isfinite(value)]
    return metrics


def log_run(config: TrackingConfig, name: str, run_dir: Path, params: dict[str, Any],
            metrics: dict[str, Any], history: list[dict[str, Any]]) -> str:
    """Log the finished run `run_dir` as one MLflow run; returns its run id."""
    from mlflow.exceptions import MlflowException

    home = run_dir.parent
    uri = config.uri or f"sqlite:///{(home / 'mlflow.db').resolve()}"
    try:
        return _log(config, uri, name, run_dir, params, metrics, history)
    except (MlflowException, OSError) as error:  # the run itself is in place: say so
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CtrDistillError(f"run {name} is saved in {run_dir}, but logging it to MLflow at "
                              f"{uri} failed: {message}") from None


def _log(config: TrackingConfig, uri: str, name: str, run_dir: Path, params: dict[str, Any],
         metrics: dict[str, Any], history: list[dict[str, Any]]) -> str:
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    home = run_dir.parent
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(config.experiment)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:  # a local store keeps artifacts beside it, not in the working directory
        location = None if config.uri else (home / "mlartifacts").resolve().as_uri()
        experiment_id = client.create_experiment(config.experiment, artifact_location=location)
    run_id = client.create_run(experiment_id, run_name=name,
                               tags={"ctrdistill.run_dir": str(run_dir.resolve())}).info.run_id
    pairs = [Param(key, str(value)) for key, value in params.items()]
    for start in range(0, len(pairs), _BATCH):
        client.log_batch(run_id, params=pairs[start:start + _BATCH])
    values = _metrics(history, metrics)
    for start in range(0, len(values), 10 * _BATCH):
        client.log_batch(run_id, metrics=values[start:start + 10 * _BATCH])
    for pattern in RunDirectory.ARTIFACTS:
        for path in sorted(run_dir.glob(pattern)):
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    logger.info("run %s logged to MLflow %s (experiment %s, run %s)", name, uri,
                config.experiment, run_id)
    return run_id
