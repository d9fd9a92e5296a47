"""`kd` (`ctrdistill distill`): train or load teachers, score every split with them once, and
train a student by direct or auxiliary distillation from their (possibly gated) ensemble.

The student's run directory holds the results table: one row per teacher, the teacher
ensemble and the student (plus its aux head), on the test split. Teachers trained here live in
`output_dir/<name>-teachers/` and are reused when their resolved config is unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
import torch
from pydantic import Field, model_validator

from ctrdistill.analysis.report import result_row
from ctrdistill.config import Name, StrictConfig
from ctrdistill.data.batch import TEACHER_HIDDEN, TEACHER_LOGITS
from ctrdistill.data.dataset import SPLITS, ColumnData, PreparedData
from ctrdistill.data.loader import BatchLoader
from ctrdistill.errors import CtrDistillError
from ctrdistill.labels.store import LabelStore, teacher_logits
from ctrdistill.models.base import CTRModel
from ctrdistill.models.registry import ModelSpec, build_model, model_config
from ctrdistill.pipelines.common import config_changes
from ctrdistill.pipelines.loaders import place
from ctrdistill.pipelines.methods import MethodBuild, MethodConfig, register_method
from ctrdistill.rundir import RunDirectory
from ctrdistill.strategies.ensemble import GateFitStrategy, TeacherEnsemble
from ctrdistill.strategies.factory import KDOptions, kd_strategy
from ctrdistill.strategies.kd import ENSEMBLE
from ctrdistill.training.checkpoint import load_checkpoint
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.device import resolve_device
from ctrdistill.training.speed import model_bytes, side_by_side
from ctrdistill.training.trainer import Trainer, evaluate_outputs

if TYPE_CHECKING:
    from ctrdistill.pipelines.fit import RunConfig

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


@register_method
class KDMethod(MethodConfig):
    kind: Literal["kd"] = Field(
        "kd", description="the method: a student distilled from teachers or a label store")
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
        "distillation loss on held-out data; `distill` needs train.early_stop (its patience). "
        "It sets train.early_stop.monitor; an explicit monitor that contradicts it is an error")
    add_valid_to_train: bool = Field(
        False, description="train the student on the valid split too (needs stop_on: distill); "
        "a fraction of training rows is then held out, labels unused, for stopping")
    holdout_fraction: float = Field(0.1, gt=0, lt=1, description="with add_valid_to_train: the "
                                    "fraction of training rows held out for early stopping")

    @model_validator(mode="after")
    def _check(self) -> KDMethod:
        if bool(self.teachers) == (self.label_store is not None):
            raise ValueError("give either teachers or a label_store")
        if self.label_store_version is not None and self.label_store is None:
            raise ValueError("label_store_version selects partitions of a label_store; "
                             "give label_store")
        if self.add_valid_to_train and self.stop_on != "distill":
            raise ValueError("add_valid_to_train needs stop_on: distill (valid AUC is then seen "
                             "in training)")
        return self

    def outputs(self) -> list[str]:
        return [ENSEMBLE, "aux"] if self.strategy.kind == "aux" else [ENSEMBLE]

    def held_out_terms(self) -> list[str]:
        return ["distill"]

    def resolve_train(self, train: TrainConfig, given: set[str]) -> TrainConfig:
        if train.streaming:
            raise ValueError("distill trains in memory (cached teacher logits); "
                             "set train.streaming: false")
        stop = train.early_stop
        if stop is None:
            # An explicit request for a stopping signal with stopping switched off is a
            # contradiction, not something to resolve silently.
            if self.stop_on == "distill":
                raise ValueError("stop_on: distill needs train.early_stop (e.g. {patience: 2}); "
                                 "with train.early_stop: null nothing would stop on it")
            return train
        on_distill = stop.quantities() == ["distill"]
        if "monitor" in stop.model_fields_set and "stop_on" in given:
            if on_distill != (self.stop_on == "distill"):
                raise ValueError(f"stop_on: {self.stop_on} contradicts train.early_stop.monitor: "
                                 f"{stop.monitor}; give one of them (stop_on sets the monitor)")
            return train
        if "monitor" in stop.model_fields_set:  # the monitor implies the stopping signal
            if self.add_valid_to_train and not on_distill:
                raise ValueError("add_valid_to_train needs the monitor 'distill' (valid AUC is "
                                 "then seen in training)")
            return train
        monitor = "distill" if self.stop_on == "distill" else "auc"
        return train.model_copy(update={"early_stop": stop.model_copy(update={"monitor": monitor})})

    # --- building -------------------------------------------------------------------------
    def _teacher_runs(self, run: RunConfig) -> list[tuple[str, Path]]:
        """(name, run dir) of every teacher, training those given as models."""
        from ctrdistill.pipelines.fit import TrainRunConfig
        from ctrdistill.pipelines.fit import run as fit_run

        base = run.train
        if base.early_stop is not None and base.early_stop.quantities() == ["distill"]:
            # The distillation loss is the student's signal; a teacher stops on its AUC.
            base = base.model_copy(update={"early_stop": base.early_stop.model_copy(
                update={"monitor": "auc"})})
        runs = []
        for k, spec in enumerate(self.teachers):
            if spec.run is not None:
                runs.append((spec.name or spec.run.name, spec.run))
                continue
            name = spec.name or f"teacher{k}-{spec.model.name}"  # type: ignore[union-attr]
            train_config = TrainConfig.model_validate(base.model_dump() | spec.train)
            teacher = TrainRunConfig(name=name, data=run.data, model=spec.model,
                                     train=train_config,
                                     output_dir=run.output_dir / f"{run.name}-teachers",
                                     overwrite=run.overwrite, tracking=run.tracking,
                                     resume=run.resume)
            out = RunDirectory(teacher.output_dir / name)
            saved = out.config()
            if saved and not run.overwrite:
                changed = config_changes(saved, teacher.model_dump(mode="json"))
                if changed:
                    raise CtrDistillError(f"{out.path} exists with another config (differs in: "
                                          f"{', '.join(changed)}); remove it or set overwrite: "
                                          "true")
                logger.info("teacher %s: reusing %s", name, out.path)
            else:
                fit_run(teacher)
            runs.append((name, out.path))
        return runs

    def _teacher_splits(self, run: RunConfig, data: PreparedData
                        ) -> tuple[dict[str, ColumnData], list[tuple[str, CTRModel | None]], int]:
        """Every split with teacher outputs attached, the (name, live model or None) teachers,
        and the width of stored hidden vectors (0 when teachers run live).

        Live teachers score each split once here (logits only: hidden vectors are too wide to
        cache in memory, so the teachers run on each batch when those are needed); a label store
        was scored once for all students and may carry hidden vectors."""
        splits: dict[str, ColumnData] = {}
        hidden = self.strategy.needs_hidden
        if self.label_store is not None:
            store = LabelStore(self.label_store)
            store.check(data)
            version = self.label_store_version
            for split in SPLITS:
                splits[split] = store.join(data.load(split), split, hidden=hidden,
                                           teacher_version=version)
            # Teachers are named after the newest version read (a stream's store has several).
            used = max(p["teacher_version"] for split in SPLITS
                       for p in store.partitions(split, teacher_version=version))
            logger.info("teacher %s read from %s", "outputs" if hidden else "logits",
                        self.label_store)
            width = splits["train"].optional[TEACHER_HIDDEN].shape[1] if hidden else 0
            return splits, [(Path(t["run"]).name, None) for t in store.teachers(used)], width
        runs = self._teacher_runs(run)
        device = resolve_device(run.train.device)
        teachers = [load_checkpoint(RunDirectory(path).checkpoint(), data.feature_map)[0]
                    .to(device) for _, path in runs]
        for split in SPLITS:
            rows = data.load(split)
            frame = pl.DataFrame({"row_id": rows.row_id.numpy(),
                                  TEACHER_LOGITS: teacher_logits(teachers, rows)[0]})
            splits[split] = rows.join(frame, [TEACHER_LOGITS])
        logger.info("teacher logits cached for %s",
                    ", ".join(f"{s} {len(r):,}" for s, r in splits.items()))
        return splits, [(name, t) for (name, _), t in zip(runs, teachers, strict=True)], 0

    def _split_for_stopping(self, seed: int, train_rows: ColumnData, valid: ColumnData
                            ) -> tuple[ColumnData, ColumnData]:
        """(training rows, rows early stopping watches)."""
        if not self.add_valid_to_train:
            return train_rows, valid
        generator = torch.Generator().manual_seed(seed)
        held = torch.rand(len(train_rows), generator=generator) < self.holdout_fraction
        return ColumnData.concat([train_rows.subset(~held), valid]), train_rows.subset(held)

    def build(self, run: RunConfig, data: PreparedData) -> MethodBuild:
        splits, named_teachers, stored_hidden_dim = self._teacher_splits(run, data)
        teachers = [t for _, t in named_teachers if t is not None]
        num_teachers = splits["train"].optional[TEACHER_LOGITS].shape[1]
        fit_rows, stop_rows = self._split_for_stopping(run.train.seed, splits["train"],
                                                       splits["valid"])
        torch.manual_seed(run.train.seed)  # teachers trained here drew from the generator
        student = build_model(self.student, data.feature_map)
        strategy = kd_strategy(self.strategy, student, teachers, num_teachers, data.feature_map,
                               stored_hidden_dim)
        if self.strategy.gate_fit == "valid" and strategy.ensemble.trainable:
            fit_gate(strategy.ensemble, splits["valid"], teachers, run.train.seed)
        loader = BatchLoader(place(fit_rows, resolve_device(run.train.device)),
                             run.train.batch_size, shuffle=True, seed=run.train.seed)
        # A split the student trained on has no held-out figure to report.
        reports = {"test": splits["test"]} if self.add_valid_to_train else \
            {"valid": splits["valid"], "test": splits["test"]}
        build = MethodBuild(strategy, loader=loader, valid=stop_rows, reports=reports,
                            rows=self._rows(run.name, splits["test"], named_teachers, strategy))
        if self.add_valid_to_train:
            # Early stopping watches rows held out of the train split, which the teachers
            # trained on: the ensemble's figures there are in-sample, not validation.
            logger.info("teacher-ensemble figures on the early-stopping rows of run %s are left "
                        "out of its history (the teachers trained on those rows)", run.name)
            build.hide = (f"{ENSEMBLE}.",)
            build.curves = {"title": f"{run.name}: early-stopping rows, held out of train "
                            "(teacher ensemble not shown: in-sample there)",
                            "rows": "held-out train"}
        return build

    def _rows(self, name: str, test: ColumnData, named_teachers: list[tuple[str, CTRModel | None]],
              strategy: Any):
        def rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
            table, costs = [], []
            # One table's speeds are timed together, at the end: speed-ups compare like with like
            timed = side_by_side({**{n: t for n, t in named_teachers if t is not None},
                                  STUDENT: strategy.served_model()}, test)
            for k, (teacher_name, teacher) in enumerate(named_teachers):
                logits = test.optional[TEACHER_LOGITS][:, k].numpy()
                row: dict[str, Any] = {"test": evaluate_outputs(test, {"served": logits})}
                if teacher is not None:
                    costs.append({"params": teacher.num_parameters(),
                                  "model_bytes": model_bytes(teacher), **timed[teacher_name]})
                    row |= costs[-1]
                table.append(result_row(f"teacher {teacher_name}", row))
            ensemble = result_row("teacher ensemble", metrics, output=ENSEMBLE)
            if costs:
                # Teachers run one after another: their sizes and per-sample times add up.
                ensemble["params"] = (sum(c["params"] for c in costs)
                                      + sum(p.numel() for p in strategy.ensemble.parameters()))
                ensemble["model_bytes"] = (sum(c["model_bytes"] for c in costs)
                                           + model_bytes(strategy.ensemble))
                ensemble["inference_samples_per_second"] = 1.0 / sum(
                    1.0 / c["inference_samples_per_second"] for c in costs)
                ensemble["latency_ms"] = sum(c["latency_ms"] for c in costs)
            student = result_row(f"student {name}", metrics) | timed[STUDENT]
            if costs:
                student["speedup"] = (student["inference_samples_per_second"]
                                      / ensemble["inference_samples_per_second"])
            table += [ensemble, student]
            if self.strategy.kind == "aux":
                table.append(result_row(f"student {name}/aux", metrics, output="aux"))
            return table
        return rows


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
