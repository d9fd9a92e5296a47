"""Progressive validation's outputs: `metrics.parquet` (one row per partition and model, scored
before the models trained on it) and its plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from ctrdistill.analysis.plots import pyplot, save_figure, whole_number_ticks
from ctrdistill.storage import atomic_file

#: How the plot names and colours what students learned from while the teacher was unhealthy
#: (`student_labels` of metrics.parquet).
UNHEALTHY_LABELS = {"none": "skip (not distilled)", "last_healthy_teacher":
                    "on its last healthy version", "hard_labels": "on hard labels"}
UNHEALTHY_COLORS = {"hard_labels": "tab:orange", "last_healthy_teacher": "tab:purple"}


def write_metrics(rows: list[dict[str, Any]], path: Path) -> None:
    with atomic_file(path) as tmp:
        pl.DataFrame(rows, infer_schema_length=None).write_parquet(tmp)


def plot_metrics(rows: list[dict[str, Any]], path: Path) -> Path:
    """Progressive AUC per model against the partition (with the Bayes AUC when the data has
    p_true), and the OOV rate of the partition's ids."""
    plt = pyplot()
    fig, (auc_ax, oov_ax) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True,
                                         height_ratios=(3, 1))
    frame = pl.DataFrame(rows, infer_schema_length=None)
    for (model,), part in frame.group_by("model", maintain_order=True):
        auc_ax.plot(part["index"], part["auc"], marker="o", ms=3,
                    label=f"{model} ({part['role'][0]})")
    data = frame.unique("index", keep="first", maintain_order=True)
    if "teacher_healthy" in frame.columns:
        unhealthy = data.filter(~pl.col("teacher_healthy")).select(
            "index", pl.col("student_labels") if "student_labels" in data.columns
            else pl.lit("none"))
        labelled = set()
        for index, labels in unhealthy.iter_rows():
            auc_ax.axvspan(index - 0.5, index + 0.5, color=UNHEALTHY_COLORS.get(labels, "tab:red"),
                           alpha=0.12, lw=0, label=None if labels in labelled else
                           f"teacher unhealthy: students {UNHEALTHY_LABELS.get(labels, labels)}")
            labelled.add(labels)
    if "bayes_auc" in frame.columns:
        auc_ax.plot(data["index"], data["bayes_auc"], "k--", lw=1, label="Bayes AUC")
    auc_ax.set_ylabel("progressive AUC (before training)")
    auc_ax.legend(fontsize=8)
    auc_ax.grid(alpha=0.3)
    oov_ax.plot(data["index"], data["oov_rate"], color="tab:gray", marker=".",
                label="as encoded")
    if "oov_rate_prepared" in data.columns:  # a growing vocabulary against the prepared one
        oov_ax.plot(data["index"], data["oov_rate_prepared"], color="tab:gray", ls=":",
                    label="prepared vocabulary alone")
        oov_ax.legend(fontsize=8)
    oov_ax.set_ylabel("OOV rate")
    oov_ax.set_xlabel("partition (arrival order)")
    oov_ax.grid(alpha=0.3)
    whole_number_ticks(oov_ax, data["index"].to_list())
    return save_figure(fig, path)
