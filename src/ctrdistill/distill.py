"""`ctrdistill distill`: train or load teachers, score every split with them once, and train a
student by direct or auxiliary distillation from their (possibly gated) ensemble.

Writes `output_dir/name/` (the student's run directory, via `execute`) with `results.{json,md}`:
one row per teacher, the teacher ensemble and the student (plus its aux head), on the test split.
Teachers trained here live in `output_dir/<name>-teachers/` and are reused when their resolved
config is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import polars as pl
import torch
import yaml
from pydantic import ConfigDict, Field, model_validator

from ctrdistill.analysis.report import print_table, result_row, save_table
from ctrdistill.config import StrictConfig
from ctrdistill.data.dataset import ColumnData, PreparedData
from ctrdistill.data.loader import BatchLoader
from ctrdistill.data.schema import FeatureMap
from ctrdistill.errors import CtrDistillError
from ctrdistill.labels.store import LabelStore, teacher_logits
from ctrdistill.models.base import CTRModel
from ctrdistill.models.registry import build_model, model_config
from ctrdistill.strategies.base import Strategy
from ctrdistill.strategies.ensemble import (
    TEACHER_HIDDEN,
    TEACHER_LOGITS,
    Combine,
    GateInput,
    TeacherEnsemble,
    fit_ensemble,
)
from ctrdistill.strategies.kd import AuxDistillStrategy, KDStrategy
from ctrdistill.strategies.losses import Distance
from ctrdistill.training.checkpoint import load_checkpoint
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.run import ModelSpec, RunConfig, RunResult, execute, run_train
from ctrdistill.training.speed import inference_samples_per_second
from ctrdistill.training.trainer import evaluate_outputs

SPLITS = ("train", "valid", "test")


class TeacherSpec(StrictConfig):
    """A finished run directory (`run`), or a model to train first (`model` + `train` overrides
    of the top-level train config)."""

    run: Path | None = None
    model: ModelSpec | None = None
    name: str | None = None
    train: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> TeacherSpec:
        if (self.run is None) == (self.model is None):
            raise ValueError("a teacher is either `run: <run dir>` or `model: {...}`")
        return self


class KDOptions(StrictConfig):
    model_config = ConfigDict(**StrictConfig.model_config, populate_by_name=True)

    kind: Literal["direct", "aux"] = "direct"
    distance: Distance = "bce"
    temperature: float = Field(1.0, gt=0, description="soft-label BCE only")
    t2_scaling: bool = Field(True, description="multiply the soft-label BCE by T^2")
    lambda_: float = Field(1.0, ge=0, alias="lambda", description="weight of the teacher term")
    ensemble: Combine = "mean_logits"
    gate_inputs: list[GateInput] = Field(
        default_factory=lambda: ["embedding", "logits"], min_length=1,
        description="what the gate reads: the sample's embeddings, the teachers' logits, the "
        "teachers' hidden vectors (live teachers, or a store labelled with --hidden)")
    gate_embedding_dim: int = Field(8, ge=1)
    gate_hidden: int = Field(32, ge=1)
    gate_fit: Literal["joint", "valid"] = Field(
        "joint", description="joint: the gate/weights learn with the student on training rows "
        "(the paper); valid: fitted first on the valid split (teacher logits out-of-sample), "
        "then frozen")
    hint: float = Field(0.0, ge=0, description="weight of the hint loss (direct only; 0: off)")

    @model_validator(mode="after")
    def _check(self) -> KDOptions:
        if self.hint and self.kind != "direct":
            raise ValueError("the hint loss applies to direct distillation only")
        if len(set(self.gate_inputs)) != len(self.gate_inputs):
            raise ValueError("gate_inputs lists an input twice")
        return self

    @property
    def needs_hidden(self) -> bool:
        """Whether the teachers' hidden vectors are read (hint loss or a gate fed by them)."""
        return bool(self.hint) or (self.ensemble == "gate" and "hidden" in self.gate_inputs)


