"""`ctrdistill follow`: continuous distillation from logs that keep arriving in a landing zone.

For each new complete partition, in order: encode it with the prepared dataset's fitted
preprocessing; progressive validation (the teacher and every student score it before training
on it: AUC, logloss, calibration, OOV rate per field, into `metrics.parquet` and
`metrics.png`); the teacher, trained through the previous partition, labels it once into the
label store (a new teacher version per partition); every student trains on it from the stored
labels; the teacher trains on it; every `export_every` partitions each student becomes a new
bundle version `bundles/NAME/v000001/` with `latest` switched to it. The first
`warmup_partitions` train the teacher only. `teacher_updates` changes the teacher's part for
experiments on distribution shift: a stale teacher (warm-up partitions only) or a leaked one
(trained on the partition before it labels it).

`follow_source` is that loop over any `Source` (ctrdistill.continuous.source): `follow` gives
it the landing zone, `stream` a prepared dataset's days, whose rows are already encoded
(ctrdistill.continuous.days).

Exactly once: a partition's work ends with one atomic write of `state.pt` (learner states of
the teacher and every student, the label store's manifest, the processed-partition log,
metrics): that rename is the commit. Whatever was written for a partition before its commit
(label file, bundle) is rewritten identically when the partition is redone after a crash, and
what is derived from the state after it (store manifest, metrics, plot, status) is rewritten
from it on restart. A partition that fails to parse is quarantined (committed with its error)
unless `on_bad_partition: stop`.

New ids (`vocabulary.oov: grow`): each partition's out-of-vocabulary ids are counted into the
committed state, and at its end the ones that reached `min_count` within the window get rows
(ctrdistill.continuous.vocabulary) in every model, before the commit; a restart rebuilds the
grown vocabularies from the committed ids and grows the models to them before loading their
states. Bundles exported afterwards carry the grown `prepare/`. With `oov: hash`, the models
are built from the start on the prepared vocabularies plus `buckets` hashed rows each (their
feature map's `oov_buckets`), which bundles carry too; the config fixes them for a restart.

Several processes (`--nproc N`, torchrun): every rank encodes the whole partition (so the
unseen-id counts, and the vocabulary growth they decide, are the same on every rank), the ranks
share its scoring (progressive validation gathers the whole partition's metrics on every rank;
labelling gathers the logits on rank 0, which writes the label file) and every model's training
(DDP, as `train`). Rank 0 lists the landing zone and tells the others which partitions to
process, and holds the lock; it alone writes: the commit, the store manifest, metrics, plot,
status and bundles; the others wait for each commit. Every rank restores from `state.pt`, so a
group torchrun restarts resumes after the last committed partition. The follow directory must
be one that every rank sees (one machine, or a shared file system); the landing zone may be on
object storage.

Layout of `output_dir/name/`: config.json, state.pt, status.json, metrics.parquet,
metrics.png, labels/ (the label store), students/NAME/ (the last exported student as a run
directory) and bundles/NAME/.
"""

from __future__ import annotations

import copy
import fcntl
import json
import logging
import os
import shutil
import time
import zlib
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

import polars as pl
import pyarrow as pa
import torch
from pydantic import Field

from ctrdistill.config import Name, StrictConfig
from ctrdistill.continuous.encode import oov_rates
from ctrdistill.continuous.labels import empty_manifest, label_partition, publish
from ctrdistill.continuous.report import plot_metrics, write_metrics
from ctrdistill.continuous.source import DirectorySource, LandingConfig, Partition, Source
from ctrdistill.continuous.synthetic import write_landing
from ctrdistill.continuous.vocabulary import (
    Counts,
    VocabularyConfig,
    empty_state,
    extend,
    grow,
    grown_state,
    hashed_state,
    vocab_sizes,
    write_state,
)
from ctrdistill.data.dataset import ColumnData, frame_to_columns
from ctrdistill.data.encode import PrepareState, copy_state
from ctrdistill.data.loader import BatchLoader
from ctrdistill.data.synthetic import SynthConfig
from ctrdistill.errors import CtrDistillError
from ctrdistill.labels.store import LabelStore, file_sha256
from ctrdistill.models.base import CTRModel
from ctrdistill.models.registry import ModelSpec, build_model
from ctrdistill.pipelines.common import Result, config_changes, resolve
from ctrdistill.pipelines.export import export
from ctrdistill.rundir import RunDirectory
from ctrdistill.serving.bundle import MANIFEST_FILE
from ctrdistill.serving.versions import set_latest, version_name
from ctrdistill.storage import atomic_file
from ctrdistill.strategies.factory import KDOptions, kd_strategy
from ctrdistill.strategies.plain import PlainStrategy
from ctrdistill.training import distributed
from ctrdistill.training.checkpoint import save_checkpoint
from ctrdistill.training.config import EarlyStopConfig, PlateauConfig, TrainConfig
from ctrdistill.training.device import resolve_device
from ctrdistill.training.growth import grow_embeddings
from ctrdistill.training.trainer import Trainer

