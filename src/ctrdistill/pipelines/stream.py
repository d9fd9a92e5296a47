"""`ctrdistill stream`: continual distillation over day-partitioned data.

Day by day, as in production: the teacher trains incrementally on day t, scores day t+1 once
into the label store (a new teacher version), the student trains on day t+1 from those stored
labels, and both are evaluated on day t+2, which neither has seen. A stale teacher trains only
on the warm-up days. Every day ends with a checkpoint, so an interrupted stream resumes at the
next day; resuming with a different config is refused, since the saved state was trained under
the old one.

Layout of `output_dir/name/`: config.json, state.pt (resume state), labels/ (the label store),
teachers/day-NNN/ (the teacher trained through day NNN) and students/day-NNN/ (the student
trained on day NNN's labels): both are servable checkpoints, e.g. for `ctrdistill evaluate`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from ctrdistill.analysis.plots import plot_daily
from ctrdistill.analysis.report import markdown_table
from ctrdistill.config import StrictConfig
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.loader import BatchLoader
from ctrdistill.errors import CtrDistillError
from ctrdistill.labels.store import LabelStore, write_labels
from ctrdistill.models.registry import ModelSpec, build_model, model_config
from ctrdistill.pipelines.common import Result, resolve
from ctrdistill.pipelines.writer import config_changes, save_model_dir
from ctrdistill.storage import atomic_file
from ctrdistill.strategies.base import Strategy
from ctrdistill.strategies.factory import KDOptions, kd_strategy
from ctrdistill.strategies.plain import PlainStrategy
from ctrdistill.training import distributed
from ctrdistill.training.config import EarlyStopConfig, PlateauConfig, TrainConfig
from ctrdistill.training.trainer import Trainer

logger = logging.getLogger(__name__)


class DayTrainConfig(TrainConfig):
    """Training on one day's rows: one pass, no early stopping (there is no validation day to
    watch); a partial `train:` block overrides these defaults key by key."""

    epochs: int = Field(1, ge=1, description="passes over each day's rows")
    early_stop: EarlyStopConfig | None = Field(None, description="None: keep the last state")
    lr_plateau: PlateauConfig | None = Field(None, description="None: a constant learning rate")


class StreamConfig(StrictConfig):
    name: str = Field(description="the stream's directory under output_dir")
    data: Path = Field(description="a prepared dataset with a day column")
    output_dir: Path = Field(Path("runs"), description="where the stream directory goes")
    teacher: ModelSpec = Field(description="the teacher model, trained day by day")
    student: ModelSpec = Field(default_factory=lambda: model_config({"name": "dnn"}))
    teacher_updates: Literal["continual", "stale"] = Field(
        "continual", description="continual: the teacher trains on every day; stale: on the "
        "warm-up days only")
    warmup_days: int = Field(1, ge=1, description="days the teacher trains on before students")
    distill: KDOptions = Field(default_factory=KDOptions, description="how the student learns "
                               "from the stored teacher labels")
    days: list[int] | None = Field(None, description="default: every day in the data")
    train: DayTrainConfig = Field(default_factory=DayTrainConfig)
    eval_split: str = Field("test", description="split whose day t+2 rows evaluate day t+1")


class _Stream:
    """Holds the two trainers and their persistent state across days."""

    def __init__(self, config: StreamConfig, data: PreparedData, out: Path) -> None:
        self.config = config
        self.data = data
        self.out = out
        torch.manual_seed(config.train.seed)
        self.teacher = PlainStrategy(build_model(config.teacher, data.feature_map))
        student = build_model(config.student, data.feature_map)
        if config.distill.gate_fit == "valid" and config.distill.ensemble in ("weights", "gate"):
            raise CtrDistillError("stream: gate_fit: valid needs a labelled validation split, "
                                  "which a stream's days do not have; use gate_fit: joint")
        self.student: Strategy = kd_strategy(
            config.distill, student, [], 1, data.feature_map,
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
        state = {"teacher": self.teacher.trained_state(), "student": self.student.trained_state(),
                 "teacher_optim": [o.state_dict() for o in self.teacher_trainer.optimizers],
                 "student_optim": [o.state_dict() for o in self.student_trainer.optimizers],
                 "history": self.history, "next_step": self.next_step,
                 "rng": torch.get_rng_state()}
        with atomic_file(self.state_path) as tmp:
            torch.save(state, tmp)

    def restore(self) -> None:
        if not self.state_path.is_file():
            return
        state = torch.load(self.state_path, weights_only=True)
        self.teacher.load_trained_state(state["teacher"])
        self.student.load_trained_state(state["student"])
        for optimizer, saved in zip(self.teacher_trainer.optimizers, state["teacher_optim"],
                                    strict=True):
            optimizer.load_state_dict(saved)
        for optimizer, saved in zip(self.student_trainer.optimizers, state["student_optim"],
                                    strict=True):
            optimizer.load_state_dict(saved)
        self.history, self.next_step = state["history"], state["next_step"]
        torch.set_rng_state(state["rng"])  # a resumed stream repeats the uninterrupted one

    # --- one day ---------------------------------------------------------------------------
    def _loader(self, rows) -> BatchLoader:
        return BatchLoader(rows, self.config.train.batch_size, seed=self.config.train.seed
                           + len(self.history))

    def train_teacher(self, day: int) -> None:
        self.teacher_trainer.fit(self._loader(self.data.load("train", [day])), None)

    def teacher_checkpoint(self, day: int) -> Path:
        """The teacher trained through `day`, as a run directory the label store can use."""
        return save_model_dir(self.out / "teachers" / f"day-{day:03d}",
                              self.teacher.served_model(), self.data.feature_map)

    def student_checkpoint(self, day: int) -> Path:
        """The student trained on `day`'s labels (its served head), for serving or evaluation."""
        return save_model_dir(self.out / "students" / f"day-{day:03d}",
                              self.student.served_model(), self.data.feature_map)

    def train_student(self, day: int, store: LabelStore) -> None:
        rows = store.join(self.data.load("train", [day]), "train", [day],
                          hidden=self.config.distill.needs_hidden)
        self.student_trainer.fit(self._loader(rows), None)

    def evaluate(self, day: int) -> dict[str, Any]:
        rows = self.data.load(self.config.eval_split, [day])
        teacher = self.teacher_trainer.evaluate(rows)
        student = self.student_trainer.evaluate(rows)
        return {"teacher": teacher, "student": student}


