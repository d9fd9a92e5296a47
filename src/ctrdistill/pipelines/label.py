"""`ctrdistill label`: teachers score a prepared dataset once into a versioned label store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from ctrdistill.config import StrictConfig
from ctrdistill.labels.store import write_labels
from ctrdistill.pipelines.common import Result, resolve
from ctrdistill.storage import built_in_place
from ctrdistill.training.config import DEVICE_HELP, DEVICE_PATTERN


class LabelConfig(StrictConfig):
    teachers: list[Path] = Field(min_length=1, description="teacher run directories (an "
                                 "ensemble if several)")
    data: Path = Field(description="a prepared dataset")
    output: Path = Field(description="the label store directory")
    splits: list[str] | None = Field(None, description="only these splits (default: all)")
    days: list[int] | None = Field(None, description="only these days (default: all)")
    hidden: bool = Field(False, description="also store the teachers' hidden vectors (for gates "
                         "and hint losses)")
    relabel: bool = Field(False, description="replace partitions labelled by another teacher "
                          "set (default: refuse)")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description=DEVICE_HELP)
    progress: bool = Field(True, description="show a progress bar (display only)")


def _has_partitions(store: Path) -> bool:
    """Whether a failed labelling finished some partitions (kept: the next run resumes)."""
    folder = store / "partitions"
    return folder.is_dir() and any(folder.iterdir())


def label(config: LabelConfig | dict[str, Any] | str | Path | None = None,
          **overrides: Any) -> Result:
    """Label `config.data` with the teachers; an interrupted labelling resumes where it
    stopped. Returns the store's path with partition and row counts as metrics."""
    config = resolve(LabelConfig, config, **overrides)
    with built_in_place(config.output, keep=_has_partitions):
        store = write_labels(config.teachers, config.data, config.output, splits=config.splits,
                             days=config.days, show_progress=config.progress,
                             hidden=config.hidden, relabel=config.relabel, device=config.device)
    partitions = store.manifest["partitions"]
    return Result(config.output, {"partitions": len(partitions),
                                  "rows": sum(p["rows"] for p in partitions.values()),
                                  "teacher_versions": len(store.teacher_versions)})
