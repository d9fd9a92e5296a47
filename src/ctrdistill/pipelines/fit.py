"""One run, many methods: the config every training run shares and the one path that fits it.

A run config is the base (name, data, output_dir, train, overwrite, tracking, resume) plus a
`method` chosen by its kind (plain, kd, mutual, kdef, or one registered with
`register_method`). `run` builds the method, fits its strategy with the one trainer, evaluates
it and writes the run directory atomically: a run appears only when it has finished, with its
results table, and is never rewritten. Until then it is built in a hidden partial directory
that also holds the resume state, saved at every evaluation, so a killed run continues where it
stopped (`resume: true`). Under torchrun every rank trains and evaluates, rank 0 writes; a group
restarted by torchrun resumes.

The verbs `train`, `distill`, `mutual` and `kdef` are this path with the method fixed; their
config files may also spell the method's keys at the top level (`model:` for train).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field, SerializeAsAny, field_validator, model_validator

from ctrdistill.analysis.report import markdown_table
from ctrdistill.config import Name, StrictConfig
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.encode import copy_state, state_problem
from ctrdistill.errors import CtrDistillError
from ctrdistill.pipelines.common import Result, config_changes, flatten, resolve
from ctrdistill.pipelines.loaders import check_labels, train_loader
from ctrdistill.pipelines.methods import MethodBuild, MethodConfig, method_class, method_config
from ctrdistill.pipelines.summary import parameter_counts, summary
from ctrdistill.pipelines.tracking import TRACKING_HELP, TrackingConfig, log_run
from ctrdistill.rundir import RunDirectory, plain
from ctrdistill.training import distributed
from ctrdistill.training.checkpoint import save_checkpoint
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.device import resolve_device
from ctrdistill.training.speed import batch1_latency_ms, inference_samples_per_second, model_bytes
from ctrdistill.training.trainer import Trainer

logger = logging.getLogger(__name__)

class RunConfig(StrictConfig):
    """One training run, saved as `output_dir/name/`: the base keys and a method."""

    #: A verb's class fixes the method's kind and accepts its keys at the top level.
    verb_kind: ClassVar[str | None] = None

    name: Name = Field(description="the run's name: its directory under output_dir")
    data: Path = Field(description="a prepared dataset (ctrdistill prepare)")
    output_dir: Path = Field(Path("runs"), description="where run directories go")
    train: TrainConfig = Field(default_factory=TrainConfig)
    overwrite: bool = Field(False, description="replace a finished run of the same name")
    tracking: TrackingConfig | None = Field(None, description=TRACKING_HELP)
    resume: bool = Field(False, description="continue an interrupted run of the same config "
                         "from its last checkpoint (without it, a leftover is removed)")
    method: SerializeAsAny[MethodConfig] = Field(
        description="what the run trains: {kind: plain | kd | mutual | kdef | a registered "
        "method, ...its keys}")

    @model_validator(mode="before")
    @classmethod
    def _flat_spelling(cls, data: Any) -> Any:
        return cls.normalized(data)

    @classmethod
    def normalized(cls, data: Any) -> Any:
        if cls.verb_kind is None or not isinstance(data, dict):
            return data
        if "method" not in data:
            keys = method_class(cls.verb_kind).model_fields
            method = {k: v for k, v in data.items() if k in keys}
            return {k: v for k, v in data.items() if k not in keys} | {
                "method": {"kind": cls.verb_kind, **method}}
        method = data["method"]
        kind = method.kind if isinstance(method, MethodConfig) else \
            method.get("kind", cls.verb_kind) if isinstance(method, dict) else None
        if kind != cls.verb_kind:
            raise ValueError(f"this verb runs method '{cls.verb_kind}', the config's method is "
                             f"'{kind}': use its verb, or cd.run / `ctrdistill run`")
        if isinstance(method, dict):
            data = data | {"method": {"kind": kind, **method}}
        return data

    @classmethod
    def user_keys(cls) -> list[str]:
        if cls.verb_kind is None:
            return super().user_keys()
        method = method_class(cls.verb_kind).model_fields
        return sorted({*super().user_keys(), *(f.alias or n for n, f in method.items())}
                      - {"kind"})

    @classmethod
    def user_location(cls, loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
        flat = cls.verb_kind is not None and isinstance(data, dict) and "method" not in data
        return loc[1:] if flat and loc[:1] == ("method",) and len(loc) > 1 else loc

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> MethodConfig:
        return method_config(value)

    @model_validator(mode="after")
    def _train_for_method(self) -> RunConfig:
        train = self.method.resolve_train(self.train, self.method.model_fields_set)
        if train.early_stop is not None:
            train.early_stop.check(self.method.outputs(), self.method.held_out_terms())
        # Set without re-validating the whole model (validate_assignment would recurse here).
        self.__dict__["train"] = train
        return self


class TrainRunConfig(RunConfig):
    """`ctrdistill train`: one model trained on hard labels (`model:` at the top level)."""

    verb_kind = "plain"


class DistillConfig(RunConfig):
    """`ctrdistill distill`: a student distilled from teachers or a label store."""

    verb_kind = "kd"


class MutualConfig(RunConfig):
    """`ctrdistill mutual`: peers trained together with the mutual-learning term."""

    verb_kind = "mutual"


class KDEFConfig(RunConfig):
    """`ctrdistill kdef`: a KDEF ensemble of sub-networks (or its baselines)."""

    verb_kind = "kdef"


def _resume_state(partial: RunDirectory, config: dict[str, Any], name: str,
                  resume: bool) -> dict[str, Any] | None:
    if not resume or not partial.resume_state.is_file():
        if resume:
            logger.info("run %s: nothing to resume, starting afresh", name)
        return None
    changed = config_changes(partial.config(), config)
    if changed:
        raise CtrDistillError(f"{partial.path}: the interrupted run was started with another "
                              f"config (differs in: {', '.join(changed)}); resume with the same "
                              "config or start afresh without resume")
    return partial.load_resume_state()


@contextmanager
def _directory(out: Path, config: RunConfig, group: distributed.Group | None
               ) -> Iterator[RunDirectory]:
    """The partial directory of the run: made (and renamed into place at the end) by rank 0
    alone; the other ranks of a DDP group only read its resume state."""
    if group is None or group.is_main:
        with RunDirectory.build(out, overwrite=config.overwrite, resume=config.resume) as tmp:
            yield tmp
    else:
        yield RunDirectory(out).partial
    if group is not None:
        distributed.barrier()  # the finished run is in place for every rank


def _hide(history: list[dict[str, Any]], prefixes: tuple[str, ...]) -> list[dict[str, Any]]:
    if not prefixes:
        return history
    return [record | {"valid": {k: v for k, v in record["valid"].items()
                                if not k.startswith(prefixes)}} if "valid" in record else record
            for record in history]


def run(config: RunConfig | dict[str, Any] | str | Path,
        on_evaluate: Callable[[dict[str, Any]], None] | None = None,
        **overrides: Any) -> Result:
    """Fit `config`'s method and write its run directory.

    `config` is a RunConfig, a mapping or a YAML path; keyword arguments override its
    top-level keys. `on_evaluate` sees every evaluation's record; an exception it raises stops
    the run, which writes nothing."""
    config = resolve(RunConfig, config, **overrides)
    if distributed.restarted():
        config = config.model_copy(update={"resume": True})
    data = PreparedData(config.data)
    problem = state_problem(data.path)
    if problem:  # found now, not after training when the run copies it
        raise CtrDistillError(problem)
    torch.manual_seed(config.train.seed)
    build = config.method.build(config, data)
    return _fit(config, data, build, on_evaluate)


def _fit(config: RunConfig, data: PreparedData, build: MethodBuild,
         on_evaluate: Callable[[dict[str, Any]], None] | None) -> Result:
    name, train = config.name, config.train
    device = resolve_device(train.device)
    group = distributed.group(device)
    loader = build.loader or train_loader(data, train)
    valid_split = data.load("valid") if build.valid is None or build.reports is None else None
    valid = build.valid if build.valid is not None else valid_split
    reports = build.reports if build.reports is not None else {"valid": valid_split,
                                                               "test": data.load("test")}
    watched = {"early-stopping validation": valid} if build.valid is not None else {}
    check_labels(name, loader, {**reports, **watched})
    recorded = config.model_dump(mode="json", by_alias=True)
    main = group is None or group.is_main
    out = RunDirectory(config.output_dir / name)
    strategy = build.strategy
    with _directory(out.path, config, group) as tmp:
        if main:
            resume = _resume_state(tmp, recorded, name, config.resume)
            tmp.write_config(recorded)
        if group:
            distributed.barrier()  # rank 0 has kept or emptied the partial and checked it
        if not main:
            resume = _resume_state(tmp, recorded, name, config.resume)
        logger.info("run %s: %s training rows, %s", name, f"{loader.num_rows:,}",
                    parameter_counts(strategy))

        trainer = Trainer(strategy, train)
        fit = trainer.fit(loader, valid, resume=resume,
                          checkpoint=lambda state: tmp.save_state(tmp.resume_state, state),
                          on_evaluate=on_evaluate)
        metrics: dict[str, Any] = {split: trainer.evaluate(rows) for split, rows in reports.items()}
        history = _hide(fit.history, build.hide)
        if not main:
            return Result(out.path, metrics, history=history)
        served = strategy.served_model()
        first = next(iter(reports.values()))
        metrics |= {"params": served.num_parameters(),
                    "train_samples_per_second": fit.samples_per_second,
                    "model_bytes": model_bytes(served),
                    "inference_samples_per_second": inference_samples_per_second(served, first),
                    "latency_ms": batch1_latency_ms(served, first), "steps": fit.steps,
                    "stopped_early": fit.stopped_early,
                    "best_step": fit.best["step"] if fit.best else None}
        rows = (build.rows or config.method.default_rows(name))(metrics)
        tmp.write_data(data.path, data.fingerprint(("train",)))
        tmp.write_history(history)
        tmp.write_metrics(metrics)
        for output, model in strategy.servable_models().items():
            save_checkpoint(tmp.checkpoint(output), model, data.feature_map)
        copy_state(data.path, tmp.path)  # the run alone can then score raw logs and be exported
        tmp.save_state(tmp.strategy_state, strategy.trained_state("cpu"))  # loads anywhere
        from ctrdistill.analysis.plots import plot_learning_curves  # matplotlib: only now

        plot_learning_curves({name: history}, tmp.curves, best_steps={name: metrics["best_step"]},
                             **(build.curves or {}))
        tmp.write_results(rows, markdown_table(rows))
        tmp.write_summary(summary(name, metrics, parameter_counts(strategy), recorded))
        tmp.resume_state.unlink(missing_ok=True)  # finished: nothing left to resume
    if config.tracking is not None:
        log_run(config.tracking, name, out.path, flatten(plain(recorded)), metrics, history)
    return Result(out.path, metrics, rows, history, f"{name}: test split")


def run_verb(config_class: type[RunConfig]) -> Callable[..., Result]:
    """The function of a verb whose config class fixes the method (`train`, `distill`, ...)."""

    def verb(config: RunConfig | dict[str, Any] | str | Path,
             on_evaluate: Callable[[dict[str, Any]], None] | None = None,
             **overrides: Any) -> Result:
        return run(resolve(config_class, config, **overrides), on_evaluate=on_evaluate)

    verb.__doc__ = (f"{config_class.__doc__}\n\n`config` is a {config_class.__name__}, a mapping "
                    "or a YAML path; keyword arguments override its top-level keys (e.g. "
                    "resume=True). See `run`.")
    return verb


train = run_verb(TrainRunConfig)
distill = run_verb(DistillConfig)
mutual = run_verb(MutualConfig)
kdef = run_verb(KDEFConfig)
