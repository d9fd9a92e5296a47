"""The teacher label store: teacher logits (and optionally their hidden vectors) keyed by row
id, one Parquet partition per source shard and day of the prepared data, listed in a manifest.

Write protocol: a partition is written to a temporary file and renamed into place, then the
manifest (also replaced atomically) gains its entry. Readers trust only the manifest, so they
see complete partitions only; an interrupted labelling resumes by redoing the partitions the
manifest lacks, which neither duplicates nor loses rows (partitions are deterministic).

Teacher versions: every partition records the teacher set (checkpoint hashes) that scored it.
A follow or stream run labels successive partitions with successive versions of its teacher,
and readers join them as listed. Labelling a partition that exists under another version is
refused unless `relabel=True`: the new labels go to a new file, the manifest then points at it,
and only then is the old file removed, so each partition switches versions atomically.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ctrdistill.data.batch import TEACHER_HIDDEN, TEACHER_LOGITS
from ctrdistill.data.dataset import ColumnData, PreparedData, frame_to_columns, row_ids_digest
from ctrdistill.errors import CtrDistillError
from ctrdistill.files import PREPARE, RELABEL, read_json, read_parquet, reading
from ctrdistill.models.base import CTRModel
from ctrdistill.progress import progress
from ctrdistill.rundir import RunDirectory
from ctrdistill.storage import atomic_file
from ctrdistill.strategies.ensemble import teacher_outputs
from ctrdistill.training import distributed
from ctrdistill.training.checkpoint import load_checkpoint
from ctrdistill.training.device import resolve_device
from ctrdistill.training.inference import collect, model_device

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
LOGITS = TEACHER_LOGITS
HIDDEN = TEACHER_HIDDEN


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LabelStore:
    """Read side: partitions listed in the manifest, checked against the data they label."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            raise CtrDistillError(f"not a teacher label store: {manifest} is missing")
        self.manifest: dict[str, Any] = _read_manifest(manifest)

    @property
    def teacher_versions(self) -> list[dict[str, Any]]:
        return self.manifest["teacher_versions"]

    @property
    def has_hidden(self) -> bool:
        return bool(self.manifest.get("hidden", False))

    def teachers(self, teacher_version: int | None = None) -> list[dict[str, Any]]:
        """The teacher entries of one version (default: the latest)."""
        versions = self.teacher_versions
        if teacher_version is None:
            return versions[-1]["teachers"]
        if not 0 <= teacher_version < len(versions):
            raise CtrDistillError(f"label store {self.path} has teacher versions "
                                  f"0..{len(versions) - 1}, not {teacher_version}")
        return versions[teacher_version]["teachers"]

    def partitions(self, split: str, days: list[int] | None = None,
                   teacher_version: int | None = None) -> list[dict[str, Any]]:
        if teacher_version is not None:
            self.teachers(teacher_version)  # refuses an unknown version
        return [p for p in self.manifest["partitions"].values()
                if p["split"] == split and (days is None or p["day"] in days)
                and (teacher_version is None or p["teacher_version"] == teacher_version)]

    def _shape(self, version: int) -> tuple[int, int]:
        """(number of teachers, stored hidden width) of a teacher version's partitions."""
        teachers = self.teachers(version)
        return len(teachers), sum(t["hidden_dim"] for t in teachers) if self.has_hidden else 0

    def check(self, data: PreparedData) -> None:
        """Refuse a store made for other data (feature map, or rows)."""
        if self.manifest["feature_map_fingerprint"] != data.feature_map.fingerprint():
            raise CtrDistillError(f"label store {self.path} was made for a different feature map "
                                  f"than {data.path}")
        if self.manifest["data_fingerprint"] != data.fingerprint():
            raise CtrDistillError(f"label store {self.path} does not match the rows of "
                                  f"{data.path} (data fingerprint differs)")

    def frame(self, split: str, days: list[int] | None = None,
              teacher_version: int | None = None) -> pl.DataFrame:
        """The labels of `split` (optionally some days, or one teacher version's partitions).

        Partitions of several teacher versions are concatenated as listed (a stream labels each
        day with the teacher of that time) only when every version has the same number of
        teachers (and hidden width): logit k must mean the same teacher slot in every row.
        """
        parts = self.partitions(split, days, teacher_version)
        if not parts:
            raise CtrDistillError(
                f"label store {self.path} has no labels for split '{split}'"
                + ("" if days is None else f" on days {days}")
                + ("" if teacher_version is None else f" by teacher version {teacher_version}"))
        shapes = {v: self._shape(v) for v in sorted({p["teacher_version"] for p in parts})}
        if len(set(shapes.values())) > 1:
            described = ", ".join(f"version {v}: {n} teacher(s)" + (f", hidden {h}" if h else "")
                                  for v, (n, h) in shapes.items())
            raise CtrDistillError(
                f"label store {self.path}: the '{split}' labels come from teacher versions of "
                f"different shapes ({described}); select one teacher version")
        frames = []
        for part in parts:
            with reading(self.path / part["file"], RELABEL):
                try:
                    frames.append(pl.read_parquet(self.path / part["file"]))
                except FileNotFoundError:
                    raise CtrDistillError(f"label store {self.path}: {part['file']} was "
                                          "relabelled while being read; open the store again"
                                          ) from None
        return pl.concat(frames)

    def join(self, rows: ColumnData, split: str, days: list[int] | None = None,
             hidden: bool = False, teacher_version: int | None = None) -> ColumnData:
        """Attach the stored teacher logits (and hidden vectors) to `rows`; every row must be
        labelled. `teacher_version` restricts the labels to that version's partitions."""
        if hidden and not self.has_hidden:
            raise CtrDistillError(f"label store {self.path} holds no teacher hidden vectors; "
                                  "label it again with hidden vectors (ctrdistill label --hidden)")
        return rows.join(self.frame(split, days, teacher_version),
                         [LOGITS, HIDDEN] if hidden else [LOGITS])


