"""`ctrdistill search`: choose a teacher under a budget with Optuna, scoring each candidate by
its own validation AUC (`objective: teacher`) or by the validation AUC of the fixed student
distilled from it (`objective: student`, a cheap proxy run, the top k confirmed in full).

Writes `output_dir/name/`: `study.db` (the Optuna study, unless `storage` names another),
`teachers/<family>-<hash>/` (run directories named by a hash of the resolved teacher config,
reused by any later trial or search), `labels/<hash>/` (each teacher's label store),
`students/`, `trials.{md,json}`, the plots, and `best_teacher` (a link to the chosen run).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ctrdistill.config import Name, StrictConfig
from ctrdistill.data.dataset import PreparedData
from ctrdistill.errors import CtrDistillError
from ctrdistill.models.base import ModelConfig
from ctrdistill.models.registry import ModelSpec, model_config
from ctrdistill.pipelines.common import Result, resolve
from ctrdistill.pipelines.fit import DistillConfig, TrainRunConfig, distill, train
from ctrdistill.pipelines.label import label
from ctrdistill.pipelines.search_plots import save_plots, save_trials
from ctrdistill.pipelines.search_space import SearchSpace, check_space, grid, sample
from ctrdistill.rundir import RunDirectory
from ctrdistill.storage import built_in_place
from ctrdistill.strategies.factory import KDOptions
from ctrdistill.training.config import TrainConfig

logger = logging.getLogger(__name__)


class SearchConfig(StrictConfig):
    """A teacher search: the space, the fixed student, the objective and the budget."""

    name: Name = Field(description="the search's directory under output_dir")
    data: Path = Field(description="a prepared dataset")
    output_dir: Path = Field(Path("searches"), description="where search directories go")
    space: SearchSpace = Field(description="what a teacher may be")
    model_defaults: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per family, fixed hyperparameters the space does not "
        "vary (e.g. {dcnv2: {num_cross_layers: 2}})")
    train: TrainConfig = Field(default_factory=TrainConfig, description="the teachers' training "
                               "(the space overrides lr, epochs, max_steps); eval_every_steps "
                               "sets the pruner's rungs")
    objective: Literal["teacher", "student"] = Field(
        "student", description="maximise the teacher's valid AUC, or the distilled student's")
    student: ModelSpec = Field(default_factory=lambda: model_config({"name": "dnn"}),
                               description="the fixed student (any model config)")
    strategy: KDOptions = Field(default_factory=KDOptions, description="how the student learns")
    student_train: TrainConfig = Field(default_factory=TrainConfig,
                                       description="the student's full training")
    proxy: dict[str, Any] = Field(
        default_factory=lambda: {"max_steps": 100}, description="overrides of student_train "
        "for the cheap student run of every trial (e.g. {max_steps: 100}); {} runs it in full")
    confirm_top: int = Field(0, ge=0, description="re-train the student in full from the best "
                             "k teachers (objective student); the best confirmed one wins")
    trials: int | None = Field(None, ge=1, description="finished (complete or pruned) trials "
                               "the study should hold, all workers together")
    seconds: float | None = Field(None, gt=0, description="wall-clock budget of this call")
    sampler: Literal["tpe", "random", "grid"] = Field(
        "tpe", description="Optuna's sampler; grid visits the space's points (choices, or "
        "ranges `step` apart) in a seeded random order and ends the search when all are done")
    pruner: Literal["none", "successive_halving", "hyperband"] = Field(
        "successive_halving", description="multi-fidelity pruning on the teacher's valid AUC "
        "at each evaluation (step = rungs)")
    seed: int | None = Field(None, description="the sampler's seed (give each worker its own, "
                             "or none)")
    resume: bool = Field(False, description="continue the study in the search directory (a "
                         "new search refuses to reuse one)")
    storage: str | None = Field(None, description="an Optuna RDB URL shared by workers "
                                "(default: sqlite:///<search dir>/study.db)")
    heartbeat_seconds: int = Field(60, ge=1, description="a trial whose worker is silent for "
                                   "twice this long is failed and retried by the next worker")

    @model_validator(mode="after")
    def _check(self) -> SearchConfig:
        if self.trials is None and self.seconds is None:
            raise ValueError("give a budget: trials, seconds or both")
        TrainConfig.model_validate(self.student_train.model_dump() | self.proxy)
        return self


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise CtrDistillError("ctrdistill search needs Optuna: pip install "
                              "'ctrdistill[search]'") from None
    return optuna


def _key(data: Path, model: ModelConfig, train_config: TrainConfig) -> str:
    resolved = {"data": str(data.resolve()), "model": model.model_dump(mode="json"),
                "train": train_config.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:12]


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """One worker at a time makes the output `path` stands for (others wait, then reuse it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _valid_auc(run: Path) -> float:
    return float(RunDirectory(run).metrics()["valid"]["auc"])


class _Objective:
    def __init__(self, config: SearchConfig, root: Path, optuna: Any) -> None:
        self.config, self.root, self.optuna = config, root, optuna

    def teacher(self, model: ModelConfig, train_config: TrainConfig,
                report: Callable[[dict[str, Any]], None]) -> tuple[Path, bool]:
        """The teacher's run directory, trained unless a trial already did; True if trained.
        `report` sees each evaluation as it happens (a pruner may stop the training there) or,
        for a teacher trained before, each evaluation of its history."""
        key = _key(self.config.data, model, train_config)
        out = self.root / "teachers" / f"{model.name}-{key}"
        with _lock(out):
            if RunDirectory(out).is_finished():
                for record in RunDirectory(out).history():
                    report(record)
                return out, False
            train(TrainRunConfig(name=out.name, data=self.config.data, output_dir=out.parent,
                                 model=model, train=train_config, overwrite=True),
                  on_evaluate=report)
            return out, True

    def student(self, teacher: Path, full: bool) -> Path:
        """The student distilled from `teacher`'s label store (made once)."""
        c = self.config
        store = self.root / "labels" / teacher.name
        with _lock(store):
            if not (store / "manifest.json").is_file():
                label(teachers=[teacher], data=c.data, output=store, progress=False,
                      device=c.train.device)
        name = f"{teacher.name}-{'full' if full else 'proxy'}"
        out = self.root / "students" / name
        train_config = c.student_train if full else TrainConfig.model_validate(
            c.student_train.model_dump() | c.proxy)
        with _lock(out):
            if not RunDirectory(out).is_finished():
                distill(DistillConfig(name=name, data=c.data, output_dir=out.parent,
                                      label_store=store, student=c.student, strategy=c.strategy,
                                      train=train_config, overwrite=True))
        return out

    def __call__(self, trial: Any) -> float:
        started = time.perf_counter()
        model, train_config = sample(trial, self.config.space, self.config.train,
                                     self.config.model_defaults)
        trial.set_user_attr("teacher", model.model_dump(mode="json"))

        def report(record: dict[str, Any]) -> None:
            """Multi-fidelity pruning on the teacher's valid AUC, at each evaluation's step."""
            if "valid" not in record:
                return
            trial.report(record["valid"]["auc"], record["step"])
            if trial.should_prune():
                trial.set_user_attr("pruned_at", record["step"])
                trial.set_user_attr("pruned_at_rows", record["samples"])
                trial.set_user_attr("teacher_auc", record["valid"]["auc"])
                trial.set_user_attr("seconds", time.perf_counter() - started)
                raise self.optuna.TrialPruned(f"pruned at step {record['step']}")

        run, trained = self.teacher(model, train_config, report)
        trial.set_user_attr("teacher_seconds", time.perf_counter() - started)
        metrics = RunDirectory(run).metrics()
        trial.set_user_attr("run", str(run))
        trial.set_user_attr("trained", trained)
        trial.set_user_attr("params_count", metrics.get("params"))
        trial.set_user_attr("teacher_auc", metrics["valid"]["auc"])
        value = metrics["valid"]["auc"]
        if self.config.objective == "student":
            value = _valid_auc(self.student(run, full=False))
            trial.set_user_attr("student_auc", value)
        trial.set_user_attr("seconds", time.perf_counter() - started)
        return value


def _study(config: SearchConfig, root: Path, optuna: Any) -> Any:
    url = config.storage or f"sqlite:///{(root / 'study.db').resolve()}"
    if config.storage is None and (root / "study.db").exists() and not config.resume:
        raise CtrDistillError(f"{root / 'study.db'} exists: pass resume (--resume) to continue "
                              "that search, or remove the directory")
    # Optuna 4.9 renamed the retry callback's keyword; 3.5-4.8 know only the old one.
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    stale = "heartbeat_stale_trial_callback" if retry else "failed_trial_callback"
    retry = retry or optuna.storages.RetryFailedTrialCallback
    # Workers on this machine open the storage one at a time: two creating a new SQLite
    # schema at once collide in its version table (seen in CI).
    with _lock(root / "study"), warnings.catch_warnings():
        # heartbeats and retries are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(
            url, heartbeat_interval=config.heartbeat_seconds,
            grace_period=2 * config.heartbeat_seconds,
            **{stale: retry(max_retry=3)})
        study = _create_study(config, storage, optuna)
    return study