logger = logging.getLogger(__name__)

STATE = "state.pt"
STATUS = "status.json"
TEACHER = "teacher"
#: What a follow directory may hold, and so what `overwrite` may remove.
FOLLOW_FILES = frozenset({"config.json", STATE, STATUS, "metrics.parquet", "metrics.png",
                          "labels", "students", "bundles", ".lock"})
#: Errors of reading and encoding a partition's files: the partition is quarantined.
PARSE_ERRORS = (CtrDistillError, pl.exceptions.PolarsError, pa.ArrowException, OSError,
                ValueError)
#: Metrics of progressive validation kept per model (those the data allows).
KEPT = ("auc", "logloss", "calibration", "gauc", "bayes_auc", "auc_gap")
#: What the students of a partition learned from (`student_labels` in metrics.parquet): the
#: current teacher's labels, its last healthy version's, the hard labels, or nothing (warm-up,
#: or an unhealthy teacher without a healthy version).
HARD_LABELS, NO_LABELS = "hard_labels", "none"


class StudentConfig(StrictConfig):
    model: ModelSpec = Field(description="any zoo model and size")
    strategy: KDOptions = Field(default_factory=KDOptions, description="how it learns from the "
                                "stored teacher labels (as in distill)")


class TeacherGuard(StrictConfig):
    min_auc: float | None = Field(None, ge=0, le=1, description="the teacher is unhealthy on a "
                                  "partition where its progressive AUC is below this")
    behind_students_for: int | None = Field(
        None, ge=1, description="... or below the best student's for this many partitions in "
        "a row")
    fallback: Literal["last_healthy", "hard_labels"] = Field(
        "last_healthy", description="what students learn from while the teacher is unhealthy: "
        "its last healthy version, the last one not behind the students (they skip the "
        "partition if there is none), or the hard labels alone")


class PartitionTrainConfig(TrainConfig):
    """Training on one partition's rows: one pass, no early stopping (there is no validation
    partition to watch); a partial `train:` block overrides these defaults key by key. Small
    batches at a larger rate, because one pass over a partition is few steps: on
    synth(rows=40000, days=5, drift=0.3), a day per partition, the generic lr 1e-3 and batch
    4096 left the students at AUC 0.50-0.53, these reach 0.63."""

    epochs: int = Field(1, ge=1, description="passes over each partition's rows")
    batch_size: int = Field(512, ge=1, description="rows per training step")
    lr: float = Field(3e-3, gt=0, description="learning rate of the dense parameters")
    early_stop: EarlyStopConfig | None = Field(None, description="None: keep the last state")
    lr_plateau: PlateauConfig | None = Field(None, description="None: a constant learning rate")


