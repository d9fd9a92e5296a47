"""The label store of a follow run: each arrived partition scored once by the teacher of that
time, in the format of `ctrdistill.labels.store` (its `LabelStore` reads it): one Parquet file
per partition and a manifest listing them, a new teacher version for every partition.

Write protocol: the partition's file is written atomically under a name fixed by its index,
then the manifest. The follow state (its commit) holds the manifest too, so a restart
republishes the committed manifest and removes the files of partitions that were labelled but
not committed; relabelling such a partition rewrites the same file with the same labels.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from ctrdistill.data.dataset import ColumnData, row_ids_digest
from ctrdistill.data.schema import FeatureMap
from ctrdistill.labels.store import FORMAT_VERSION, HIDDEN, LOGITS, MANIFEST, teacher_logits
from ctrdistill.models.base import CTRModel
from ctrdistill.storage import atomic_file
from ctrdistill.training import distributed

SPLIT = "train"  # a partition's rows are all training rows, once they have been evaluated


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def parameters_sha256(model: CTRModel) -> str:
    """Identity of a model's parameters and buffers (a teacher version without a file)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def empty_manifest(feature_map: FeatureMap, source: str, hidden: bool) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "teacher_versions": [],
            "feature_map_fingerprint": feature_map.fingerprint(), "data": source,
            "data_fingerprint": f"follow:{source}", "hidden": hidden, "created": _now(),
            "partitions": {}}


def _scores(teacher: CTRModel, rows: ColumnData, hidden: bool,
            group: distributed.Group | None) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The teacher's logits (and hidden vectors) on every row; under a group each rank scores
    its share and rank 0 alone gets them all (None on the others)."""
    if group is None:
        return teacher_logits([teacher], rows, hidden=hidden)
    start, end = distributed.shard_bounds(len(rows), group.rank, group.world)
    share = teacher_logits([teacher], rows.subset(torch.arange(start, end)), hidden=hidden) \
        if end > start else None
    parts = [p for p in distributed.gather(share) or [] if p is not None]
    if not group.is_main:
        return None
    return (np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]) if hidden else None)


def label_partition(store: Path, manifest: dict[str, Any], teacher: CTRModel,
                    trained_through: str | None, rows: ColumnData, index: int, name: str,
                    group: distributed.Group | None = None) -> dict[str, Any]:
    """Score `rows` (partition number `index`, called `name`) with `teacher` into `store`; the
    manifest with this partition (and its teacher version) is written and returned. Under a
    DDP `group` the ranks share the scoring, rank 0 writes, and every rank gets the manifest
    once it is written."""
    manifest = json.loads(json.dumps(manifest))  # the committed one stays as it was
    scores = _scores(teacher, rows, manifest["hidden"], group)
    if scores is not None:
        manifest = _write(store, manifest, teacher, trained_through, rows, scores, index, name)
    return manifest if group is None else distributed.broadcast(manifest)


def _write(store: Path, manifest: dict[str, Any], teacher: CTRModel,
           trained_through: str | None, rows: ColumnData,
           scores: tuple[np.ndarray, np.ndarray | None], index: int,
           name: str) -> dict[str, Any]:
    logits, vectors = scores
    labels = pl.DataFrame({"row_id": rows.row_id.numpy(), LOGITS: logits}
                          | ({} if vectors is None else {HIDDEN: vectors}))
    file = f"partitions/p{index:06d}.parquet"
    with atomic_file(store / file) as tmp:
        labels.write_parquet(tmp)
    sha = parameters_sha256(teacher)
    versions = manifest["teacher_versions"]
    known = [i for i, v in enumerate(versions) if v["teachers"][0]["checkpoint_sha256"] == sha]
    if not known:  # a teacher that labelled before (the last healthy one) keeps its version
        versions.append({
            "teachers": [{"run": f"teacher trained through {trained_through}",
                          "checkpoint_sha256": sha, "model": teacher.config.name,
                          "hidden_dim": teacher.hidden_dim}], "created": _now()})
    manifest["partitions"][name] = {
        "split": SPLIT, "day": index, "file": file, "rows": len(labels),
        "row_ids": row_ids_digest(rows.row_id.numpy()),
        "teacher_version": known[0] if known else len(versions) - 1, "created": _now()}
    publish(store, manifest)
    return manifest


def publish(store: Path, manifest: dict[str, Any]) -> None:
    """Write `manifest` and remove partition files it does not list (labelled, uncommitted)."""
    with atomic_file(store / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    listed = {entry["file"] for entry in manifest["partitions"].values()}
    for path in (store / "partitions").glob("p*.parquet"):
        if f"partitions/{path.name}" not in listed:
            path.unlink(missing_ok=True)
