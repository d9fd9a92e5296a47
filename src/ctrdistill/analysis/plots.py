"""PNG plots of learning curves (written beside the JSON they are drawn from). Each plot has a
`*_figure` function returning the matplotlib Figure (what tests inspect) and a `plot_*`
function saving it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrdistill.storage import atomic_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def pyplot() -> Any:
    """matplotlib's pyplot on the file backend, imported when a plot is drawn: scoring and
    preparing data, which import this module through the run writer, never draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def whole_number_ticks(ax, values: list[int]) -> None:
    """Ticks only at whole numbers (steps, days): every value when there are few, as a
    locator cannot find integers inside a one-point range."""
    if len(set(values)) <= 10:
        ax.set_xticks(sorted(set(values)))
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _curves(histories: dict[str, list[dict]], metric: str
            ) -> dict[str, tuple[str, list, list]]:
    """label -> (run, steps, values) of every run and output that reports `metric` on valid."""
    curves = {}
    for run, history in histories.items():
        rows = [r for r in history if "valid" in r]
        keys = sorted({k for r in rows for k in r["valid"]
                       if k == metric or k.endswith(f".{metric}")})
        for key in keys:
            label = run if key == metric else f"{run}/{key.rsplit('.', 1)[0]}"
            curves[label] = (run, [r["step"] for r in rows if key in r["valid"]],
                             [r["valid"][key] for r in rows if key in r["valid"]])
    return curves


def learning_curves_figure(histories: dict[str, list[dict]],
                           metrics: tuple[str, ...] = ("auc", "logloss"),
                           best_steps: dict[str, int | None] | None = None,
                           title: str | None = None, rows: str = "validation") -> Figure:
    """One panel per metric; one line per run and output (e.g. 'student', 'student/peer0'),
    in the same colour on every panel; a star on each run's kept step (`best_steps`); `rows`
    names what the figures were measured on."""
    best_steps = best_steps or {}
    per_metric = {metric: _curves(histories, metric) for metric in metrics}
    labels = sorted({label for curves in per_metric.values() for label in curves})
    colour = {label: f"C{index % 10}" for index, label in enumerate(labels)}
    fig, axes = pyplot().subplots(1, len(metrics), figsize=(6 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for label in (label for label in labels if label in per_metric[metric]):
            run, steps, values = per_metric[metric][label]
            ax.plot(steps, values, marker="o", markersize=3, label=label, color=colour[label])
            best = best_steps.get(run)
            if best in steps:
                ax.plot([best], [values[steps.index(best)]], marker="*", markersize=12,
                        color=colour[label], markeredgecolor="black", linestyle="none")
        if best_steps:
            ax.plot([], [], marker="*", markersize=10, color="white", markeredgecolor="black",
                    linestyle="none", label="kept (best) step")
        whole_number_ticks(ax, [s for _, steps, _ in per_metric[metric].values() for s in steps])
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{rows} {metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title or f"learning curves: {', '.join(histories)}")
    return fig


def plot_learning_curves(histories: dict[str, list[dict]], path: Path,
                         metrics: tuple[str, ...] = ("auc", "logloss"),
                         best_steps: dict[str, int | None] | None = None,
                         title: str | None = None, rows: str = "validation") -> Path:
    return save_figure(learning_curves_figure(histories, metrics, best_steps, title, rows), path)


def daily_figure(histories: dict[str, list[dict]],
                 metrics: tuple[str, ...] = ("auc", "calibration")) -> Figure:
    """Daily metrics of a stream: one panel per metric, teacher and student of every run."""
    fig, axes = pyplot().subplots(1, len(metrics), figsize=(6 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for run, history in histories.items():
            days = [r["eval_day"] for r in history]
            for who, style in (("teacher", "--"), ("student", "-")):
                ax.plot(days, [r[who][metric] for r in history], style, marker="o",
                        markersize=3, label=f"{run} {who}")
        if metric == "calibration":
            ax.axhline(1.0, color="grey", linewidth=0.8)
        whole_number_ticks(ax, [r["eval_day"] for h in histories.values() for r in h])
        ax.set_xlabel("evaluation day")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def plot_daily(histories: dict[str, list[dict]], path: Path,
               metrics: tuple[str, ...] = ("auc", "calibration")) -> Path:
    return save_figure(daily_figure(histories, metrics), path)


def save_figure(fig: Figure, path: Path) -> Path:
    """Write a figure as PNG atomically and release it."""
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    pyplot().close(fig)
    return path