class ContinualConfig(StrictConfig):
    """What follow does with each partition, whatever its source (`FollowConfig` adds the
    landing zone; `stream` builds one over a prepared dataset's days)."""

    name: Name = Field(description="the follow directory under output_dir")
    output_dir: Path = Field(Path("runs"), description="where the follow directory goes")
    data: Path = Field(description="a prepared dataset: its fitted preprocessing encodes the "
                       "arriving logs (they are in its recipe's format)")
    teacher: ModelSpec = Field(description="the teacher, trained partition by partition")
    students: dict[Name, StudentConfig] = Field(min_length=1, description="students by name")
    warmup_partitions: int = Field(1, ge=1, description="partitions the teacher trains on "
                                   "before it labels any (students start after them)")
    teacher_updates: Literal["continual", "stale", "leaked"] = Field(
        "continual", description="continual: the teacher labels each partition before it "
        "trains on it (one partition behind); stale: it trains on the warm-up partitions only; "
        "leaked: it trains on each partition before labelling it, so its labels have seen "
        "their rows (to measure that leakage, not for production)")
    train: PartitionTrainConfig = Field(default_factory=PartitionTrainConfig,
                                        description="training on each partition (every model)")
    teacher_guard: TeacherGuard | None = Field(
        None, description="while the teacher is unhealthy, students learn from its last "
        "healthy version or the hard labels (its fallback); None: always from the current "
        "teacher")
    vocabulary: VocabularyConfig = Field(
        default_factory=VocabularyConfig, description="ids the prepared vocabulary lacks: "
        "one OOV row, vocabularies that grow at partition boundaries, or hashed buckets")
    export_every: int = Field(0, ge=0, description="export every student every K partitions "
                              "(0: never)")
    export_format: Literal["onnx", "torchscript"] = Field("onnx", description="bundle format")
    on_bad_partition: Literal["quarantine", "stop"] = Field(
        "quarantine", description="a partition that fails to parse: quarantine it (logged, "
        "kept in status.json) and go on, or stop with its error")
    overwrite: bool = Field(False, description="remove the follow directory and start afresh "
                            "(at every start: a process started again then does not resume; a "
                            "group torchrun restarts after a failure does)")


class FollowConfig(ContinualConfig):
    landing: LandingConfig = Field(description="where the raw logs arrive")
    poll_seconds: float = Field(10.0, gt=0, description="wait between looks at the landing "
                                "zone when nothing is new")
    once: bool = Field(False, description="process what has landed and stop (for cron or "
                       "Airflow); otherwise keep following")


#: Keys that may change between runs of one follow directory (they do not shape its models; a
#: guard may be added to a follow whose teacher went wrong; the directory may move).
OPERATIONAL = ("poll_seconds", "on_bad_partition", "overwrite", "export_every",
               "export_format", "landing", "once", "teacher_guard", "name", "output_dir")