def _teacher_entry(run: Path, teacher: CTRModel) -> dict[str, Any]:
    checkpoint = RunDirectory(run).checkpoint() if run.is_dir() else run
    return {"run": str(run), "checkpoint_sha256": file_sha256(checkpoint),
            "model": teacher.config.name, "hidden_dim": teacher.hidden_dim}


def teacher_logits(teachers: list[CTRModel], rows: ColumnData, batch_size: int = 16384,
                   hidden: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows, teachers) logits and, when asked, (rows, sum of hidden dims) hidden vectors."""
    for teacher in teachers:
        teacher.eval()

    def outputs(batch):
        logits, vectors = teacher_outputs(batch, teachers, hidden)
        return ({LOGITS: logits} | ({} if vectors is None else {HIDDEN: vectors})), {}

    values = collect(outputs, rows, batch_size, model_device(teachers[0]))[0]
    return values[LOGITS], values.get(HIDDEN)


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    with atomic_file(path / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest = read_json(path, RELABEL)
    with reading(path, RELABEL):  # every key readers index, so a missing one is named here
        missing = [key for key in ("teacher_versions", "partitions", "feature_map_fingerprint",
                                   "data_fingerprint") if key not in manifest]
        if missing:
            raise KeyError(missing[0])
    return manifest


def _open_manifest(out: Path, data: PreparedData, fingerprint: str,
                   hidden: bool) -> dict[str, Any]:
    path = out / MANIFEST
    if path.is_file():
        manifest = _read_manifest(path)
        if manifest["data_fingerprint"] != fingerprint:
            raise CtrDistillError(f"{out} holds labels of other data; choose a new store path")
        if manifest.get("hidden", False) != hidden:
            raise CtrDistillError(f"{out} was labelled {'with' if not hidden else 'without'} "
                                  "teacher hidden vectors; label it the same way or choose a "
                                  "new store path")
        return manifest
    return {"format_version": FORMAT_VERSION, "teacher_versions": [],
            "feature_map_fingerprint": data.feature_map.fingerprint(), "data": str(data.path),
            "data_fingerprint": fingerprint, "hidden": hidden, "created": _now(),
            "partitions": {}}


def _teacher_version(manifest: dict[str, Any], entries: list[dict[str, Any]]) -> int:
    """Index of this teacher set among the store's versions (added when new)."""
    hashes = [t["checkpoint_sha256"] for t in entries]
    for index, version in enumerate(manifest["teacher_versions"]):
        if [t["checkpoint_sha256"] for t in version["teachers"]] == hashes:
            return index
    manifest["teacher_versions"].append({"teachers": entries, "created": _now()})
    return len(manifest["teacher_versions"]) - 1


def _plan(data: PreparedData, splits: list[str], days: list[int] | None
          ) -> list[tuple[str, Path, list[tuple[int | None, str]]]]:
    """(split, shard, [(day, partition key)]) for every partition to label; reads days only."""
    if days is not None and not data.feature_map.has_day:
        raise CtrDistillError(f"{data.path} has no day column to select days from")
    plan = []
    for split in splits:
        for shard in data.shards(split):
            if data.feature_map.has_day:
                found = read_parquet(shard, PREPARE, columns=["day"])["day"].unique().to_list()
                shard_days: list[int | None] = sorted(d for d in found
                                                      if days is None or d in days)
            else:
                shard_days = [None]
            keys = [(day, f"{split}/{shard.stem}" + ("" if day is None else f"/day={day}"))
                    for day in shard_days]
            plan.append((split, shard, keys))
    return plan


