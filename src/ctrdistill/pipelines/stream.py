"""`ctrdistill stream`: continual distillation over day-partitioned data.

Day by day, as in production: the teacher trains incrementally on day t, scores day t+1 once
into the label store (a new teacher version), the student trains on day t+1 from those stored
labels, and both are evaluated on day t+2, which neither has seen. A stale teacher trains only
on the warm-up days. Every day ends with a checkpoint, so an interrupted stream resumes at the
next day. Resuming with a different config is refused once a day is saved (that state was
trained under the old config; `overwrite: true` starts over); a stream that saved no day yet
starts afresh under the new config.

The data needs a day column and at least warmup_days + 2 days, each with rows in one of two
layouts, checked before any training: every split holds every day (a random split, e.g.
protocol x4: a day trains on its `train` rows and is evaluated on its `eval_split` rows), or
each day lies in one split (a day split, e.g. `split: {kind: day, valid_days: [8], test_days:
[9]}`: that split's rows of the day serve both for training and, before they are trained on, for
evaluation). A day on which a model scores AUC within 0.01 of 0.5 (it learnt nothing) is
flagged: a warning, `problems` in daily.json and a list under daily.md's table.

Layout of `output_dir/name/`: config.json, state.pt (resume state), labels/ (the label store),
teachers/day-NNN/ (the teacher trained through day NNN) and students/day-NNN/ (the student
trained on day NNN's labels): both are servable checkpoints, e.g. for `ctrdistill evaluate`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from ctrdistill.analysis.plots import plot_daily
from ctrdistill.analysis.report import markdown_table
from ctrdistill.config import Name, StrictConfig
from ctrdistill.data.dataset import SPLITS, PreparedData
from ctrdistill.data.loader import BatchLoader
from ctrdistill.errors import CtrDistillError
from ctrdistill.files import RESTART, load_torch, read_json
from ctrdistill.labels.store import LabelStore, write_labels
from ctrdistill.models.base import CTRModel
from ctrdistill.models.registry import ModelSpec, build_model, model_config
from ctrdistill.pipelines.common import Result, config_changes, resolve
from ctrdistill.pipelines.follow import PartitionTrainConfig
from ctrdistill.rundir import RunDirectory
from ctrdistill.storage import atomic_file
from ctrdistill.strategies.base import Strategy
from ctrdistill.strategies.factory import KDOptions, kd_strategy
from ctrdistill.strategies.plain import PlainStrategy
from ctrdistill.training import distributed
from ctrdistill.training.checkpoint import save_checkpoint
from ctrdistill.training.trainer import Trainer

logger = logging.getLogger(__name__)


#: A model whose daily AUC is this close to 0.5 has learnt nothing (chance level).
CHANCE_AUC = 0.01
#: What a stream directory may hold, and so what `overwrite` or a restart may remove.
STREAM_FILES = frozenset({"config.json", "state.pt", "labels", "teachers", "students",
                          "daily.json", "daily.md", "daily.png"})


class StreamConfig(StrictConfig):
    name: Name = Field(description="the stream's directory under output_dir")
    data: Path = Field(description="a prepared dataset with a day column and warmup_days + 2 "
                       "days or more, each in every split (a random split) or in one split "
                       "(a day split)")
    output_dir: Path = Field(Path("runs"), description="where the stream directory goes")
    teacher: ModelSpec = Field(description="the teacher model, trained day by day")
    student: ModelSpec = Field(default_factory=lambda: model_config({"name": "dnn"}))
    teacher_updates: Literal["continual", "stale"] = Field(
        "continual", description="continual: the teacher trains on every day; stale: on the "
        "warm-up days only")
    warmup_days: int = Field(1, ge=1, description="days the teacher trains on before students")
    strategy: KDOptions = Field(default_factory=KDOptions, description="how the student learns "
                                "from the stored teacher labels (as in distill)")
    days: list[int] | None = Field(None, description="default: every day in the data")
    train: PartitionTrainConfig = Field(default_factory=PartitionTrainConfig)
    eval_split: Literal["train", "valid", "test"] = Field(
        "test", description="split whose day t+2 rows evaluate day t+1; a day that only one "
        "split holds (a day split) is evaluated on that split's rows")
    overwrite: bool = Field(False, description="remove the stream directory and start afresh "
                            "(an interrupted stream then restarts instead of resuming)")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "distill" in data:
            raise ValueError("the key `distill:` is now `strategy:` (the same KDOptions as "
                             "distill and search use); rename it")
        return data


class _Stream:
    """Holds the two trainers and their persistent state across days."""

    def __init__(self, config: StreamConfig, data: PreparedData, out: Path,
                 sources: dict[int, tuple[str, str]]) -> None:
        self.config = config
        self.data = data
        self.out = out
        self.sources = sources  # day -> (split it trains on, split it is evaluated on)
        torch.manual_seed(config.train.seed)
        self.teacher = PlainStrategy(build_model(config.teacher, data.feature_map))
        student = build_model(config.student, data.feature_map)
        if config.strategy.gate_fit == "valid" and config.strategy.ensemble in ("weights", "gate"):
            raise CtrDistillError("stream: gate_fit: valid needs a labelled validation split, "
                                  "which a stream's days do not have; use gate_fit: joint")
        self.student: Strategy = kd_strategy(
            config.strategy, student, [], 1, data.feature_map,
            stored_hidden_dim=self.teacher.served_model().hidden_dim)
        self.teacher_trainer = Trainer(self.teacher, config.train)
        self.student_trainer = Trainer(self.student, config.train)
        self.history: list[dict[str, Any]] = []
        self.next_step: int | None = None  # None: the teacher's warm-up has not run yet

    # --- persistence -----------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.out / "state.pt"

    def save(self) -> None:
        """Both trainers' learner states (parameters, optimizers, plateau, gradient scaler, CPU
        and CUDA RNG), so a resumed stream repeats the uninterrupted one on any device and
        precision."""
        state = {"teacher": self.teacher_trainer.learner_state(),
                 "student": self.student_trainer.learner_state(),
                 "history": self.history, "next_step": self.next_step}
        with atomic_file(self.state_path) as tmp:
            torch.save(state, tmp)

    def restore(self) -> None:
        if not self.state_path.is_file():
            return
        state = load_torch(self.state_path, RESTART)
        self.teacher_trainer.load_learner_state(state["teacher"])
        self.student_trainer.load_learner_state(state["student"])
        self.history, self.next_step = state["history"], state["next_step"]

    # --- one day ---------------------------------------------------------------------------
    def _loader(self, rows) -> BatchLoader:
        return BatchLoader(rows, self.config.train.batch_size, seed=self.config.train.seed
                           + len(self.history))

    def train_teacher(self, day: int) -> None:
        self.teacher_trainer.fit(self._loader(self.data.load(self.sources[day][0], [day])), None)

    def _model_dir(self, kind: str, day: int, model: CTRModel) -> Path:
        directory = RunDirectory(self.out / kind / f"day-{day:03d}")
        with atomic_file(directory.checkpoint()) as tmp:
            save_checkpoint(tmp, model, self.data.feature_map)
        return directory.path

    def teacher_checkpoint(self, day: int) -> Path:
        """The teacher trained through `day`, as a run directory the label store can use."""
        return self._model_dir("teachers", day, self.teacher.served_model())

    def student_checkpoint(self, day: int) -> Path:
        """The student trained on `day`'s labels (its served head), for serving or evaluation."""
        return self._model_dir("students", day, self.student.served_model())

    def train_student(self, day: int, store: LabelStore) -> None:
        split = self.sources[day][0]
        rows = store.join(self.data.load(split, [day]), split, [day],
                          hidden=self.config.strategy.needs_hidden)
        self.student_trainer.fit(self._loader(rows), None)

    def evaluate(self, day: int) -> dict[str, Any]:
        rows = self.data.load(self.sources[day][1], [day])
        teacher = self.teacher_trainer.evaluate(rows)
        student = self.student_trainer.evaluate(rows)
        return {"teacher": teacher, "student": student}


