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
    ("auc", "AUC", "{:.5f}"),
    ("logloss", "logloss", "{:.5f}"),
    ("calibration", "calib", "{:.4f}"),
    ("gauc", "gAUC", "{:.5f}"),
    ("auc_gap", "AUC gap", "{:.5f}"),
    ("logloss_gap", "logloss gap", "{:.5f}"),
    ("train_samples_per_second", "train/s", "{:,.0f}"),
    ("inference_samples_per_second", "infer/s", "{:,.0f}"),
]


def result_row(name: str, metrics: dict[str, Any], split: str = "test",
               output: str | None = None) -> dict[str, Any]:
    """A table row from a run's metrics.json (optionally one named output of a strategy)."""
    values = metrics[split]
    prefix = f"{output}." if output else ""
    row: dict[str, Any] = {"model": name}
    for key in ("auc", "logloss", "calibration", "gauc", "auc_gap", "logloss_gap"):
        if prefix + key in values:
            row[key] = values[prefix + key]
    for key in ("params", "train_samples_per_second", "inference_samples_per_second"):
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


def markdown_table(rows: list[dict[str, Any]]) -> str:
    columns = _columns(rows)
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r, k, f) for k, _, f in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def save_table(rows: list[dict[str, Any]], directory: Path, stem: str = "results") -> None:
    with atomic_file(directory / f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(rows, indent=1))
    with atomic_file(directory / f"{stem}.md") as tmp:
        tmp.write_text(markdown_table(rows))
