"""`ctrdistill distill`: train or load teachers, score every split with them once, and train a
student by direct or auxiliary distillation from their (possibly gated) ensemble.

Writes `output_dir/name/` (the student's run directory) with `results.{json,md}`: one row per
teacher, the teacher ensemble and the student (plus its aux head), on the test split. Teachers
trained here live in `output_dir/<name>-teachers/` and are reused when their resolved config is
unchanged.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

import polars as pl
import torch
from pydantic import Field, model_validator

from ctrdistill.analysis.plots import plot_learning_curves
from ctrdistill.analysis.report import result_row, save_table
from ctrdistill.config import Name, StrictConfig
from ctrdistill.data.batch import TEACHER_HIDDEN, TEACHER_LOGITS
from ctrdistill.data.dataset import SPLITS, ColumnData, PreparedData
from ctrdistill.data.loader import BatchLoader
from ctrdistill.errors import CtrDistillError
from ctrdistill.files import RETRAIN, read_yaml
from ctrdistill.labels.store import LabelStore, teacher_logits
from ctrdistill.models.base import CTRModel
from ctrdistill.models.registry import ModelSpec, build_model, model_config
from ctrdistill.pipelines.common import Result, resolve
from ctrdistill.pipelines.tracking import TRACKING_HELP, TrackingConfig
from ctrdistill.pipelines.train import TrainRunConfig, train
from ctrdistill.pipelines.writer import CONFIG_FILE, TrainJob, config_changes, run_job
from ctrdistill.storage import atomic_file
from ctrdistill.strategies.ensemble import GateFitStrategy, TeacherEnsemble
from ctrdistill.strategies.factory import KDOptions, kd_strategy
from ctrdistill.strategies.kd import ENSEMBLE
from ctrdistill.training import distributed
from ctrdistill.training.checkpoint import load_checkpoint
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.device import resolve_device
from ctrdistill.training.speed import model_bytes, side_by_side
from ctrdistill.training.trainer import Trainer, evaluate_outputs

logger = logging.getLogger(__name__)
STUDENT = "/student"  # a key no teacher name can be (names have no "/")


class TeacherSpec(StrictConfig):
    """A finished run directory (`run`), or a model to train first (`model` + `train` overrides
    of the top-level train config)."""

    run: Path | None = Field(None, description="a finished run directory")
    model: ModelSpec | None = Field(None, description="a zoo model to train as the teacher")
    name: Name | None = Field(None, description="default: the run's directory name, or "
                             "teacher<k>-<model>")
    train: dict[str, Any] = Field(default_factory=dict,
                                  description="overrides of the top-level train config")

    @model_validator(mode="after")
    def _check(self) -> TeacherSpec:
        if (self.run is None) == (self.model is None):
            raise ValueError("a teacher is either `run: <run dir>` or `model: {...}`")
        return self


class DistillConfig(StrictConfig):
    name: Name = Field(description="the student run's name")
    data: Path = Field(description="a prepared dataset")
    output_dir: Path = Field(Path("runs"), description="where run directories go")
    teachers: list[TeacherSpec] = Field(default_factory=list, description="the teachers: "
                                        "finished runs or models trained first")
    label_store: Path | None = Field(
        None, description="read teacher logits from a store (`ctrdistill label`) instead of "
        "running teachers: one teacher pass shared by many students")
    label_store_version: int | None = Field(
        None, ge=0, description="read only the partitions this teacher version of the label "
        "store labelled (default: every partition, as listed)")
    student: ModelSpec = Field(default_factory=lambda: model_config({"name": "dnn"}),
                               description="the student model")
    strategy: KDOptions = Field(default_factory=KDOptions, description="how the student learns "
                                "from the teachers")
    stop_on: Literal["valid_auc", "distill"] = Field(
        "valid_auc", description="early-stopping signal: labelled valid AUC, or the label-free "
        "distillation loss on held-out data; `distill` needs train.early_stop (its patience)")
    add_valid_to_train: bool = Field(
        False, description="train the student on the valid split too (needs stop_on: distill); "
        "a fraction of training rows is then held out, labels unused, for stopping")
    holdout_fraction: float = Field(0.1, gt=0, lt=1, description="with add_valid_to_train: the "
                                    "fraction of training rows held out for early stopping")
    train: TrainConfig = Field(default_factory=TrainConfig)
    overwrite: bool = Field(False, description="replace a finished run (and its teachers)")
    tracking: TrackingConfig | None = Field(None, description=TRACKING_HELP)

    @model_validator(mode="after")
    def _check(self) -> DistillConfig:
        if bool(self.teachers) == (self.label_store is not None):
            raise ValueError("give either teachers or a label_store")
        if self.label_store_version is not None and self.label_store is None:
            raise ValueError("label_store_version selects partitions of a label_store; "
                             "give label_store")
        # An explicit request for a stopping signal with stopping switched off is a
        # contradiction, not something to resolve silently.
        if self.stop_on == "distill" and self.train.early_stop is None:
            raise ValueError("stop_on: distill needs train.early_stop (e.g. {patience: 2}); "
                             "with train.early_stop: null nothing would stop on it")
        if self.add_valid_to_train and self.stop_on != "distill":
            raise ValueError("add_valid_to_train needs stop_on: distill (valid AUC is then seen "
                             "in training)")
        if self.train.streaming:
            raise ValueError("distill trains in memory (cached teacher logits); "
                             "set train.streaming: false")
        return self


def _teachers(config: DistillConfig, resume: bool) -> list[tuple[str, Path]]:
    """(name, run dir) of every teacher, training those given as models."""
    runs = []
    for k, spec in enumerate(config.teachers):
        if spec.run is not None:
            runs.append((spec.name or spec.run.name, spec.run))
            continue
        name = spec.name or f"teacher{k}-{spec.model.name}"  # type: ignore[union-attr]
        train_config = TrainConfig.model_validate(config.train.model_dump() | spec.train)
        run = TrainRunConfig(name=name, data=config.data, model=spec.model, train=train_config,
                             output_dir=config.output_dir / f"{config.name}-teachers",
                             overwrite=config.overwrite, tracking=config.tracking)
        out = run.output_dir / name
        if (out / CONFIG_FILE).is_file() and not config.overwrite:
            changed = config_changes(read_yaml(out / CONFIG_FILE, RETRAIN),
                                     run.model_dump(mode="json"))
            if changed:
                raise CtrDistillError(f"{out} exists with another config (differs in: "
                                      f"{', '.join(changed)}); remove it or set overwrite: true")
            logger.info("teacher %s: reusing %s", name, out)
        else:
            train(run, resume=resume)
        runs.append((name, out))
    return runs


def fit_gate(ensemble: TeacherEnsemble, rows: ColumnData, teachers: list[CTRModel] | None = None,
             seed: int = 0, epochs: int = 5) -> list[float]:
    """Fit a learned combiner on labelled rows whose teacher logits are out-of-sample, with the
    one trainer, then freeze it. Returns the mean BCE of every epoch."""
    config = TrainConfig(epochs=epochs, batch_size=1024, lr=1e-2, early_stop=None, lr_plateau=None,
                         embedding_l2=0.0, grad_clip=None, seed=seed, progress=False)
    fit = Trainer(GateFitStrategy(ensemble, teachers or []), config).fit(
        BatchLoader(rows, config.batch_size, shuffle=True, seed=seed), None)
    for parameter in ensemble.parameters():
        parameter.requires_grad_(False)
    losses = [record["train"]["bce"] for record in fit.history]
    logger.info("ensemble '%s' fitted on valid: BCE %.5f -> %.5f", ensemble.kind, losses[0],
                losses[-1])
    return losses


def _split_for_stopping(config: DistillConfig, train_rows: ColumnData, valid: ColumnData
                        ) -> tuple[ColumnData, ColumnData]:
    """(training rows, rows early stopping watches)."""
    if not config.add_valid_to_train:
        return train_rows, valid
    generator = torch.Generator().manual_seed(config.train.seed)
    held = torch.rand(len(train_rows), generator=generator) < config.holdout_fraction
    return ColumnData.concat([train_rows.subset(~held), valid]), train_rows.subset(held)


def _drop_in_sample_ensemble(result: Result, name: str, writes: bool) -> None:
    """With add_valid_to_train, early stopping watches rows held out of the train split, which
    the teachers trained on: the ensemble's figures there are in-sample, not validation. Drop
    them from the history and its curves (the student's own figures there stay: it did not
    train on those rows). Only the rank that `writes` rewrites the run's files."""
    prefix = f"{ENSEMBLE}."
    for record in result.history:
        if "valid" in record:
            record["valid"] = {k: v for k, v in record["valid"].items()
                               if not k.startswith(prefix)}
    if not writes:
        return
    with atomic_file(result.path / "history.json") as tmp:
        tmp.write_text(json.dumps(result.history, indent=1))
    plot_learning_curves({name: result.history}, result.path / "curves.png",
                         best_steps={name: result.metrics["best_step"]},
                         title=f"{name}: early-stopping rows, held out of train (teacher "
                         "ensemble not shown: in-sample there)", rows="held-out train")
    logger.info("run %s: teacher-ensemble figures on the early-stopping rows dropped from the "
                "history (the teachers trained on those rows)", name)