def write_labels(teacher_runs: list[Path], data_path: Path, out: Path,
                 splits: list[str] | None = None,
                 days: list[int] | None = None, show_progress: bool = True,
                 stop_after: int | None = None, hidden: bool = False,
                 relabel: bool = False, device: str = "auto") -> LabelStore:
    """Score rows of `data_path` once with the teachers and store their logits (and, with
    `hidden`, their concatenated hidden vectors, for gates and hint losses).

    One partition per (split, shard[, day]). Partitions this teacher set already labelled are
    kept, so an interrupted labelling resumes where it stopped; new partitions (new days) may
    come from a newer teacher version. Partitions labelled by another teacher set are
    refused, or replaced atomically with `relabel`. Under torchrun the partitions to label are
    dealt out to the ranks, and rank 0 lists them all in the manifest at the end: the store is
    the same as one process writes. `stop_after` (partitions) exists to test interruption.
    """
    data = PreparedData(data_path)
    target = resolve_device(device)
    group = distributed.group(target)
    main = group is None or group.is_main
    teachers = [load_checkpoint(run, data.feature_map)[0].to(target) for run in teacher_runs]
    entries = [_teacher_entry(Path(run), t) for run, t in zip(teacher_runs, teachers, strict=True)]
    manifest = _open_manifest(out, data, data.fingerprint(), hidden)
    version = _teacher_version(manifest, entries)
    plan = _plan(data, splits or [s for s, n in data.feature_map.splits.items() if n], days)
    existing = manifest["partitions"]
    other = [key for _, _, keys in plan for _, key in keys
             if key in existing and existing[key]["teacher_version"] != version]
    if other and not relabel:
        raise CtrDistillError(
            f"{out}: {len(other)} partition(s) (e.g. {other[0]}) were labelled by another "
            "teacher set; label into a new store path, or relabel them with these teachers "
            "(relabel=True, ctrdistill label --relabel)")
    todo = [(split, shard, day, key) for split, shard, keys in plan for day, key in keys
            if key not in existing or existing[key]["teacher_version"] != version]
    if main:
        out.mkdir(parents=True, exist_ok=True)
        _write_manifest(out, manifest)
        (out / "partitions").mkdir(exist_ok=True)
    order = {key: index for index, (_, _, _, key) in enumerate(todo)}
    if group:
        distributed.barrier()  # the store's folders exist
        todo = todo[group.rank::group.world]
    labelled: list[tuple[str, dict[str, Any]]] = []
    with progress(None, "label", "rows", show_progress and main) as bar:
        frames: dict[Path, pl.DataFrame] = {}
        for split, shard, day, key in todo:
            if stop_after is not None and len(labelled) >= stop_after:
                break
            frame = frames.setdefault(shard, read_parquet(shard, PREPARE))
            part = frame if day is None else frame.filter(pl.col("day") == day)
            rows = frame_to_columns(part, data.feature_map)
            logits, vectors = teacher_logits(teachers, rows, hidden=hidden)
            labels = pl.DataFrame({"row_id": rows.row_id.numpy(), LOGITS: logits}
                                  | ({} if vectors is None else {HIDDEN: vectors}))
            # The version in the name: a relabelled partition never overwrites the file that
            # the manifest (and any reader) still points at.
            name = "partitions/" + key.replace("/", "-").replace("=", "") + f"-v{version}.parquet"
            with atomic_file(out / name) as tmp:
                labels.write_parquet(tmp)
            entry = {"split": split, "day": day, "file": name, "rows": len(labels),
                     "row_ids": row_ids_digest(rows.row_id.numpy()),
                     "teacher_version": version, "created": _now()}
            labelled.append((key, entry))
            if group is None:  # listed at once: an interrupted run keeps what it finished
                _list_partitions(out, manifest, [(key, entry)])
            bar.update(len(labels))
    if group:
        gathered = [item for part in distributed.all_gather(labelled) for item in part]
        if main:
            # In plan order, as one process lists them.
            _list_partitions(out, manifest, sorted(gathered, key=lambda item: order[item[0]]))
        distributed.barrier()
    return LabelStore(out)


def _list_partitions(out: Path, manifest: dict[str, Any],
                     labelled: list[tuple[str, dict[str, Any]]]) -> None:
    """Add finished partitions to the manifest (they exist for readers only now), then remove
    the files of the versions they replace."""
    existing = manifest["partitions"]
    replaced = [existing[key]["file"] for key, entry in labelled
                if key in existing and existing[key]["file"] != entry["file"]]
    existing.update(dict(labelled))
    _write_manifest(out, manifest)
    for name in replaced:
        (out / name).unlink(missing_ok=True)