class DistillConfig(StrictConfig):
    name: str
    data: Path
    output_dir: Path = Path("runs")
    teachers: list[TeacherSpec] = Field(default_factory=list)
    label_store: Path | None = Field(
        None, description="read teacher logits from a store (`ctrdistill label`) instead of "
        "running teachers: one teacher pass shared by many students")
    label_store_version: int | None = Field(
        None, ge=0, description="read only the partitions this teacher version of the label "
        "store labelled (default: every partition, as listed)")
    student: ModelSpec = Field(default_factory=lambda: model_config({"name": "dnn"}))
    strategy: KDOptions = Field(default_factory=KDOptions)
    stop_on: Literal["valid_auc", "distill"] = Field(
        "valid_auc", description="early-stopping signal: labelled valid AUC, or the label-free "
        "distillation loss on held-out data; `distill` needs train.early_stop (its patience)")
    add_valid_to_train: bool = Field(
        False, description="train the student on the valid split too (needs stop_on: distill); "
        "a fraction of training rows is then held out, labels unused, for stopping")
    holdout_fraction: float = Field(0.1, gt=0, lt=1)
    train: TrainConfig = Field(default_factory=TrainConfig)
    overwrite: bool = False

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


def _teachers(config: DistillConfig, data: PreparedData, log) -> list[tuple[str, Path]]:
    """(name, run dir) of every teacher, training those given as models."""
    runs = []
    for k, spec in enumerate(config.teachers):
        if spec.run is not None:
            runs.append((spec.name or spec.run.name, spec.run))
            continue
        name = spec.name or f"teacher{k}-{spec.model.name}"  # type: ignore[union-attr]
        train = TrainConfig.model_validate(config.train.model_dump() | spec.train)
        run = RunConfig(name=name, data=config.data, output_dir=config.output_dir /
                        f"{config.name}-teachers", model=spec.model, train=train,
                        overwrite=config.overwrite)
        out = run.output_dir / name
        resolved = json.loads(json.dumps(run.model_dump(mode="json"), default=str))
        if (out / "config.yaml").is_file() and not config.overwrite:
            if yaml.safe_load((out / "config.yaml").read_text()) != resolved:
                raise CtrDistillError(f"{out} exists with another config; remove it or set "
                                      "overwrite: true")
            log(f"teacher {name}: reusing {out}")
        else:
            run_train(run, log=log)
        runs.append((name, out))
    return runs


def build_strategy(options: KDOptions, student: CTRModel, teachers: list[CTRModel],
                   num_teachers: int, feature_map: FeatureMap, valid: ColumnData | None = None,
                   seed: int = 0, log=print, teacher_hidden_dim: int = 0) -> Strategy:
    """The KD strategy `options` describe. Teachers may be empty when batches carry cached or
    stored teacher outputs (then `teacher_hidden_dim` gives the width of stored hidden vectors);
    `valid` is needed for `gate_fit: valid`."""
    o = options
    hidden_dim = teacher_hidden_dim or sum(t.hidden_dim for t in teachers)
    if o.needs_hidden and not hidden_dim:
        raise CtrDistillError("the hint loss and a gate fed by hidden vectors need the teachers' "
                              "hidden vectors: live teachers, or a store labelled with --hidden")
    ensemble = TeacherEnsemble(o.ensemble, num_teachers, feature_map, o.gate_inputs,
                               o.gate_embedding_dim, o.gate_hidden, hidden_dim)
    if o.gate_fit == "valid" and ensemble.trainable:
        if valid is None:
            raise CtrDistillError("gate_fit: valid needs a labelled validation split")
        losses = fit_ensemble(ensemble, valid, teachers, seed=seed)
        log(f"ensemble '{o.ensemble}' fitted on valid: BCE {losses[0]:.5f} -> {losses[-1]:.5f}")
    common = dict(distance=o.distance, temperature=o.temperature, t2_scaling=o.t2_scaling,
                  weight=o.lambda_)
    if o.kind == "aux":
        return AuxDistillStrategy(student, teachers, ensemble, **common)
    return KDStrategy(student, teachers, ensemble, hint=o.hint, teacher_hidden_dim=hidden_dim,
                      **common)


