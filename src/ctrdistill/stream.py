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
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from ctrdistill.analysis.plots import plot_daily
from ctrdistill.analysis.report import markdown_table
from ctrdistill.config import StrictConfig
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.loader import BatchLoader
from ctrdistill.distill import KDOptions, build_strategy
from ctrdistill.errors import CtrDistillError
from ctrdistill.labels.store import LabelStore, label
from ctrdistill.models.registry import build_model
from ctrdistill.storage import atomic_file
from ctrdistill.strategies.plain import PlainStrategy
from ctrdistill.training.checkpoint import CHECKPOINT_FILE, save_checkpoint
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.run import ModelSpec
from ctrdistill.training.trainer import Trainer


def _day_train_config() -> TrainConfig:
    return TrainConfig(epochs=1, early_stop=None, lr_plateau=None)


class StreamConfig(StrictConfig):
    name: str
    data: Path
    output_dir: Path = Path("runs")
    teacher: ModelSpec
    student: ModelSpec = Field(default_factory=lambda: {"name": "dnn"})
    teacher_updates: Literal["continual", "stale"] = "continual"
    warmup_days: int = Field(1, ge=1, description="days the teacher trains on before students")
    distill: KDOptions = Field(default_factory=KDOptions)
    days: list[int] | None = Field(None, description="default: every day in the data")
    train: TrainConfig = Field(default_factory=_day_train_config)
    eval_split: str = Field("test", description="split whose day t+2 rows evaluate day t+1")


class _Stream:
    """Holds the two trainers and their persistent state across days."""

    def __init__(self, config: StreamConfig, data: PreparedData, out: Path) -> None:
        self.config = config
        self.data = data
        self.out = out
        torch.manual_seed(config.train.seed)
        self.teacher = PlainStrategy(build_model(config.teacher, data.feature_map,
                                                 sparse=config.train.sparse_embedding))
        student = build_model(config.student, data.feature_map,
                              sparse=config.train.sparse_embedding)
        self.student = build_strategy(
            config.distill, student, [], 1, data.feature_map, seed=config.train.seed,
            teacher_hidden_dim=self.teacher.served_model().hidden_dim)
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
        state = torch.load(self.state_path, weights_only=False)
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
    def _loader(self, rows):
        return BatchLoader(rows, self.config.train.batch_size, seed=self.config.train.seed
                           + len(self.history))

    def train_teacher(self, day: int) -> None:
        self.teacher_trainer.fit(self._loader(self.data.load("train", [day])), None)

    def _checkpoint(self, who: str, day: int, strategy) -> Path:
        folder = self.out / who / f"day-{day:03d}"
        with atomic_file(folder / CHECKPOINT_FILE) as tmp:
            save_checkpoint(tmp, strategy.served_model(), self.data.feature_map)
        return folder

    def teacher_checkpoint(self, day: int) -> Path:
        """The teacher trained through `day`, as a run directory the label store can use."""
        return self._checkpoint("teachers", day, self.teacher)

    def student_checkpoint(self, day: int) -> Path:
        """The student trained on `day`'s labels (its served head), for serving or evaluation."""
        return self._checkpoint("students", day, self.student)

    def train_student(self, day: int, store: LabelStore) -> None:
        rows = store.join(self.data.load("train", [day]), "train", [day],
                          hidden=self.config.distill.needs_hidden)
        self.student_trainer.fit(self._loader(rows), None)

    def evaluate(self, day: int) -> dict[str, Any]:
        rows = self.data.load(self.config.eval_split, [day])
        teacher = self.teacher_trainer.evaluate(rows)
        student = self.student_trainer.evaluate(rows)
        return {"teacher": teacher, "student": student}


_DISPLAY_ONLY = {"train.progress"}  # keys that cannot change what a resumed stream computes


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat |= _flatten(item, f"{prefix}.{key}" if prefix else key)
    return flat


def _check_resume(config: StreamConfig, out: Path) -> None:
    """Refuse to resume a stream whose saved state was trained under another config."""
    saved_path = out / "config.json"
    if not (out / "state.pt").is_file() or not saved_path.is_file():
        return  # nothing to resume: the stream starts afresh
    saved = _flatten(json.loads(saved_path.read_text()))
    new = _flatten(json.loads(config.model_dump_json()))
    changed = sorted(k for k in saved.keys() | new.keys()
                     if saved.get(k) != new.get(k) and k not in _DISPLAY_ONLY)
    if changed:
        raise CtrDistillError(f"{out} holds a stream started with another config (differs in: "
                              f"{', '.join(changed)}); resume with the same config, or choose "
                              "another name or output_dir")


def stream(config: StreamConfig, log=print) -> dict[str, Any]:
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
            log(f"teacher warm-up on day {day}")
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
        store = label([teacher_run], config.data, store_path, splits=["train"], days=[label_day],
                      show_progress=False, hidden=config.distill.needs_hidden, relabel=True)
        state.train_student(label_day, store)
        student_run = state.student_checkpoint(label_day)
        record = {"trained_through": today, "student_day": label_day, "eval_day": eval_day,
                  "teacher_checkpoint": str(teacher_run.relative_to(out)),
                  "student_checkpoint": str(student_run.relative_to(out)),
                  **state.evaluate(eval_day)}
        state.history.append(record)
        state.next_step = index + 1
        state.save()
        log(f"day {eval_day}: teacher AUC {record['teacher']['auc']:.5f}, "
            f"student AUC {record['student']['auc']:.5f}")
    rows = [{"model": f"{who} day {r['eval_day']}", **r[who]} for r in state.history
            for who in ("teacher", "student")]
    with atomic_file(out / "daily.json") as tmp:
        tmp.write_text(json.dumps(state.history, indent=1))
    with atomic_file(out / "daily.md") as tmp:
        tmp.write_text(markdown_table(rows))
    plot_daily({config.name: state.history}, out / "daily.png")
    return {"path": out, "history": state.history, "rows": rows}