class _Follower:
    """The teacher, the students and the committed state across partitions."""

    def __init__(self, config: ContinualConfig, prepared: PrepareState, out: Path,
                 location: str, group: distributed.Group | None = None) -> None:
        """`location`: where the partitions come from (recorded in the label store)."""
        self.config = config
        self.base = prepared  # the prepared dataset's; `prepared` is grown or hashed from it
        buckets = config.vocabulary.buckets
        self.prepared = hashed_state(prepared, buckets) if buckets else prepared
        self.out = out
        self.group = group
        self.main = group is None or group.is_main  # the rank that writes
        feature_map = self.prepared.feature_map
        torch.manual_seed(config.train.seed)
        teacher = PlainStrategy(build_model(config.teacher, feature_map))
        self.trainers = {TEACHER: Trainer(teacher, config.train)}
        hidden_dim = teacher.served_model().hidden_dim
        guard = config.teacher_guard
        # on hard labels a student's loss leaves out its distillation parameters (aux head,
        # hint map, gate), which DDP must then expect
        hard = guard is not None and guard.fallback == HARD_LABELS
        # Each student's initial weights depend on its name alone, not on the order or the
        # set of students in the config (YAML writers may sort keys).
        for name in sorted(config.students):
            student = config.students[name]
            torch.manual_seed(config.train.seed + zlib.crc32(name.encode()))
            strategy = kd_strategy(student.strategy, build_model(student.model, feature_map),
                                   [], 1, feature_map, stored_hidden_dim=hidden_dim)
            if student.strategy.gate_fit == "valid" and strategy.ensemble.trainable:
                raise CtrDistillError(f"student {name}: gate_fit: valid needs a labelled "
                                      "validation split, which partitions do not have; use "
                                      "gate_fit: joint")
            self.trainers[name] = Trainer(strategy, config.train, unused_parameters=hard)
        torch.manual_seed(config.train.seed)
        hidden = any(s.strategy.needs_hidden for s in config.students.values())
        self.state: dict[str, Any] = {
            "processed": [], "metrics": [], "exports": 0, "healthy": True, "behind": 0,
            "healthy_teacher": {},
            "store": empty_manifest(feature_map, location, hidden)}
        if self.growing:
            self.state["vocabulary"] = empty_state()

    @property
    def growing(self) -> bool:
        return self.config.vocabulary.oov == "grow"

    @property
    def own_vocabulary(self) -> bool:
        """The models' vocabularies are the prepared dataset's grown or hashed."""
        return self.config.vocabulary.oov != "single"

    @property
    def store(self) -> Path:
        return self.out / "labels"

    @property
    def done(self) -> set[str]:
        return {p["name"] for p in self.state["processed"]}

    # --- commit and restart -------------------------------------------------------------------
    def commit(self) -> None:
        """The one atomic write that makes a partition's work happen (by rank 0; every rank
        calls it, and none goes on before it is written)."""
        state = dict(self.state, learners={name: trainer.learner_state()
                                           for name, trainer in self.trainers.items()})
        if self.main:
            with atomic_file(self.out / STATE) as tmp:
                torch.save(state, tmp)
        if self.group:
            distributed.barrier()

    def restore(self) -> None:
        path = self.out / STATE
        if path.is_file():
            state = torch.load(path, map_location="cpu", weights_only=True)
            if self.growing:  # the models take the committed vocabulary's shapes first
                self._grow_models(state["vocabulary"]["added"])
            for name, trainer in self.trainers.items():
                trainer.load_learner_state(state["learners"][name])
            self.state = {k: v for k, v in state.items() if k != "learners"}
        self.publish()

    def publish(self) -> None:
        """What is derived from the committed state: store manifest, metrics and plot (rank 0
        writes them)."""
        if not self.main:
            return
        self.store.mkdir(parents=True, exist_ok=True)
        (self.store / "partitions").mkdir(exist_ok=True)
        publish(self.store, self.state["store"])
        if self.state["metrics"]:
            write_metrics(self.state["metrics"], self.out / "metrics.parquet")
            plot_metrics(self.state["metrics"], self.out / "metrics.png")

    # --- one partition ------------------------------------------------------------------------
    def _fit(self, name: str, rows: ColumnData, index: int) -> None:
        loader = BatchLoader(rows, self.config.train.batch_size,
                             seed=self.config.train.seed + index)
        self.trainers[name].fit(loader, None)

    def _evaluate(self, rows: ColumnData, index: int, name: str,
                  frame: pl.DataFrame) -> list[dict[str, Any]]:
        feature_map = self.prepared.feature_map
        oov = oov_rates(frame, feature_map)
        partition = {"oov_rate": _mean(oov), **{f"oov.{field}": r for field, r in oov.items()}}
        if self.own_vocabulary:  # what the prepared vocabulary alone would have left out
            partition["oov_rate_prepared"] = _mean(oov_rates(frame, feature_map,
                                                             vocab_sizes(self.base)))
        if feature_map.oov_buckets:  # the ids it lacks are exactly those hashed
            logger.info("OOV rate %.2f%% (the prepared vocabulary alone: %.2f%%, hashed into "
                        "%d bucket(s) per vocabulary)", 100 * partition["oov_rate"],
                        100 * partition["oov_rate_prepared"], feature_map.oov_buckets)
        records = []
        for model, trainer in self.trainers.items():
            metrics = trainer.evaluate(rows)
            records.append({"partition": name, "index": index, "model": model,
                            "role": TEACHER if model == TEACHER else "student",
                            "rows": len(rows), **{k: metrics[k] for k in KEPT if k in metrics},
                            **partition})
        return records

    def process(self, source: Source, partition: Partition) -> dict[str, Any]:
        """Do the partition's work and commit it; returns its entry in the processed log."""
        index = len(self.state["processed"])
        entry: dict[str, Any] = {"name": partition.name, "index": index}
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        message = None
        try:
            frame, unseen = source.rows(partition, self.prepared, self.growing)
        except PARSE_ERRORS as error:
            message = " ".join(str(error).split()) or type(error).__name__
        if self.group:  # every rank encodes it: one that could not, quarantines it for all
            message = next((m for m in distributed.all_gather(message) if m is not None), None)
        if message is not None:
            if self.config.on_bad_partition == "stop":
                raise CtrDistillError(f"partition {partition.name}: {message}")
            logger.warning("partition %s quarantined: %s", partition.name, message)
            entry |= {"status": "quarantined", "error": message, "committed": time.time()}
            self.state["processed"].append(entry)
            self.commit()
            return entry
        rows = frame_to_columns(frame, self.prepared.feature_map)
        seconds["encode"] = time.perf_counter() - start

        def timed(stage: str, work) -> Any:
            began = time.perf_counter()
            result = work()
            seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - began
            return result

        metrics = timed("evaluate", lambda: self._evaluate(rows, index, partition.name, frame))
        updates = self.config.teacher_updates
        trains_teacher = updates != "stale" or index < self.config.warmup_partitions
        if trains_teacher and updates == "leaked":
            timed("teacher", lambda: self._fit(TEACHER, rows, index))
        labeller, labels = (self._labeller(metrics) if index >= self.config.warmup_partitions
                            else (None, NO_LABELS))
        if labeller is not None:
            timed("label", lambda: self._label(labeller, rows, index, partition.name))
            store = LabelStore(self.store)
        for name in sorted(self.config.students) if labels != NO_LABELS else ():
            student = self.config.students[name]
            # on hard labels the rows carry no teacher logits: the strategy fits the labels
            joined = rows if labeller is None else store.join(
                rows, "train", [index], hidden=student.strategy.needs_hidden)
            timed("students", lambda n=name, r=joined: self._fit(n, r, index))
        if trains_teacher and updates != "leaked":
            timed("teacher", lambda: self._fit(TEACHER, rows, index))
        every = self.config.export_every
        if labels != NO_LABELS and every and (index + 1) % every == 0:
            timed("export", lambda: self._export(self.state["exports"] + 1))
            self.state["exports"] += 1
        if unseen is not None:
            added = timed("vocabulary", lambda: self._grow_vocabulary(unseen))
        for record in metrics:
            record["distilled"] = labeller is not None
            record["student_labels"] = labels
            record["teacher_healthy"] = self.state["healthy"]
            if unseen is not None:
                record["vocabulary_added"] = added
                record["vocabulary_rows"] = sum(vocab_sizes(self.prepared).values())
        entry |= {"status": "done", "rows": len(rows), "committed": time.time(),
                  "rows_per_second": {stage: len(rows) / max(s, 1e-9)
                                      for stage, s in seconds.items()}}
        self.state["processed"].append(entry)
        self.state["metrics"].extend(metrics)
        self.commit()
        self.publish()
        teacher = next(r for r in metrics if r["model"] == TEACHER)
        logger.info("partition %s (%d rows): teacher AUC %.4f before training; %s", partition.name,
                    len(rows), teacher["auc"], ", ".join(
                        f"{r['model']} {r['auc']:.4f}" for r in metrics if r is not teacher))
        if unseen is not None:
            logger.info("OOV rate %.2f%% (the prepared vocabulary alone: %.2f%%); vocabulary "
                        "+%d id(s) after it", 100 * teacher["oov_rate"],
                        100 * teacher["oov_rate_prepared"], teacher["vocabulary_added"])
        return entry

    def _labeller(self, metrics: list[dict[str, Any]]) -> tuple[CTRModel | None, str]:
        """The teacher that labels this partition and what the students learn from (their
        `student_labels`): the current teacher while it is healthy, else the guard's fallback:
        its last healthy version (no labeller, and the students skip the partition, if there
        was none) or the hard labels (no labeller)."""
        teacher = self.trainers[TEACHER].strategy.served_model()
        problem = self._health_problem(metrics)
        guard = self.config.teacher_guard  # set: only a guard finds problems
        # without a guard, one may be added later: keep the version a student watch would keep
        watches_students = guard is None or bool(guard.behind_students_for)
        was_healthy, self.state["healthy"] = self.state["healthy"], problem is None
        if problem is None:
            if not was_healthy:
                logger.warning("the teacher is healthy again: students distil from it")
            # a version behind the students may open the streak that the guard flags later:
            # the fallback is the version from before the streak
            if self.state["behind"] == 0 or not watches_students:
                self.state["healthy_teacher"] = _copy(teacher.state_dict())
            return teacher, "teacher"
        if guard is not None and guard.fallback == HARD_LABELS:
            logger.warning("teacher unhealthy (%s): students train on the hard labels", problem)
            return None, HARD_LABELS
        saved = self.state["healthy_teacher"]
        logger.warning("teacher unhealthy (%s): %s", problem,
                       "students distil from its last healthy version" if saved
                       else "no healthy version yet, students skip this partition")
        if not saved:
            return None, NO_LABELS
        fallback = copy.deepcopy(teacher)
        fallback.load_state_dict(saved)
        return fallback, "last_healthy_teacher"

    def _health_problem(self, metrics: list[dict[str, Any]]) -> str | None:
        """Why the teacher is unhealthy on this partition's progressive validation, or None."""
        guard = self.config.teacher_guard
        auc = {r["model"]: r["auc"] for r in metrics}
        teacher = auc.pop(TEACHER)
        best = max(auc.values())
        self.state["behind"] = self.state["behind"] + 1 if teacher < best else 0
        if guard is None:
            return None
        if guard.min_auc is not None and not teacher >= guard.min_auc:
            return f"AUC {teacher:.4f} below min_auc {guard.min_auc}"
        if guard.behind_students_for and self.state["behind"] >= guard.behind_students_for:
            return (f"AUC {teacher:.4f} below the best student's {best:.4f} for "
                    f"{self.state['behind']} partition(s)")
        return None

    def _grow_vocabulary(self, unseen: Counts) -> int:
        """At the partition's end: its unseen ids join the window's counts, and those that
        reached min_count get rows in every vocabulary, model, the last healthy teacher and
        the store's feature map. Returns the number of ids added."""
        setting, vocabulary = self.config.vocabulary, self.state["vocabulary"]
        added, vocabulary["window"] = grow([*vocabulary["window"], unseen][-setting.window:],
                                           setting.min_count)
        if not added:
            return 0
        vocabulary["added"] = extend(vocabulary["added"], added)
        self._grow_models(vocabulary["added"])
        return sum(len(a["values"]) for a in added.values())

    def _grow_models(self, added: Counts) -> None:
        """Vocabularies of the prepared dataset plus the `added` ids, and every model's
        embedding tables (with their optimizer state) to their sizes."""
        self.prepared = grown_state(self.base, added)
        sizes = vocab_sizes(self.prepared)
        saved = self.state["healthy_teacher"]
        if saved:
            teacher = copy.deepcopy(self.trainers[TEACHER].strategy.served_model())
            teacher.load_state_dict(saved)
            device = next(teacher.parameters()).device
            # its new rows do not move the RNG that the models' new rows are drawn from
            with torch.random.fork_rng(devices=[device.index] if device.type == "cuda" else []):
                grow_embeddings(teacher, sizes)
            self.state["healthy_teacher"] = _copy(teacher.state_dict())
        for trainer in self.trainers.values():
            grow_embeddings(trainer.strategy, sizes, trainer.optimizers)
            trainer.reshaped()  # under DDP: every rank takes rank 0's new rows
        if saved and self.group:  # and its copy of the last healthy teacher's
            self.state["healthy_teacher"] = distributed.broadcast(self.state["healthy_teacher"])
        self.state["store"]["feature_map_fingerprint"] = self.prepared.feature_map.fingerprint()

    def _label(self, teacher: CTRModel, rows: ColumnData, index: int, name: str) -> None:
        previous = self.state["processed"][-1]["name"] if self.state["processed"] else None
        if self.config.teacher_updates == "leaked":
            previous = name
        self.state["store"] = label_partition(self.store, self.state["store"], teacher,
                                              previous, rows, index, name, self.group)

    def _export(self, number: int) -> None:
        """Every student as bundle version `number` (written by rank 0); one already exported
        from the same parameters (a partition redone after a crash) is kept."""
        if not self.main:
            return
        version = version_name(number)
        for name in sorted(self.config.students):
            run = RunDirectory(self.out / "students" / name)
            model = self.trainers[name].strategy.served_model()
            with atomic_file(run.checkpoint()) as tmp:
                save_checkpoint(tmp, model, self.prepared.feature_map)
            if self.own_vocabulary:  # the bundle's preprocessing maps the grown or hashed ids
                write_state(self.prepared, self.config.data, run.path)
            elif not (run.path / "prepare").is_dir():
                copy_state(self.config.data, run.path)
            root = self.out / "bundles" / name
            target = root / version
            if not _same_bundle(target, run.checkpoint()):
                with torch.random.fork_rng(devices=[]):  # exporting must not move the RNG
                    export(run=run.path, output=target, format=self.config.export_format,
                           overwrite=True)
            set_latest(root, version)
            logger.info("exported %s as %s", name, target)


