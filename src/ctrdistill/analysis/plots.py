"""PNG plots of learning curves (written beside the JSON they are drawn from)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ctrdistill.storage import atomic_file


def plot_learning_curves(histories: dict[str, list[dict]], path: Path,
                         metrics: tuple[str, ...] = ("auc", "logloss")) -> Path:
    """One panel per metric; one line per run and output (e.g. 'student', 'student/peer0')."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for run, history in histories.items():
            rows = [r for r in history if "valid" in r]
            keys = sorted({k for r in rows for k in r["valid"]
                           if k == metric or k.endswith(f".{metric}")})
            for key in keys:
                steps = [r["step"] for r in rows if key in r["valid"]]
                values = [r["valid"][key] for r in rows if key in r["valid"]]
                label = run if key == metric else f"{run}/{key.rsplit('.', 1)[0]}"
                ax.plot(steps, values, marker="o", markersize=3, label=label)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"validation {metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_daily(histories: dict[str, list[dict]], path: Path,
               metrics: tuple[str, ...] = ("auc", "calibration")) -> Path:
    """Daily metrics of a stream: one panel per metric, teacher and student of every run."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for run, history in histories.items():
            days = [r["eval_day"] for r in history]
            for who, style in (("teacher", "--"), ("student", "-")):
                ax.plot(days, [r[who][metric] for r in history], style, marker="o",
                        markersize=3, label=f"{run} {who}")
        if metric == "calibration":
            ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xlabel("evaluation day")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def save_figure(fig, path: Path) -> Path:
    """Write a figure as PNG atomically and release it."""
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
