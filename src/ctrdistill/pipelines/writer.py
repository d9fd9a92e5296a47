"""The one run writer. A run is a directory with its resolved config, metrics history, final
metrics, checkpoint(s), summary and learning-curve plot; it appears only when the run has
finished. Until then it is built in a hidden partial directory that also holds the resume
state, saved at every evaluation, so a killed run continues where it stopped (`resume`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl
import torch
import yaml

from ctrdistill.analysis.plots import plot_learning_curves
from ctrdistill.analysis.report import result_row
from ctrdistill.data.dataset import ColumnData, PreparedData
from ctrdistill.data.encode import copy_state
from ctrdistill.data.loader import BatchLoader, Loader, StreamingLoader
from ctrdistill.data.schema import FeatureMap
from ctrdistill.errors import CtrDistillError
from ctrdistill.files import RESTART, RETRAIN, load_torch, read_yaml, reading
from ctrdistill.models.base import CTRModel
from ctrdistill.pipelines.common import Result
from ctrdistill.pipelines.tracking import TrackingConfig, log_run
from ctrdistill.storage import RESUME_STATE, atomic_directory, atomic_file, partial_directory
from ctrdistill.strategies.base import SERVED, Strategy
from ctrdistill.training import distributed
from ctrdistill.training.checkpoint import CHECKPOINT_FILE, save_checkpoint
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.device import fits_on_device, resolve_device
from ctrdistill.training.speed import batch1_latency_ms, inference_samples_per_second, model_bytes
from ctrdistill.training.trainer import Trainer

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
DATA_FILE = "data.json"  # which prepared data the run trained on (path, training-rows fingerprint)
#: Config keys (with everything below them) that change what a run shows, not what it
#: computes: a resumed run may differ in them.
DISPLAY_ONLY = ("train.progress", "overwrite", "tracking")


@dataclass
class TrainJob:
    """One strategy to fit and save as the run directory `out`.

    `valid`: what early stopping watches (default: the valid split); `reports`: the splits whose
    metrics are reported (default: valid and test); `loader`: the training batches (default:
    the train split, in memory or streamed as `train` says); `config`: the resolved config the
    run directory records; `tracking`: also log the finished run there (None: off);
    `on_evaluate`: called with every evaluation's record (`Trainer.fit`)."""

    name: str
    strategy: Strategy
    data: PreparedData
    train: TrainConfig
    out: Path
    config: dict[str, Any]
    loader: Loader | None = None
    valid: ColumnData | None = None
    reports: dict[str, ColumnData] | None = None
    overwrite: bool = False
    resume: bool = False
    tracking: TrackingConfig | None = None
    on_evaluate: Callable[[dict[str, Any]], None] | None = None


def place(rows: ColumnData, device: torch.device) -> ColumnData:
    """Training rows where batches are cut fastest: in GPU memory when they fit (batches are
    then index slices there, no copy per step), else page-locked for asynchronous copies."""
    if device.type != "cuda":
        return rows
    if fits_on_device(rows.nbytes, device):
        logger.info("training rows placed on %s (%.2f GB)", device, rows.nbytes / 1e9)
        return rows.to(device)
    return rows.pin_memory()


def train_loader(data: PreparedData, config: TrainConfig) -> Loader:
    """In-memory batches of the train split (placed for the device), or streaming over its
    shards."""
    if config.streaming:
        return StreamingLoader(data.shards("train"), data.feature_map, config.batch_size,
                               config.buffer_rows, config.seed)
    return BatchLoader(place(data.load("train"), resolve_device(config.device)),
                       config.batch_size, shuffle=True, seed=config.seed)


def plain(value: Any) -> Any:
    """JSON/YAML-safe values (paths become strings)."""
    return json.loads(json.dumps(value, default=str))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat |= _flatten(item, f"{prefix}.{key}" if prefix else key)
    return flat


