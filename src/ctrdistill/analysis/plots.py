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
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
