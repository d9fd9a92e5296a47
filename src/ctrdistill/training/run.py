"""Runs: every training job is a directory with its resolved config, metrics history, final
metrics, checkpoint(s), summary and learning-curve plot. Later steps take run directories as
inputs, so pipelines compose. The directory appears only when the run has finished."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import torch
import yaml
from pydantic import BeforeValidator, Field, SerializeAsAny

from ctrdistill.analysis.plots import plot_learning_curves
from ctrdistill.config import StrictConfig
from ctrdistill.data.dataset import ColumnData, PreparedData
from ctrdistill.data.loader import BatchLoader, StreamingLoader
from ctrdistill.models.base import ModelConfig
from ctrdistill.models.registry import build_model, model_config
from ctrdistill.storage import atomic_directory
from ctrdistill.strategies.base import SERVED, Strategy
from ctrdistill.strategies.plain import PlainStrategy
from ctrdistill.training.checkpoint import CHECKPOINT_FILE, save_checkpoint
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.speed import inference_samples_per_second
from ctrdistill.training.trainer import FitResult, Trainer

ModelSpec = Annotated[SerializeAsAny[ModelConfig], BeforeValidator(model_config)]


class RunConfig(StrictConfig):
    """`ctrdistill train`: one model trained on hard labels."""

    name: str
    data: Path
    output_dir: Path = Path("runs")
    model: ModelSpec
    train: TrainConfig = Field(default_factory=TrainConfig)
    overwrite: bool = False


@dataclass
class RunResult:
    path: Path
    metrics: dict[str, Any]
    fit: FitResult
    extra: dict[str, Any] = field(default_factory=dict)


def train_loader(data: PreparedData, config: TrainConfig, train: ColumnData | None = None):
    """In-memory batches of `train` (default: the train split) or streaming over its shards."""
    if config.streaming and train is None:
        return StreamingLoader(data.shards("train"), data.feature_map, config.batch_size,
                               config.buffer_rows, config.seed)
    rows = train if train is not None else data.load("train")
    return BatchLoader(rows, config.batch_size, shuffle=True, seed=config.seed)


def execute(
    name: str,
    strategy: Strategy,
    data: PreparedData,
    train_config: TrainConfig,
    out: Path,
    resolved_config: dict[str, Any],
    loader=None,
    valid: ColumnData | None = None,
    reports: dict[str, ColumnData] | None = None,
    overwrite: bool = False,
    log=print,
) -> RunResult:
    """Fit `strategy`, evaluate it, and write the run directory `out` atomically.

    `valid` is what early stopping watches (default: the valid split); `reports` are the splits
    whose metrics are reported (default: valid and test).
    """
    loader = loader or train_loader(data, train_config)
    valid = valid if valid is not None else data.load("valid")
    reports = reports if reports is not None else {"valid": data.load("valid"),
                                                   "test": data.load("test")}
    with atomic_directory(out, overwrite=overwrite) as tmp:
        log(f"run {name}: {loader.num_rows:,} training rows, "
            f"{sum(p.numel() for p in strategy.parameters() if p.requires_grad):,} trainable "
            "parameters")
        trainer = Trainer(strategy, train_config, log=log)
        fit = trainer.fit(loader, valid)
        metrics: dict[str, Any] = {split: trainer.evaluate(rows) for split, rows in reports.items()}
        served = strategy.served_model()
        metrics["params"] = served.num_parameters()
        metrics["train_samples_per_second"] = fit.samples_per_second
        metrics["inference_samples_per_second"] = inference_samples_per_second(
            served, next(iter(reports.values())))
        metrics["steps"] = fit.steps
        metrics["stopped_early"] = fit.stopped_early
        metrics["best_step"] = fit.best["step"] if fit.best else None
        (tmp / "config.yaml").write_text(yaml.safe_dump(_plain(resolved_config), sort_keys=False))
        (tmp / "history.json").write_text(json.dumps(fit.history, indent=1))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
        for output, model in strategy.servable_models().items():
            target = tmp / (CHECKPOINT_FILE if output == SERVED else f"checkpoint-{output}.pt")
            save_checkpoint(target, model, data.feature_map)
        torch.save(strategy.trained_state(), tmp / "strategy_state.pt")
        plot_learning_curves({name: fit.history}, tmp / "curves.png")
        (tmp / "summary.md").write_text(_summary(name, metrics))
    return RunResult(out, metrics, fit)


def run_train(config: RunConfig, log=print) -> RunResult:
    data = PreparedData(config.data)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, data.feature_map, sparse=config.train.sparse_embedding)
    return execute(config.name, PlainStrategy(model), data, config.train,
                   config.output_dir / config.name, config.model_dump(mode="json"),
                   overwrite=config.overwrite, log=log)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _summary(name: str, metrics: dict[str, Any]) -> str:
    lines = [f"# Run {name}", "", "| split | AUC | logloss | calibration |", "|---|---|---|---|"]
    for split in ("valid", "test"):
        if split in metrics:
            m = metrics[split]
            lines.append(f"| {split} | {m['auc']:.5f} | {m['logloss']:.5f} | "
                         f"{m['calibration']:.4f} |")
    lines += ["", f"- parameters: {metrics['params']:,}",
              f"- training: {metrics['train_samples_per_second']:,.0f} samples/s, "
              f"{metrics['steps']} steps, best at step {metrics['best_step']}",
              f"- inference: {metrics['inference_samples_per_second']:,.0f} samples/s"]
    return "\n".join(lines) + "\n"