def _mean(rates: dict[str, float]) -> float:
    return sum(rates.values()) / max(len(rates), 1)


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _same_bundle(bundle: Path, checkpoint: Path) -> bool:
    manifest = bundle / MANIFEST_FILE
    return manifest.is_file() and json.loads(manifest.read_text()).get(
        "checkpoint_sha256") == file_sha256(checkpoint)


# --- the directory ----------------------------------------------------------------------------
def _lock(out: Path) -> int:
    """Hold the follow directory's lock (dropped by the kernel when the process dies)."""
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CtrDistillError(f"another follow process is running in {out}") from None
    return fd


def _committed(out: Path) -> int:
    path = out / STATE
    return len(torch.load(path, map_location="cpu", weights_only=True)["processed"]) \
        if path.is_file() else 0


def _start_or_resume(config: ContinualConfig, record: StrictConfig, out: Path,
                     reports: Collection[str]) -> None:
    """Empty `out` for a fresh start (overwrite), keep it to resume (the same models and
    data in `record`, the config as given), or refuse (another config with committed
    partitions)."""
    if config.overwrite and out.exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in FOLLOW_FILES
                         and p.name not in reports and not p.name.startswith("."))
        if foreign:
            raise CtrDistillError(f"{out} is not a follow directory (it holds "
                                  f"{', '.join(foreign)}); remove it yourself or choose another "
                                  "name or output_dir")
        logger.info("%s: overwrite: removing the old follow state", out)
        for entry in out.iterdir():
            if entry.name != ".lock":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        return
    saved = out / "config.json"
    if not saved.is_file():
        return
    changed = [key for key in config_changes(json.loads(saved.read_text()),
                                             json.loads(record.model_dump_json()))
               if key.split(".")[0] not in OPERATIONAL]
    if changed and _committed(out):
        raise CtrDistillError(
            f"{out} follows with another config (differs in: {', '.join(changed)}); resume with "
            "the same models and data, set overwrite: true to start over, or choose another name")