def _teacher_splits(config: DistillConfig, data: PreparedData, resume: bool
                    ) -> tuple[dict[str, ColumnData], list[tuple[str, CTRModel | None]], int]:
    """Every split with teacher outputs attached, the (name, live model or None) teachers, and
    the width of stored hidden vectors (0 when teachers run live).

    Live teachers score each split once here (logits only: hidden vectors are too wide to cache
    in memory, so the teachers run on each batch when those are needed); a label store was
    scored once for all students and may carry hidden vectors.
    """
    splits: dict[str, ColumnData] = {}
    hidden = config.strategy.needs_hidden
    if config.label_store is not None:
        store = LabelStore(config.label_store)
        store.check(data)
        version = config.label_store_version
        for split in SPLITS:
            splits[split] = store.join(data.load(split), split, hidden=hidden,
                                       teacher_version=version)
        # Teachers are named after the newest version read (a stream's store has several).
        used = max(p["teacher_version"] for split in SPLITS
                   for p in store.partitions(split, teacher_version=version))
        logger.info("teacher %s read from %s", "outputs" if hidden else "logits",
                    config.label_store)
        width = splits["train"].optional[TEACHER_HIDDEN].shape[1] if hidden else 0
        return splits, [(Path(t["run"]).name, None) for t in store.teachers(used)], width
    runs = _teachers(config, resume)
    device = resolve_device(config.train.device)
    teachers = [load_checkpoint(path, data.feature_map)[0].to(device) for _, path in runs]
    for split in SPLITS:
        rows = data.load(split)
        frame = pl.DataFrame({"row_id": rows.row_id.numpy(),
                              TEACHER_LOGITS: teacher_logits(teachers, rows)[0]})
        splits[split] = rows.join(frame, [TEACHER_LOGITS])
    logger.info("teacher logits cached for %s",
                ", ".join(f"{s} {len(r):,}" for s, r in splits.items()))
    return splits, [(name, t) for (name, _), t in zip(runs, teachers, strict=True)], 0