def _split_for_stopping(config: DistillConfig, train: ColumnData, valid: ColumnData
                        ) -> tuple[ColumnData, ColumnData]:
    """(training rows, rows early stopping watches)."""
    if not config.add_valid_to_train:
        return train, valid
    generator = torch.Generator().manual_seed(config.train.seed)
    held = torch.rand(len(train), generator=generator) < config.holdout_fraction
    return ColumnData.concat([train.subset(~held), valid]), train.subset(held)


def _teacher_splits(config: DistillConfig, data: PreparedData, log
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
        log(f"teacher {'outputs' if hidden else 'logits'} read from {config.label_store}")
        width = splits["train"].optional[TEACHER_HIDDEN].shape[1] if hidden else 0
        return splits, [(Path(t["run"]).name, None) for t in store.teachers(used)], width
    runs = _teachers(config, data, log)
    teachers = [load_checkpoint(path, data.feature_map)[0] for _, path in runs]
    for split in SPLITS:
        rows = data.load(split)
        frame = pl.DataFrame({"row_id": rows.row_id.numpy(),
                              TEACHER_LOGITS: teacher_logits(teachers, rows)[0]})
        splits[split] = rows.join(frame, [TEACHER_LOGITS])
    log(f"teacher logits cached for {', '.join(f'{s} {len(r):,}' for s, r in splits.items())}")
    return splits, [(name, t) for (name, _), t in zip(runs, teachers, strict=True)], 0


def distill(config: DistillConfig, log=print) -> RunResult:
    data = PreparedData(config.data)
    splits, named_teachers, stored_hidden_dim = _teacher_splits(config, data, log)
    teachers = [t for _, t in named_teachers if t is not None]
    num_teachers = splits["train"].optional[TEACHER_LOGITS].shape[1]

    train_config = config.train
    if train_config.early_stop is not None:
        monitor = "distill" if config.stop_on == "distill" else "auc"
        train_config = train_config.model_copy(
            update={"early_stop": train_config.early_stop.model_copy(update={"monitor": monitor})})
    fit_rows, stop_rows = _split_for_stopping(config, splits["train"], splits["valid"])

    torch.manual_seed(config.train.seed)
    student = build_model(config.student, data.feature_map, sparse=config.train.sparse_embedding)
    strategy = build_strategy(config.strategy, student, teachers, num_teachers,
                              data.feature_map, splits["valid"], config.train.seed, log,
                              stored_hidden_dim)
    loader = BatchLoader(fit_rows, train_config.batch_size, shuffle=True, seed=train_config.seed)
    result = execute(config.name, strategy, data, train_config, config.output_dir / config.name,
                     config.model_dump(mode="json", by_alias=True), loader=loader,
                     valid=stop_rows, reports={"valid": splits["valid"], "test": splits["test"]},
                     overwrite=config.overwrite, log=log)

    test = splits["test"]
    rows = []
    speeds = []
    for k, (name, teacher) in enumerate(named_teachers):
        metrics = evaluate_outputs(test, {"served": test.optional[TEACHER_LOGITS][:, k].numpy()})
        row = {"test": metrics}
        if teacher is not None:
            speeds.append(inference_samples_per_second(teacher, test))
            row |= {"params": teacher.num_parameters(),
                    "inference_samples_per_second": speeds[-1]}
        rows.append(result_row(f"teacher {name}", row))
    ensemble = result_row("teacher ensemble", result.metrics, output="ensemble")
    if teachers:
        ensemble["params"] = (sum(t.num_parameters() for t in teachers)
                              + sum(p.numel() for p in strategy.ensemble.parameters()))
        # Teachers run one after another: their per-sample times add up.
        ensemble["inference_samples_per_second"] = 1.0 / sum(1.0 / s for s in speeds)
    rows.append(ensemble)
    rows.append(result_row(f"student {config.name}", result.metrics))
    if config.strategy.kind == "aux":
        rows.append(result_row(f"student {config.name}/aux", result.metrics, output="aux"))
    save_table(rows, result.path)  # curves.png is written by execute
    print_table(rows, f"{config.name}: test split")
    result.extra["rows"] = rows
    return result