def _status(follower: _Follower, source: Source, out: Path) -> dict[str, Any]:
    processed = follower.state["processed"]
    done = follower.done
    ready = [p for p in source.complete() if p.name not in done]
    incomplete = source.waiting()
    waiting = ready + incomplete
    last = next((p for p in reversed(processed) if p["status"] == "done"), None)
    now = time.time()
    status = {
        "updated": now, "partitions_committed": len(processed),
        "last_committed": processed[-1]["name"] if processed else None,
        "last_committed_age_seconds": now - processed[-1]["committed"] if processed else None,
        "partitions_waiting": len(ready), "partitions_incomplete": len(incomplete),
        "oldest_waiting_age_seconds": (now - min(p.modified for p in waiting)
                                       if waiting else 0.0),
        "rows_per_second": last["rows_per_second"] if last else {},
        "quarantined": [{"name": p["name"], "error": p["error"]} for p in processed
                        if p["status"] == "quarantined"],
        "bundle_versions": follower.state["exports"]}
    with atomic_file(out / STATUS) as tmp:
        tmp.write_text(json.dumps(status, indent=1))
    return status


def read_status(directory: str | Path) -> dict[str, Any]:
    """The status a follow process last wrote into `directory`."""
    path = Path(directory) / STATUS
    if not path.is_file():
        raise CtrDistillError(f"{directory}: no {STATUS} (not a follow directory, or it has "
                              "not started)")
    return json.loads(path.read_text())