def _create_study(config: SearchConfig, storage: Any, optuna: Any) -> Any:
    if config.sampler == "grid":
        sampler = optuna.samplers.GridSampler(grid(config.space), seed=config.seed)
    elif config.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=config.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=config.seed)
    pruner = {"none": optuna.pruners.NopPruner,
              "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
              "hyperband": optuna.pruners.HyperbandPruner}[config.pruner]()
    return optuna.create_study(study_name=config.name, storage=storage, sampler=sampler,
                               pruner=pruner, direction="maximize", load_if_exists=True)


def _finished(study: Any, optuna: Any) -> list[Any]:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)


def _confirm(objective: _Objective, study: Any, optuna: Any) -> dict[int, float]:
    """Full student AUC of the top `confirm_top` complete trials, by trial number."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    top = sorted(complete, key=lambda t: t.value, reverse=True)[:objective.config.confirm_top]
    return {t.number: _valid_auc(objective.student(Path(t.user_attrs["run"]), full=True))
            for t in top}


def _link_best(root: Path, run: Path) -> Path:
    """`root/best_teacher` -> run, replaced atomically."""
    link = root / "best_teacher"
    tmp = root / f".best_teacher.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(Path(os.path.relpath(run, root)))
    os.replace(tmp, link)
    return link


def _trained_some(root: Path) -> bool:
    """Whether a failed search trained a teacher (kept: a rerun with --resume reuses it)."""
    return any(RunDirectory(run).is_finished() for run in root.glob("teachers/*"))


class _NoUserErrorTraceback(logging.Filter):
    """Drops Optuna's report of a trial that a CtrDistillError stopped: the traceback, then
    its 'Trial N failed with value None.'"""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], CtrDistillError):
            self.dropped = True
            return False
        if self.dropped and "failed with value" in record.getMessage():
            self.dropped = False
            return False
        return True


@contextlib.contextmanager
def _one_line_for_user_errors() -> Iterator[None]:
    """Optuna logs a failed trial's traceback; a user mistake is reported once, in one line,
    when it reaches the caller."""
    quiet = _NoUserErrorTraceback()
    handlers = list(logging.getLogger("optuna").handlers)  # a logger's own filter would miss
    for handler in handlers:  # the records of its children (optuna.study._optimize)
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def search(config: SearchConfig | dict[str, Any] | str | Path, **overrides: Any) -> Result:
    """Search teachers until the study holds `trials` finished trials or `seconds` pass.

    Returns the best teacher's run directory (ready as `teachers: [{run: ...}]` of distill),
    the trials table as rows, and the best values as metrics. `resume: true` continues the study
    in the search directory; workers sharing a `storage` split the trials between them."""
    config = resolve(SearchConfig, config, **overrides)
    optuna = _optuna()
    root = config.output_dir / config.name
    check_space(config.space, config.train, config.model_defaults)
    if config.sampler == "grid":
        grid(config.space)  # a range without grid points: one error before any trial
    if config.confirm_top and config.objective != "student":
        raise CtrDistillError("confirm_top re-trains students: it needs objective: student")
    PreparedData(config.data)  # missing or damaged: one line, before the study exists
    objective = _Objective(config, root, optuna)
    with built_in_place(root, keep=_trained_some), _one_line_for_user_errors():
        root.mkdir(parents=True, exist_ok=True)
        study = _study(config, root, optuna)
        callbacks = []
        if config.trials is not None:
            states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
            callbacks.append(optuna.study.MaxTrialsCallback(config.trials, states=states))
        left = None if config.trials is None else config.trials - len(_finished(study, optuna))
        if left is None or left > 0:
            study.optimize(objective, n_trials=left, timeout=config.seconds,
                           callbacks=callbacks, catch=())
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise CtrDistillError(f"search {config.name}: no trial completed (all pruned or "
                              "failed); widen the budget")
    confirmed = _confirm(objective, study, optuna) if config.confirm_top else {}
    best = max(complete, key=lambda t: (confirmed.get(t.number, float("-inf")), t.value)) \
        if confirmed else study.best_trial
    best_run = Path(best.user_attrs["run"])
    _link_best(root, best_run)
    rows = save_trials(_finished(study, optuna), confirmed, root)
    notes = save_plots(study, rows, root)
    metrics = {"best_trial": best.number, "best_value": best.value,
               "best_teacher_auc": best.user_attrs["teacher_auc"],
               "trials": len(rows), "pruned": sum(r["state"] == "PRUNED" for r in rows),
               "objective": config.objective, "notes": notes}
    if confirmed:
        metrics["best_confirmed_student_auc"] = confirmed[best.number]
    logger.info("search %s: best trial %d (%s %.5f), teacher %s", config.name, best.number,
                config.objective, best.value, best_run)
    return Result(best_run, metrics, rows, title=f"search {config.name}: trials")