def distill(config: DistillConfig | dict[str, Any] | str | Path, resume: bool = False,
            **overrides: Any) -> Result:
    """Distil the configured teachers (or a label store) into the student; `config` is a
    DistillConfig, a mapping or a YAML path. `resume` continues an interrupted run (teachers
    included)."""
    config = resolve(DistillConfig, config, **overrides)
    data = PreparedData(config.data)
    splits, named_teachers, stored_hidden_dim = _teacher_splits(config, data, resume)
    teachers = [t for _, t in named_teachers if t is not None]
    num_teachers = splits["train"].optional[TEACHER_LOGITS].shape[1]

    train_config = config.train
    if train_config.early_stop is not None:
        monitor = "distill" if config.stop_on == "distill" else "auc"
        train_config = train_config.model_copy(
            update={"early_stop": train_config.early_stop.model_copy(update={"monitor": monitor})})
    fit_rows, stop_rows = _split_for_stopping(config, splits["train"], splits["valid"])

    torch.manual_seed(config.train.seed)
    student = build_model(config.student, data.feature_map)
    strategy = kd_strategy(config.strategy, student, teachers, num_teachers, data.feature_map,
                           stored_hidden_dim)
    if config.strategy.gate_fit == "valid" and strategy.ensemble.trainable:
        fit_gate(strategy.ensemble, splits["valid"], teachers, config.train.seed)
    loader = BatchLoader(fit_rows, train_config.batch_size, shuffle=True, seed=train_config.seed)
    # A split the student trained on has no held-out figure to report.
    reports = {"test": splits["test"]} if config.add_valid_to_train else \
        {"valid": splits["valid"], "test": splits["test"]}
    result = run_job(TrainJob(
        config.name, strategy, data, train_config, config.output_dir / config.name,
        config.model_dump(mode="json", by_alias=True), loader=loader, valid=stop_rows,
        reports=reports, overwrite=config.overwrite, resume=resume, tracking=config.tracking))
    if config.add_valid_to_train:
        group = distributed.group(resolve_device(config.train.device))
        _drop_in_sample_ensemble(result, config.name, group is None or group.is_main)

    test = splits["test"]
    rows = []
    costs = []
    # One table's speeds are timed together, at the end, so its speed-ups compare like with like
    timed = side_by_side({**{name: t for name, t in named_teachers if t is not None},
                          STUDENT: strategy.served_model()}, test)
    for k, (name, teacher) in enumerate(named_teachers):
        metrics = evaluate_outputs(test, {"served": test.optional[TEACHER_LOGITS][:, k].numpy()})
        row = {"test": metrics}
        if teacher is not None:
            costs.append({"params": teacher.num_parameters(), "model_bytes": model_bytes(teacher),
                          **timed[name]})
            row |= costs[-1]
        rows.append(result_row(f"teacher {name}", row))
    ensemble = result_row("teacher ensemble", result.metrics, output="ensemble")
    if teachers:
        # Teachers run one after another: their sizes and per-sample times add up.
        ensemble["params"] = (sum(c["params"] for c in costs)
                              + sum(p.numel() for p in strategy.ensemble.parameters()))
        ensemble["model_bytes"] = (sum(c["model_bytes"] for c in costs)
                                   + model_bytes(strategy.ensemble))
        ensemble["inference_samples_per_second"] = 1.0 / sum(
            1.0 / c["inference_samples_per_second"] for c in costs)
        ensemble["latency_ms"] = sum(c["latency_ms"] for c in costs)
    rows.append(ensemble)
    student = result_row(f"student {config.name}", result.metrics) | timed[STUDENT]
    if teachers:
        student["speedup"] = (student["inference_samples_per_second"]
                              / ensemble["inference_samples_per_second"])
    rows.append(student)
    if config.strategy.kind == "aux":
        rows.append(result_row(f"student {config.name}/aux", result.metrics, output="aux"))
    save_table(rows, result.path)  # curves.png is written by the run writer
    result.rows, result.title = rows, f"{config.name}: test split"
    return result