def follow(config: FollowConfig | dict[str, Any] | str | Path, **overrides: Any) -> Result:
    """Follow the landing zone (or, with `once: true`, process what has landed and stop)."""
    config = resolve(FollowConfig, config, **overrides)
    return follow_source(config, DirectorySource(config.landing), once=config.once,
                         poll_seconds=config.poll_seconds)


def follow_source(config: ContinualConfig, source: Source, *, once: bool = True,
                  poll_seconds: float = 10.0, record: StrictConfig | None = None,
                  reports: Collection[str] = ()) -> Result:
    """Process `source`'s partitions under `config` (and, unless `once`, look for new ones
    every `poll_seconds`). `record`: the config as its verb was given (default `config`),
    saved as config.json and compared on a restart; `reports`: files that verb writes into the
    directory beside follow's own (overwrite removes them too)."""
    group = distributed.group(resolve_device(config.train.device))
    if distributed.restarted():  # torchrun restarted the group after a failure: it resumes
        config = config.model_copy(update={"overwrite": False})
    record = record or config
    main = group is None or group.is_main
    prepared = PrepareState.load(config.data)
    out = config.output_dir / config.name
    fd = _lock(out) if main else None
    try:
        if main:
            _start_or_resume(config, record, out, reports)
            with atomic_file(out / "config.json") as tmp:
                tmp.write_text(record.model_dump_json(indent=1))
        if group:
            distributed.barrier()  # rank 0 has emptied or checked the directory
        follower = _Follower(config, prepared, out, source.location, group)
        follower.restore()
        status: dict[str, Any] = {}
        while True:
            new = [p for p in source.complete() if p.name not in follower.done] if main else []
            if group:  # the ranks take the partitions rank 0 saw, even if more land meanwhile
                new = distributed.broadcast(new)
            for partition in new:
                follower.process(source, partition)
                if main:
                    status = _status(follower, source, out)
                    logger.info("lag: %d partition(s) waiting, the oldest for %.0f s",
                                status["partitions_waiting"],
                                status["oldest_waiting_age_seconds"])
            if not new and main:
                status = _status(follower, source, out)
            if once:
                break
            if not new:
                time.sleep(poll_seconds)
    finally:
        if fd is not None:
            os.close(fd)
    processed = follower.state["processed"]
    return Result(out, status, follower.state["metrics"], processed,
                  f"{config.name}: progressive validation")


