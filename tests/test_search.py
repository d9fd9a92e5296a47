"""`ctrdistill search`: bad spaces refused before any trial, the student objective end to end
(trials table, plots, best teacher link, confirmation), resume reusing finished teachers, and
two worker processes sharing one SQLite study."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import ctrdistill as cd
from ctrdistill.cli import main

TRAIN = {"epochs": 2, "batch_size": 256, "eval_every_steps": 4, "progress": False,
         "threads": 1, "early_stop": None, "lr_plateau": None}
SPACE = {"models": ["dnn", "deepfm"], "embedding_dim": {"low": 2, "high": 6},
         "width": {"choices": [8, 16]}, "depth": {"low": 1, "high": 2},
         "dropout": {"low": 0.0, "high": 0.2}, "lr": {"low": 1e-3, "high": 1e-2, "log": True}}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("search")
    cd.synth(rows=4000, max_vocab=200, output=root / "raw", show_progress=False, seed=3)
    cd.prepare(recipe="synthetic", input=root / "raw", output=root / "prep", protocol="x4")
    return root / "prep"


def _config(data: Path, out: Path, **extra) -> dict:
    return {"name": "s", "data": str(data), "output_dir": str(out), "space": SPACE,
            "train": TRAIN, "student": {"name": "dnn", "embedding_dim": 2, "hidden_units": [8]},
            "student_train": {"epochs": 1, "batch_size": 256, "progress": False, "threads": 1},
            "proxy": {"max_steps": 4}, "seed": 0} | extra


@pytest.mark.parametrize(("space", "message"), [
    ({"embedding_dim": {"low": 8, "high": 4}}, "empty range"),
    ({"models": ["dnn", "nosuch"]}, "nosuch"),
    ({"models": ["lr"], "dropout": {"low": 0.0, "high": 0.2}}, "'lr' has no parameter dropout"),
    ({"model_params": {"num_cross_layers": {"low": 1, "high": 3}}},
     "has no parameter num_cross_layers"),
    ({"dropout": {"low": 0.0, "high": 1.0}}, "dropout"),
    ({"lr": {"low": 0.0, "high": 0.1, "log": True}}, "log range needs low > 0"),
])
def test_bad_spaces_are_refused_before_any_trial(data, tmp_path, space, message):
    with pytest.raises(cd.CtrDistillError, match=message):
        cd.search(_config(data, tmp_path, space=SPACE | space, trials=2))
    assert not (tmp_path / "s" / "study.db").exists()


def test_a_budget_is_required(data, tmp_path):
    with pytest.raises(cd.CtrDistillError, match="give a budget"):
        cd.search(_config(data, tmp_path))


def test_student_objective_writes_table_plots_and_best_teacher_and_resumes(data, tmp_path):
    config = _config(data, tmp_path, objective="student", trials=4, confirm_top=2,
                     pruner="none")
    result = cd.search(config)
    root = tmp_path / "s"
    rows = json.loads((root / "trials.json").read_text())
    assert [r["state"] for r in rows] == ["COMPLETE"] * 4
    assert all(r["teacher_auc"] > 0.5 and r["student_auc"] is not None for r in rows)
    assert sum(r["confirmed_student_auc"] is not None for r in rows) == 2
    best = max((r for r in rows if r["confirmed_student_auc"] is not None),
               key=lambda r: r["confirmed_student_auc"])
    assert result.path == Path(best["run"])
    assert (root / "best_teacher").resolve() == result.path.resolve()
    assert (root / "best_teacher" / "checkpoint.pt").is_file()
    assert result.metrics["best_confirmed_student_auc"] == best["confirmed_student_auc"]
    for png in ("optimization_history.png", "param_importances.png", "teacher_vs_student.png"):
        assert (root / png).stat().st_size > 1000
    assert "| trial | state | teacher |" in (root / "trials.md").read_text()

    with pytest.raises(cd.CtrDistillError, match="pass resume"):
        cd.search(config)
    stamps = {r["run"]: (Path(r["run"]) / "checkpoint.pt").stat().st_mtime_ns for r in rows}
    again = cd.search(config | {"trials": 5}, resume=True)
    assert [r["trial"] for r in again.rows] == [0, 1, 2, 3, 4]
    assert all((Path(run) / "checkpoint.pt").stat().st_mtime_ns == stamp
               for run, stamp in stamps.items())  # finished teachers were not trained again


def test_pruner_reports_teacher_evaluations(data, tmp_path):
    result = cd.search(_config(data, tmp_path, objective="teacher", trials=6,
                               pruner="successive_halving"))
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's' / 'study.db'}")
    pruned = [r for r in result.rows if r["state"] == "PRUNED"]
    assert pruned and len(pruned) < 6
    # 4000 rows: 8:1:1 gives 3,200 training rows, 13 steps of 256 an epoch, 2 epochs
    full = [4, 8, 12, 13, 16, 20, 24, 26]
    for row, trial in zip(result.rows, study.trials, strict=True):
        if row["state"] == "PRUNED":
            # stopped while it trained: evaluations up to the rung that pruned it, no run kept
            assert sorted(trial.intermediate_values) == full[:full.index(row["pruned_at"]) + 1]
            assert row["pruned_at"] < full[-1] and row["run"] is None
            step = row["pruned_at"]
            rows = 256 * step if step < 13 else 3200 + 256 * (step - 13)
            assert trial.user_attrs["pruned_at_rows"] == rows
        else:
            history = json.loads((Path(row["run"]) / "history.json").read_text())
            assert [r["step"] for r in history if "valid" in r] == full
            assert sorted(trial.intermediate_values) == full
    assert not list((tmp_path / "s" / "teachers").glob("*/checkpoint.pt"))[len(result.rows)
                                                                            - len(pruned):]
    assert result.metrics["pruned"] == len(pruned)
    assert "teacher_vs_student.png skipped" in " ".join(result.metrics["notes"])


WORKER = """
import sys
import ctrdistill as cd
cd.search({config!r}, resume=True)
"""


def test_two_workers_share_one_sqlite_study(data, tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    config = _config(data, tmp_path, objective="teacher", trials=3, pruner="none", seed=None,
                     storage=storage)
    workers = [subprocess.Popen([sys.executable, "-c", WORKER.format(config=config)],
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err[-2000:]
    trials = optuna.load_study(study_name="s", storage=storage).trials
    # Each worker stops once 3 trials finished; one may finish the trial it had started.
    assert 3 <= len(trials) <= 4
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    runs = {t.user_attrs["run"] for t in trials}
    trained = [t.user_attrs["run"] for t in trials if t.user_attrs["trained"]]
    assert sorted(trained) == sorted(runs)  # every teacher trained exactly once


def test_cli_search_prints_the_table(data, tmp_path, capsys):
    path = tmp_path / "search.yaml"
    path.write_text(json.dumps(_config(data, tmp_path, objective="teacher", trials=2)))
    assert main(["search", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| trial | state |" in out and "best teacher (trial" in out
    assert main(["search", str(path)]) == 2  # the study exists: --resume continues it
    assert main(["search", str(path), "--resume", "--set", "trials=3"]) == 0


def test_grid_sampler_visits_every_point_once_then_stops(data, tmp_path):
    space = {"models": ["dnn", "deepfm"], "embedding_dim": {"low": 2, "high": 4, "step": 2},
             "width": {"choices": [8]}, "lr": {"choices": [0.003]}}
    result = cd.search(_config(data, tmp_path, objective="teacher", space=space, trials=10,
                               sampler="grid", pruner="none"))
    points = sorted((r["config"]["name"], r["config"]["embedding_dim"]) for r in result.rows)
    assert points == [("deepfm", 2), ("deepfm", 4), ("dnn", 2), ("dnn", 4)]  # 4 < 10 trials
    with pytest.raises(cd.CtrDistillError, match="grid needs `choices` or a `step` for dropout"):
        cd.search(_config(data, tmp_path, name="g2", sampler="grid", trials=2,
                          space=space | {"dropout": {"low": 0.0, "high": 0.2}}))
    assert not (tmp_path / "g2").exists()