def day_sources(data: PreparedData, days: list[int], eval_split: str,
                warmup_days: int) -> dict[int, tuple[str, str]]:
    """Per day, the split whose rows it trains on and the one it is evaluated on; refuses, before
    any training, data whose days a stream cannot take (see the module docstring)."""
    if not data.feature_map.has_day:
        raise CtrDistillError(f"stream: {data.path} has no day column; a stream needs "
                              "day-partitioned data (a schema with a `day`, e.g. synth --days)")
    if len(days) < warmup_days + 2:
        raise CtrDistillError(f"stream needs at least warmup_days + 2 = {warmup_days + 2} "
                              f"days; the data has {len(days)}")
    held = {split: set(data.scan(split).select("day").unique().collect()["day"].to_list())
            for split in SPLITS if data.feature_map.splits.get(split)}
    sources = {}
    for day in days:
        splits = [split for split in held if day in held[split]]
        if len(splits) == 1:
            sources[day] = (splits[0], splits[0])
        elif "train" in splits and eval_split in splits:
            sources[day] = ("train", eval_split)
        else:
            holders = f"only in {', '.join(splits)}" if splits else "in no split"
            raise CtrDistillError(
                f"stream: day {day} has rows {holders}; a stream needs each day's rows either "
                f"in every split (a random split: it trains on 'train' and is evaluated on "
                f"'{eval_split}') or in one split (a day split)")
    return sources


def _saved_days(out: Path) -> int:
    state = out / "state.pt"
    return len(load_torch(state, RESTART)["history"]) if state.is_file() else 0


