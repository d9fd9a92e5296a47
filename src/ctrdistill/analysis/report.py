"""The results table every command prints and saves: one row per model or output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ctrdistill.storage import atomic_file

COLUMNS = [
    ("model", "model", "{}"),
    ("params", "params", "{:,}"),
    ("model_bytes", "bytes", "{:,}"),
    ("auc", "AUC", "{:.5f}"),
    ("logloss", "logloss", "{:.5f}"),
    ("calibration", "calib", "{:.4f}"),
    ("gauc", "gAUC", "{:.5f}"),
    ("bayes_auc", "Bayes AUC", "{:.5f}"),
    ("auc_gap", "AUC gap", "{:.5f}"),
    ("logloss_gap", "logloss gap", "{:.5f}"),
    ("gap_to_lr", "AUC - LR", "{:+.5f}"),
    ("ratio_to_criteo", "x Criteo gap", "{:.2f}"),
    ("train_samples_per_second", "train/s", "{:,.0f}"),
    ("inference_samples_per_second", "infer/s", "{:,.0f}"),
    ("latency_ms", "ms@1", "{:.3f}"),
    ("speedup", "speed-up", "{:.1f}x"),
    ("gap_recovered", "gap recovered", "{:.0%}"),
]
#: What each column means, printed under every table (headers alone leave "calib" a guess).
LEGEND = {
    "params": "parameters of the served model (an ensemble: its teachers and combiner)",
    "auc": "ROC AUC",
    "logloss": "mean binary cross-entropy",
    "calibration": "mean predicted CTR / observed CTR (1 = calibrated)",
    "gauc": "AUC within each group, weighted by group size",
    "bayes_auc": "AUC of the hidden click probability p_true (the best any model can reach)",
    "auc_gap": "Bayes AUC - AUC",
    "logloss_gap": "logloss - Bayes logloss",
    "gap_to_lr": "AUC minus LR's AUC on the same rows",
    "ratio_to_criteo": "that gap / the same model's gap on BARS Criteo_x4_001",
    "train_samples_per_second": "training samples/s",
    "inference_samples_per_second": "inference samples/s at batch 4096",
    "model_bytes": "bytes of the served model's parameters and buffers",
    "latency_ms": "milliseconds to score one row alone (batch 1)",
    "speedup": "inference samples/s at batch 4096 / the teacher's",
    "gap_recovered": "(AUC distilled - AUC alone) / (AUC teacher - AUC alone)",
}


def result_row(name: str, metrics: dict[str, Any], split: str = "test",
               output: str | None = None) -> dict[str, Any]:
    """A table row from a run's metrics.json (optionally one named output of a strategy)."""
    values = metrics[split]
    prefix = f"{output}." if output else ""
    row: dict[str, Any] = {"model": name}
    for key in ("auc", "logloss", "calibration", "gauc", "bayes_auc", "auc_gap", "logloss_gap"):
        if prefix + key in values:
            row[key] = values[prefix + key]
    for key in ("params", "model_bytes", "train_samples_per_second",
                "inference_samples_per_second", "latency_ms"):
        if key in metrics and output is None:
            row[key] = metrics[key]
    return row


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _columns(rows: list[dict[str, Any]]):
    return [c for c in COLUMNS if any(c[0] in r for r in rows)]


def legend(rows: list[dict[str, Any]]) -> str:
    """One line defining every column the table of `rows` shows."""
    return "; ".join(f"{header}: {LEGEND[key]}" for key, header, _ in _columns(rows)
                     if key in LEGEND)


def print_table(rows: list[dict[str, Any]], title: str, console: Console | None = None) -> None:
    table = Table(title=title)
    columns = _columns(rows)
    for _, header, _ in columns:
        table.add_column(header, justify="left" if header == "model" else "right")
    for row in rows:
        table.add_row(*(_cell(row, key, fmt) for key, _, fmt in columns))
    # Off a terminal rich assumes 80 columns, which truncates the numbers people compare.
    console = console or Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)
    text = legend(rows)
    if text:
        console.print(text, markup=False, highlight=False)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    columns = _columns(rows)
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r, k, f) for k, _, f in columns) + " |" for r in rows]
    text = legend(rows)
    return "\n".join(lines) + "\n" + (f"\n{text}\n" if text else "")


def save_table(rows: list[dict[str, Any]], directory: Path, stem: str = "results") -> None:
    with atomic_file(directory / f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(rows, indent=1))
    with atomic_file(directory / f"{stem}.md") as tmp:
        tmp.write_text(markdown_table(rows))