def config_changes(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two resolved configs (display-only keys ignored)."""
    a, b = _flatten(plain(saved)), _flatten(plain(new))
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)
                  and not any(k == d or k.startswith(f"{d}.") for d in DISPLAY_ONLY))


def _label_values(rows: ColumnData | Loader) -> list[float]:
    """The distinct labels of in-memory rows, of a loader's rows, or of a streamed loader's
    shards (read as one column)."""
    if isinstance(rows, BatchLoader):
        rows = rows.data
    if isinstance(rows, ColumnData):
        return torch.unique(rows.label).tolist()
    if isinstance(rows, StreamingLoader):
        return pl.scan_parquet(rows.shards).select("label").unique().collect()["label"].to_list()
    return []  # a loader of another kind: nothing to check up front


def check_labels(name: str, loader: Loader, reports: dict[str, ColumnData]) -> None:
    """Refuse training rows of one label value (nothing to learn, every AUC undefined); warn
    about a reported split of one label value (its AUC is undefined)."""
    values = _label_values(loader)
    if len(values) == 1:
        raise CtrDistillError(f"run {name}: every training row has label {values[0]:g}; a CTR "
                              "model needs both clicks (1) and non-clicks (0) to learn from")
    for split, rows in reports.items():
        values = _label_values(rows)
        if len(values) == 1:
            logger.warning("run %s: every %s row has label %g, so its AUC is undefined (nan)",
                           name, split, values[0])


def _resume_state(partial: Path, job: TrainJob) -> dict[str, Any] | None:
    state_file = partial / RESUME_STATE
    if not job.resume or not state_file.is_file():
        if job.resume:
            logger.info("run %s: nothing to resume, starting afresh", job.name)
        return None
    saved = read_yaml(partial / CONFIG_FILE, RESTART)
    changed = config_changes(saved, job.config)
    if changed:
        raise CtrDistillError(f"{job.out}: the interrupted run was started with another config "
                              f"(differs in: {', '.join(changed)}); resume with the same config "
                              "or start afresh without --resume")
    return load_torch(state_file, RESTART)


def save_models(directory: Path, strategy: Strategy, feature_map: FeatureMap) -> None:
    """Every servable model: checkpoint.pt (the served one) and checkpoint-<output>.pt."""
    for output, model in strategy.servable_models().items():
        target = directory / (CHECKPOINT_FILE if output == SERVED else f"checkpoint-{output}.pt")
        save_checkpoint(target, model, feature_map)


def save_model_dir(directory: Path, model: CTRModel, feature_map: FeatureMap) -> Path:
    """A directory holding just a servable checkpoint (a stream's daily models)."""
    with atomic_file(directory / CHECKPOINT_FILE) as tmp:
        save_checkpoint(tmp, model, feature_map)
    return directory


def trained_on(run_dir: Path) -> str | None:
    """The training-rows fingerprint of the data a finished run trained on (None: unknown)."""
    path = Path(run_dir) / DATA_FILE
    with reading(path, RETRAIN):
        return json.loads(path.read_text())["train_fingerprint"] if path.is_file() else None


@contextmanager
def _run_directory(job: TrainJob, group: distributed.Group | None) -> Iterator[Path]:
    """The partial directory of the run: made (and renamed into place at the end) by rank 0
    alone; the other ranks of a DDP group only read its resume state."""
    if group is None:
        with atomic_directory(job.out, overwrite=job.overwrite, resume=job.resume) as tmp:
            yield tmp
        return
    if group.is_main:
        with atomic_directory(job.out, overwrite=job.overwrite, resume=job.resume) as tmp:
            yield tmp
    else:
        yield partial_directory(job.out)
    distributed.barrier()  # the finished run is in place for every rank


def run_job(job: TrainJob) -> Result:
    """Fit `job.strategy`, evaluate it, and write the run directory atomically. Under torchrun
    every rank trains and evaluates, rank 0 writes; a group restarted by torchrun resumes."""
    device = resolve_device(job.train.device)
    group = distributed.group(device)
    if distributed.restarted():
        job = replace(job, resume=True)
    loader = job.loader or train_loader(job.data, job.train)
    valid = job.valid if job.valid is not None else job.data.load("valid")
    reports = job.reports if job.reports is not None else {"valid": job.data.load("valid"),
                                                           "test": job.data.load("test")}
    watched = {"early-stopping validation": valid} if job.valid is not None else {}
    check_labels(job.name, loader, {**reports, **watched})
    main = group is None or group.is_main
    with _run_directory(job, group) as tmp:
        if main:
            resume = _resume_state(tmp, job)
            (tmp / CONFIG_FILE).write_text(yaml.safe_dump(plain(job.config), sort_keys=False))
        if group:
            distributed.barrier()  # rank 0 has kept or emptied the partial and checked it
        if not main:
            resume = _resume_state(tmp, job)
        logger.info("run %s: %s training rows, %s", job.name, f"{loader.num_rows:,}",
                    parameter_counts(job.strategy))

        def checkpoint(state: dict[str, Any]) -> None:
            with atomic_file(tmp / RESUME_STATE) as part:
                torch.save(state, part)

        trainer = Trainer(job.strategy, job.train)
        fit = trainer.fit(loader, valid, resume=resume, checkpoint=checkpoint,
                          on_evaluate=job.on_evaluate)
        metrics: dict[str, Any] = {split: trainer.evaluate(rows) for split, rows in reports.items()}
        if not main:
            return Result(job.out, metrics, history=fit.history)
        served = job.strategy.served_model()
        metrics["params"] = served.num_parameters()
        metrics["train_samples_per_second"] = fit.samples_per_second
        report_rows = next(iter(reports.values()))
        metrics["model_bytes"] = model_bytes(served)
        metrics["inference_samples_per_second"] = inference_samples_per_second(served,
                                                                               report_rows)
        metrics["latency_ms"] = batch1_latency_ms(served, report_rows)
        metrics["steps"] = fit.steps
        metrics["stopped_early"] = fit.stopped_early
        metrics["best_step"] = fit.best["step"] if fit.best else None
        (tmp / DATA_FILE).write_text(json.dumps(
            {"path": str(job.data.path.resolve()),
             "train_fingerprint": job.data.fingerprint(("train",))}, indent=1))
        (tmp / "history.json").write_text(json.dumps(fit.history, indent=1))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
        save_models(tmp, job.strategy, job.data.feature_map)
        copy_state(job.data.path, tmp)  # the run alone can then score raw logs and be exported
        torch.save(job.strategy.trained_state(), tmp / "strategy_state.pt")
        plot_learning_curves({job.name: fit.history}, tmp / "curves.png",
                             best_steps={job.name: metrics["best_step"]})
        (tmp / "summary.md").write_text(_summary(job.name, metrics,
                                                 parameter_counts(job.strategy), job.config))
        (tmp / RESUME_STATE).unlink(missing_ok=True)  # finished: nothing left to resume
    if job.tracking is not None:
        log_run(job.tracking, job.name, job.out, _flatten(plain(job.config)), metrics,
                fit.history)
    return Result(job.out, metrics, [result_row(job.name, metrics)], fit.history,
                  f"{job.name}: test split")


def parameter_counts(strategy: Strategy) -> str:
    """The served model's parameters and, when training fits more (aux head, gate, hint map),
    what each extra part adds: 'S served parameters (T trained: + aux head A, ensemble E)'."""
    served = {id(p) for p in strategy.served_model().parameters()}
    extra = {}
    for name, module in strategy.named_children():
        count = sum(p.numel() for p in module.parameters()
                    if p.requires_grad and id(p) not in served)
        if count:
            extra[name.replace("_", " ")] = count
    text = f"{sum(p.numel() for p in strategy.served_model().parameters()):,} served parameters"
    if not extra:
        return text
    trained = sum(p.numel() for p in strategy.parameters() if p.requires_grad)
    parts = ", ".join(f"{name} {count:,}" for name, count in extra.items())
    return f"{text} ({trained:,} trained: + {parts})"


def _summary(name: str, metrics: dict[str, Any], parameters: str, config: dict[str, Any]) -> str:
    lines = [f"# Run {name}", "", "| split | AUC | logloss | calibration |", "|---|---|---|---|"]
    for split in ("valid", "test"):
        if split in metrics:
            m = metrics[split]
            lines.append(f"| {split} | {m['auc']:.5f} | {m['logloss']:.5f} | "
                         f"{m['calibration']:.4f} |")
    if config.get("add_valid_to_train"):
        lines += ["", "The valid split is not reported: the model trained on it "
                  "(add_valid_to_train); test is its held-out figure."]
    lines += ["", f"- {parameters}",
              f"- training: {metrics['train_samples_per_second']:,.0f} samples/s, "
              f"{metrics['steps']} steps, best at step {metrics['best_step']}",
              f"- inference: {metrics['inference_samples_per_second']:,.0f} samples/s"]
    return "\n".join(lines) + "\n"
