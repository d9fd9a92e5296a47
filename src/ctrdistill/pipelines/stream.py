"""`ctrdistill stream`: continual distillation over the days of a prepared dataset, run by the
follow machinery (ctrdistill.pipelines.follow) with the days as its partitions.

The data needs a day column and at least warmup_days + 2 days. Each day is one partition: every
split's rows of the day (a random split and a split by day give the same days), already
encoded. Day by day: the teacher and the student score the day before training on it
(progressive validation); on the `warmup_days` the teacher alone then trains; after them the
teacher, trained through the day before, labels the day once into the label store (a new
teacher version each day), the student trains on it from the stored labels and is exported,
then the teacher trains on it (`teacher_updates: stale`: on the warm-up days only). Each day
ends with follow's exactly-once commit (`state.pt`): an interrupted stream resumes after its
last committed day and ends as an uninterrupted one. Resuming under a config that changes the
models or data is refused once a day is committed (`overwrite: true` starts over).

Before the stream ran on follow, day t's teacher labelled day t+1 for the student and both
were evaluated on day t+2, on one split's rows (`eval_split`, now refused). The reported days
are the same (from the day after the student's first), but each is now scored on all of its
rows by the models trained through the day before, the student one day later than it used to
be. A day on which a model scores AUC within 0.01 of 0.5 (it learnt nothing) is flagged: a
warning, `problems` in daily.json and a list under daily.md's table.

Layout of `output_dir/name/`, follow's plus the daily reports: config.json (the stream's
config), state.pt, status.json, metrics.parquet and metrics.png (every day's progressive
validation, warm-up included), labels/ (the label store, a partition per day), bundles/student/
(`v000001`, ...: the student after each of its days, `latest` the last; `student_bundle` in
daily.json names the one a day scored), students/student/ (the last student as a run
directory, e.g. for `ctrdistill evaluate`), daily.json, daily.md and daily.png.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ctrdistill.analysis.plots import plot_daily
from ctrdistill.analysis.report import markdown_table
from ctrdistill.config import Name, StrictConfig
from ctrdistill.continuous.days import DaySource, day_partition
from ctrdistill.data.dataset import PreparedData
from ctrdistill.errors import CtrDistillError
from ctrdistill.models.registry import ModelSpec, model_config
from ctrdistill.pipelines.common import Result, resolve
from ctrdistill.pipelines.follow import (
    KEPT,
    TEACHER,
    ContinualConfig,
    PartitionTrainConfig,
    StudentConfig,
    follow_source,
)
from ctrdistill.serving.versions import version_name
from ctrdistill.storage import atomic_file
from ctrdistill.strategies.factory import KDOptions
from ctrdistill.training import distributed

logger = logging.getLogger(__name__)

#: The student's name in the follow run (its bundles: bundles/student/).
STUDENT = "student"
#: A model whose daily AUC is this close to 0.5 has learnt nothing (chance level).
CHANCE_AUC = 0.01
#: What a stream writes beside the follow run's files.
REPORTS = ("daily.json", "daily.md", "daily.png")
#: Keys a stream no longer takes, and what to do instead.
GONE = {
    "distill": "the key `distill:` is now `strategy:` (the same KDOptions as distill and search "
               "use); rename it",
    "eval_split": "`eval_split` is gone: every day is now scored on all of its rows by both "
                  "models before they train on it (progressive validation, as in follow); "
                  "remove it",
}


class StreamConfig(StrictConfig):
    name: Name = Field(description="the stream's directory under output_dir")
    data: Path = Field(description="a prepared dataset with a day column and warmup_days + 2 "
                       "days or more; each day is one partition, all of its rows")
    output_dir: Path = Field(Path("runs"), description="where the stream directory goes")
    teacher: ModelSpec = Field(description="the teacher model, trained day by day")
    student: ModelSpec = Field(default_factory=lambda: model_config({"name": "dnn"}))
    teacher_updates: Literal["continual", "stale"] = Field(
        "continual", description="continual: the teacher trains on every day; stale: on the "
        "warm-up days only")
    warmup_days: int = Field(1, ge=1, description="days the teacher trains on before students")
    strategy: KDOptions = Field(default_factory=KDOptions, description="how the student learns "
                                "from the stored teacher labels (as in distill)")
    days: list[int] | None = Field(None, description="days to follow, in increasing order "
                                   "(default: every day in the data)")
    train: PartitionTrainConfig = Field(default_factory=PartitionTrainConfig,
                                        description="training on each day (both models)")
    export_format: Literal["torchscript", "onnx"] = Field(
        "torchscript", description="format of the student's bundle after each day (onnx, which "
        "`ctrdistill serve` needs, needs ctrdistill[export])")
    overwrite: bool = Field(False, description="remove the stream directory and start afresh "
                            "(an interrupted stream then restarts instead of resuming)")

    @model_validator(mode="before")
    @classmethod
    def _gone(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, message in GONE.items():
                if key in data:
                    raise ValueError(message)
        return data


def _follow_config(config: StreamConfig) -> ContinualConfig:
    """The follow run a stream is: one student, exported after every day, and a day that fails
    to read stops it (prepared data has nothing to quarantine)."""
    return ContinualConfig(
        name=config.name, output_dir=config.output_dir, data=config.data,
        teacher=config.teacher,
        students={STUDENT: StudentConfig(model=config.student, strategy=config.strategy)},
        warmup_partitions=config.warmup_days, teacher_updates=config.teacher_updates,
        train=config.train, export_every=1, export_format=config.export_format,
        on_bad_partition="stop", overwrite=config.overwrite)


def _problems(record: dict[str, Any]) -> list[str]:
    """A model at chance level on the day: it learnt nothing (or the data has no signal)."""
    problems = []
    for who in ("teacher", "student"):
        auc = record[who]["auc"]
        if math.isnan(auc) or abs(auc - 0.5) < CHANCE_AUC:
            problems.append(f"{who} at chance level (AUC {auc:.4f})")
            logger.warning("day %s: the %s scores AUC %.4f, chance level: it learnt nothing "
                           "from its days (unless the data has no signal); more steps per day "
                           "(a smaller train.batch_size) or a larger train.lr may help",
                           record["eval_day"], who, auc)
    return problems


def _daily(metrics: list[dict[str, Any]], days: list[int],
          warmup_days: int) -> list[dict[str, Any]]:
    """Per day from the one after the student's first, the progressive metrics of both models
    (from the follow run's `metrics`), the student's bundle they scored, and its problems."""
    names = {day_partition(day): day for day in days}
    scored: dict[str, dict[str, dict[str, Any]]] = {}
    for record in metrics:
        scored.setdefault(record["partition"], {})[record["model"]] = record
    history = []
    for name, models in scored.items():  # in the order the days were committed
        index = models[TEACHER]["index"]
        if index <= warmup_days:  # the student has not trained yet
            continue
        record = {"eval_day": names[name], "rows": models[TEACHER]["rows"],
                  **{who: {k: models[model][k] for k in KEPT if k in models[model]}
                     for who, model in (("teacher", TEACHER), ("student", STUDENT))},
                  # exported after each student day: the one before this day is its number
                  "student_bundle": f"bundles/{STUDENT}/{version_name(index - warmup_days)}"}
        record["problems"] = _problems(record)
        history.append(record)
    return history


def _daily_markdown(rows: list[dict[str, Any]], history: list[dict[str, Any]]) -> str:
    flagged = [f"- day {r['eval_day']}: {problem}" for r in history
               for problem in r.get("problems", [])]
    return markdown_table(rows) + ("\n## Problems\n\n" + "\n".join(flagged) + "\n"
                                   if flagged else "")


def stream(config: StreamConfig | dict[str, Any] | str | Path, **overrides: Any) -> Result:
    """Run (or resume) the stream; `config` is a StreamConfig, a mapping or a YAML path."""
    config = resolve(StreamConfig, config, **overrides)
    if distributed.launched_world() > 1:
        raise CtrDistillError("stream runs in one process: launch it without torchrun "
                              "(`follow --nproc` shares partitions between processes)")
    source = DaySource(PreparedData(config.data), config.days)
    if len(source.days) < config.warmup_days + 2:
        raise CtrDistillError(f"stream needs at least warmup_days + 2 = {config.warmup_days + 2}"
                              f" days (the warm-up, the student's first, one to score it), "
                              f"not {len(source.days)}")
    result = follow_source(_follow_config(config), source, record=config, reports=REPORTS)
    history = _daily(result.rows, source.days, config.warmup_days)
    rows = [{"model": f"{who} day {r['eval_day']}", **r[who]} for r in history
            for who in ("teacher", "student")]
    with atomic_file(result.path / "daily.json") as tmp:
        tmp.write_text(json.dumps(history, indent=1))
    with atomic_file(result.path / "daily.md") as tmp:
        tmp.write_text(_daily_markdown(rows, history))
    plot_daily({config.name: history}, result.path / "daily.png")
    return Result(result.path, {}, rows, history, f"{config.name}: daily progressive validation")