def _check_resume(config: StreamConfig, out: Path) -> None:
    """Refuse to resume a stream whose saved state was trained under another config."""
    saved_path = out / "config.json"
    if not (out / "state.pt").is_file() or not saved_path.is_file():
        return  # nothing to resume: the stream starts afresh
    changed = config_changes(json.loads(saved_path.read_text()),
                             json.loads(config.model_dump_json()))
    if changed:
        raise CtrDistillError(f"{out} holds a stream started with another config (differs in: "
                              f"{', '.join(changed)}); resume with the same config, or choose "
                              "another name or output_dir")


def stream(config: StreamConfig | dict[str, Any] | str | Path, **overrides: Any) -> Result:
    """Run (or resume) the stream; `config` is a StreamConfig, a mapping or a YAML path."""
    config = resolve(StreamConfig, config, **overrides)
    if distributed.launched_world() > 1:
        raise CtrDistillError("stream runs in one process: its days follow one another (launch "
                              "it without torchrun)")
    data = PreparedData(config.data)
    days = config.days or data.days()
    if len(days) < config.warmup_days + 2:
        raise CtrDistillError(f"stream needs at least warmup_days + 2 = {config.warmup_days + 2} "
                              f"days; the data has {len(days)}")
    out = config.output_dir / config.name
    _check_resume(config, out)
    with atomic_file(out / "config.json") as tmp:
        tmp.write_text(config.model_dump_json(indent=1))
    state = _Stream(config, data, out)
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
        store = write_labels([teacher_run], config.data, store_path, splits=["train"],
                             days=[label_day], show_progress=False,
                             hidden=config.distill.needs_hidden, relabel=True,
                             device=config.train.device)
        state.train_student(label_day, store)
        student_run = state.student_checkpoint(label_day)
        record = {"trained_through": today, "student_day": label_day, "eval_day": eval_day,
                  "teacher_checkpoint": str(teacher_run.relative_to(out)),
                  "student_checkpoint": str(student_run.relative_to(out)),
                  **state.evaluate(eval_day)}
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
        tmp.write_text(markdown_table(rows))
    plot_daily({config.name: state.history}, out / "daily.png")
    return Result(out, {}, rows, state.history, f"{config.name}: daily evaluation")