def _remove_stream(out: Path) -> None:
    """Remove a stream directory, refusing one that holds anything a stream does not write
    (a wrong `name` or `output_dir` must not delete someone's data)."""
    foreign = sorted(p.name for p in out.iterdir()
                     if p.name not in STREAM_FILES and ".tmp-" not in p.name)
    if foreign:
        raise CtrDistillError(f"{out} is not a stream directory (it holds {', '.join(foreign)})"
                              "; remove it yourself or choose another name or output_dir")
    trash = out.with_name(f".{out.name}.removed")
    shutil.rmtree(trash, ignore_errors=True)  # left by a crash during an earlier removal
    os.replace(out, trash)  # the stream disappears at once, then its files
    shutil.rmtree(trash)


def _start_or_resume(config: StreamConfig, out: Path) -> None:
    """Clear `out` for a fresh start (overwrite, or a stream under another config that saved no
    day), keep it to resume (the same config), or refuse (another config with saved days)."""
    if not out.exists():
        return
    if config.overwrite:
        logger.info("%s: overwrite: removing the old stream", out)
        _remove_stream(out)
        return
    saved_path = out / "config.json"
    if not saved_path.is_file():
        return
    changed = config_changes(read_json(saved_path, RESTART),
                             json.loads(config.model_dump_json()))
    if not changed:
        return
    saved = _saved_days(out)
    if saved:
        raise CtrDistillError(
            f"{out} holds a stream started with another config (differs in: "
            f"{', '.join(changed)}) with {saved} saved day(s); resume with the same config, set "
            "overwrite: true to start over (removes them), or choose another name or output_dir")
    logger.info("%s: its stream saved no day; starting afresh under the new config (differs "
                "in: %s)", out, ", ".join(changed))
    _remove_stream(out)


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


def _daily_markdown(rows: list[dict[str, Any]], history: list[dict[str, Any]]) -> str:
    flagged = [f"- day {r['eval_day']}: {problem}" for r in history
               for problem in r.get("problems", [])]
    return markdown_table(rows) + ("\n## Problems\n\n" + "\n".join(flagged) + "\n"
                                   if flagged else "")


def stream(config: StreamConfig | dict[str, Any] | str | Path, **overrides: Any) -> Result:
    """Run (or resume) the stream; `config` is a StreamConfig, a mapping or a YAML path."""
    config = resolve(StreamConfig, config, **overrides)
    if distributed.launched_world() > 1:
        raise CtrDistillError("stream runs in one process: its days follow one another (launch "
                              "it without torchrun)")
    data = PreparedData(config.data)
    days = config.days or data.days()
    sources = day_sources(data, days, config.eval_split, config.warmup_days)
    out = config.output_dir / config.name
    _start_or_resume(config, out)
    with atomic_file(out / "config.json") as tmp:
        tmp.write_text(config.model_dump_json(indent=1))
    state = _Stream(config, data, out, sources)
    state.restore()
    store_path = out / "labels"
    if state.next_step is None:
        for day in days[: config.warmup_days]:
            logger.info("teacher warm-up on day %s", day)
            state.train_teacher(day)
        state.next_step = config.warmup_days - 1
        state.save()
    for index in range(state.next_step, len(days) - 2):
        today, label_day, eval_day = days[index], days[index + 1], days[index + 2]
        if config.teacher_updates == "continual" and index >= config.warmup_days:
            state.train_teacher(today)
        teacher_run = state.teacher_checkpoint(today)
        # relabel: after a crash, the day's labels may come from a teacher checkpoint that the
        # resumed run has just rewritten; the labels must be this teacher's.
        store = write_labels([teacher_run], config.data, store_path,
                             splits=[sources[label_day][0]],
                             days=[label_day], show_progress=False,
                             hidden=config.strategy.needs_hidden, relabel=True,
                             device=config.train.device)
        state.train_student(label_day, store)
        student_run = state.student_checkpoint(label_day)
        record = {"trained_through": today, "student_day": label_day, "eval_day": eval_day,
                  "teacher_checkpoint": str(teacher_run.relative_to(out)),
                  "student_checkpoint": str(student_run.relative_to(out)),
                  **state.evaluate(eval_day)}
        record["problems"] = _problems(record)
        state.history.append(record)
        state.next_step = index + 1
        state.save()
        logger.info("day %s: teacher AUC %.5f, student AUC %.5f", eval_day,
                    record["teacher"]["auc"], record["student"]["auc"])
    rows = [{"model": f"{who} day {r['eval_day']}", **r[who]} for r in state.history
            for who in ("teacher", "student")]
    with atomic_file(out / "daily.json") as tmp:
        tmp.write_text(json.dumps(state.history, indent=1))
    with atomic_file(out / "daily.md") as tmp:
        tmp.write_text(_daily_markdown(rows, state.history))
    plot_daily({config.name: state.history}, out / "daily.png")
    return Result(out, {}, rows, state.history, f"{config.name}: daily evaluation")
