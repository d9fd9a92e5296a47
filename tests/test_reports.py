"""Reports say what their numbers are: no in-sample figure passed off as validation, parameter
counts that name what they count, and every table column defined."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from conftest import prepare_synthetic
from ctrdistill.analysis import report
from ctrdistill.analysis.report import markdown_table, print_table, result_row
from ctrdistill.pipelines.fit import distill

TINY = {"name": "dnn", "embedding_dim": 4, "hidden_units": [16]}
QUICK = {"epochs": 1, "batch_size": 512, "progress": False, "threads": 1}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepare_synthetic(tmp_path_factory.mktemp("reports"), rows=3000, max_vocab=200,
                             chunk_rows=3000)


@pytest.fixture(scope="module")
def valid_in_train(prepared, tmp_path_factory):
    """An aux student with a gated ensemble of two teachers, trained on the valid split too."""
    out = tmp_path_factory.mktemp("runs")
    handler = _Lines()
    logging.getLogger("ctrdistill").addHandler(handler)
    logging.getLogger("ctrdistill").setLevel(logging.INFO)
    try:
        result = distill({
            "name": "kd", "data": str(prepared), "output_dir": str(out),
            "teachers": [{"model": {"name": "lr"}}, {"model": TINY}],
            "student": TINY, "strategy": {"kind": "aux", "ensemble": "gate"},
            "stop_on": "distill", "add_valid_to_train": True,
            "train": {**QUICK, "early_stop": {"patience": 1}}})
    finally:
        logging.getLogger("ctrdistill").removeHandler(handler)
    return result, handler.lines


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_valid_split_trained_on_is_not_reported(valid_in_train):
    result, _ = valid_in_train
    metrics = json.loads((result.path / "metrics.json").read_text())
    assert "valid" not in metrics and "test" in metrics
    summary = (result.path / "summary.md").read_text()
    assert "| valid |" not in summary and "add_valid_to_train" in summary


def test_ensemble_is_not_validated_on_its_own_training_rows(valid_in_train):
    result, _ = valid_in_train
    history = json.loads((result.path / "history.json").read_text())
    watched = [r["valid"] for r in history if "valid" in r]
    assert watched and all("distill" in v and "auc" in v for v in watched)
    assert not [k for v in watched for k in v if k.startswith("ensemble.")]
    assert result.history == history


def test_parameter_counts_say_what_they_count(valid_in_train):
    result, lines = valid_in_train
    served = result.metrics["params"]
    line = next(x for x in lines if x.startswith("run kd:"))
    match = re.search(r"([\d,]+) served parameters \(([\d,]+) trained: \+ (.*)\)", line)
    assert match, line
    assert int(match[1].replace(",", "")) == served
    parts = dict(p.rsplit(" ", 1) for p in match[3].split(", "))
    assert set(parts) == {"aux head", "ensemble"}, parts
    extra = sum(int(v.replace(",", "")) for v in parts.values())
    assert int(match[2].replace(",", "")) == served + extra
    assert match[0] in (result.path / "summary.md").read_text()
    # The table's params column is the served model, and its legend says so.
    assert result.rows[-2]["params"] == served and "served" in report.LEGEND["params"]


def test_every_column_is_defined_and_bayes_auc_shown(valid_in_train, capsys):
    result, _ = valid_in_train
    rows = json.loads((result.path / "results.json").read_text())
    assert all("bayes_auc" in r for r in rows)
    text = (result.path / "results.md").read_text()
    header = text.splitlines()[0].strip("| ").split(" | ")
    assert "Bayes AUC" in header
    legend = text.strip().splitlines()[-1]
    for column in header[1:]:
        assert f"{column}: " in legend, column
    assert "calib: mean predicted CTR / observed CTR" in legend
    print_table(rows, "t")
    assert legend in " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert markdown_table([{"model": "x"}]) == "| model |\n|---|\n| x |\n"


def test_result_row_carries_bayes_auc():
    metrics = {"test": {"auc": 0.7, "logloss": 0.5, "calibration": 1.0, "bayes_auc": 0.8},
               "params": 10}
    assert result_row("m", metrics)["bayes_auc"] == 0.8