def describe_status(status: dict[str, Any]) -> str:
    """A few lines saying where a follow directory stands."""
    age = status["last_committed_age_seconds"]
    lines = [f"committed: {status['partitions_committed']} partition(s), last "
             f"{status['last_committed']}" + (f" ({age:.0f} s ago)" if age is not None else ""),
             f"waiting: {status['partitions_waiting']} complete, "
             f"{status['partitions_incomplete']} incomplete; oldest "
             f"{status['oldest_waiting_age_seconds']:.0f} s",
             f"bundle versions: {status['bundle_versions']}"]
    if status["rows_per_second"]:
        lines.append("rows/s: " + ", ".join(f"{stage} {rate:,.0f}" for stage, rate
                                           in status["rows_per_second"].items()))
    lines += [f"quarantined {q['name']}: {q['error']}" for q in status["quarantined"]]
    return "\n".join(lines)


def synth_landing(config: SynthConfig | dict[str, Any] | str | Path | None = None,
                  landing: str | Path = "landing", partitions: int = 4,
                  rows_per_partition: int = 100_000, new_ids_rate: float = 0.0,
                  interval_seconds: float = 0.0, **overrides: Any) -> Result:
    """Write synthetic partitions into `landing` as a live source would (see
    ctrdistill.continuous.synthetic); `drift` is per partition."""
    config = resolve(SynthConfig, config, **overrides)
    if partitions < 1 or rows_per_partition < 1:
        raise CtrDistillError("synth --landing needs --partitions and --rows-per-partition >= 1")
    if not 0 <= new_ids_rate < 1:
        raise CtrDistillError(f"--new-ids-rate must be in [0, 1), not {new_ids_rate}")
    names = write_landing(config, Path(landing), partitions, rows_per_partition, new_ids_rate,
                          interval_seconds)
    return Result(Path(landing), {"partitions": len(names), "rows": len(names)
                                  * rows_per_partition})
