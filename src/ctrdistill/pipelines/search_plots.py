"""What a teacher search writes besides runs: the trials table (markdown + JSON) and its plots
(Optuna's optimization history and parameter importances, and teacher AUC against student
AUC), each a PNG."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from ctrdistill.analysis.plots import save_figure
from ctrdistill.storage import atomic_file

logger = logging.getLogger(__name__)

#: Fewer complete trials than this: no parameter importances (they would be noise).
MIN_IMPORTANCE_TRIALS = 4
COLUMNS = ("trial", "state", "teacher", "params", "teacher_auc", "student_auc",
           "confirmed_student_auc", "seconds", "pruned_at", "pruned_at_rows", "trained", "run")


def _row(trial: Any, confirmed: dict[int, float]) -> dict[str, Any]:
    a = trial.user_attrs
    teacher = ", ".join(f"{k}={v}" for k, v in trial.params.items())
    return {"trial": trial.number, "state": trial.state.name, "teacher": teacher,
            "config": a.get("teacher"), "params": a.get("params_count"),
            "teacher_auc": a.get("teacher_auc"), "student_auc": a.get("student_auc"),
            "confirmed_student_auc": confirmed.get(trial.number), "seconds": a.get("seconds"),
            "teacher_seconds": a.get("teacher_seconds"),
            "pruned_at": a.get("pruned_at"), "pruned_at_rows": a.get("pruned_at_rows"),
            "trained": a.get("trained"), "run": a.get("run")}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.5f}" if isinstance(value, float) and value < 1 else \
        f"{value:.1f}" if isinstance(value, float) else str(value)


def save_trials(trials: list[Any], confirmed: dict[int, float], root: Path
                ) -> list[dict[str, Any]]:
    """trials.json (every field, the teacher's resolved config included) and trials.md."""
    rows = [_row(t, confirmed) for t in sorted(trials, key=lambda t: t.number)]
    with atomic_file(root / "trials.json") as tmp:
        tmp.write_text(json.dumps(rows, indent=1))
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in COLUMNS) + " |" for r in rows]
    legend = ("params: the teacher's parameters; AUCs on the valid split (student: the proxy "
              "run; confirmed: the full run); seconds: the trial's wall clock (trained: "
              "False when it reused a teacher another trial trained); pruned_at, pruned_at_rows: "
              "the teacher's step and training rows seen when the pruner stopped its training "
              "(no run is kept)")
    with atomic_file(root / "trials.md") as tmp:
        tmp.write_text("\n".join(lines) + f"\n\n{legend}\n")
    return rows


def _scatter(rows: list[dict[str, Any]], path: Path) -> None:
    points = [r for r in rows if r["student_auc"] is not None]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.scatter([r["teacher_auc"] for r in points], [r["student_auc"] for r in points])
    for r in points:
        ax.annotate(str(r["trial"]), (r["teacher_auc"], r["student_auc"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("teacher valid AUC")
    ax.set_ylabel("student valid AUC (proxy run)")
    ax.set_title("each trial's teacher and the student distilled from it")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def save_plots(study: Any, rows: list[dict[str, Any]], root: Path) -> list[str]:
    """The plots as PNG; returns notes on those skipped."""
    import optuna
    from optuna.visualization import matplotlib as views

    notes = []
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    # Optuna marks its matplotlib views experimental, and they switch the global style to
    # ggplot: rc_context restores it.
    with warnings.catch_warnings(), plt.rc_context():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = views.plot_optimization_history(study)
        save_figure(ax.figure, root / "optimization_history.png")
        if len(complete) >= MIN_IMPORTANCE_TRIALS:
            ax = views.plot_param_importances(study)
            save_figure(ax.figure, root / "param_importances.png")
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        notes.append(f"param_importances.png skipped: {len(complete)} complete trials "
                     f"(< {MIN_IMPORTANCE_TRIALS})")
    if any(r["student_auc"] is not None for r in complete):
        _scatter(complete, root / "teacher_vs_student.png")
    else:
        notes.append("teacher_vs_student.png skipped: no student AUC (objective teacher)")
    for note in notes:
        logger.info("search: %s", note)
    return notes
