"""Choosing the teacher for a fixed student (issue 22): one `cd.search` with the student
objective over small teachers, every trial's teacher valid AUC against its distilled student's,
teacher size against the student's gain over the same student trained alone, and what choosing
by teacher AUC instead would have bought for its (smaller) budget.

    python -m benchmarks.bench_search --workdir bench_out/search --rows 150000 --trials 12
    python -m benchmarks.bench_search --experiment budget --workdir bench_out/search-criteo \
        --rows 300000 --trials 16 --seeds 3

correlation (the first command): writes `search_summary.{json,md}` and `search.png` in the
workdir. Sized for about 15 minutes of 2 shared CPU cores: tiny models, one teacher epoch, proxy
students of `--proxy-steps` steps, on the legacy synthetic preset.

budget: on the `criteo` preset, four searches over one discrete space with the same trial
budget, each in its own directory (no teacher shared between them, so every cost is paid):
the student objective with TPE, random and grid samplers, and the teacher objective with TPE,
once per sampler seed (`--seeds`).
Every student is a full one-epoch run (no proxy), so a curve's value is the student a user
would get. For the teacher objective, the student of each teacher that was the best so far is
distilled afterwards, and its cost adds the one student run that choice needs. Over every
student-objective trial (each its own teacher, a full student): teacher AUC against student AUC
and teacher size against the gain over the student alone (experiments 1 and 2). Writes
`budget.{json,md}`, `budget.png` and `budget_teachers.png`.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import ctrdistill as cd
from benchmarks import common

SPACE = {"models": ["dnn", "deepfm", "dcnv2"], "embedding_dim": {"low": 4, "high": 16, "log": True},
         "width": {"choices": [16, 64, 256]}, "depth": {"low": 1, "high": 3},
         "dropout": {"low": 0.0, "high": 0.3}, "lr": {"low": 1e-3, "high": 1e-2, "log": True}}
STUDENT = {"name": "dnn", "embedding_dim": 4, "hidden_units": [32]}
QUIET = {"progress": False, "early_stop": None, "lr_plateau": None, "batch_size": 2048}


def _search_config(prep: Path, root: Path, trials: int, proxy_steps: int) -> dict[str, Any]:
    return {"name": "student-tpe", "data": str(prep), "output_dir": str(root / "searches"),
            "space": SPACE, "train": QUIET | {"epochs": 1, "eval_every_steps": 15},
            "objective": "student", "student": STUDENT, "student_train": QUIET | {"epochs": 1},
            "proxy": {"max_steps": proxy_steps}, "confirm_top": 2, "trials": trials,
            "pruner": "none", "seed": 0}


def _best_so_far(rows: list[dict], key: str, cost: str) -> list[tuple[float, float]]:
    """(budget spent, student AUC of the best trial so far by `key`) after every trial."""
    spent, best, curve = 0.0, None, []
    for row in rows:
        spent += row[cost]
        if best is None or row[key] > best[key]:
            best = row
        curve.append((spent, best["student_auc"]))
    return curve


def _size_panel(ax: Any, rows: list[dict], alone: float, title: str) -> None:
    """Teacher parameters against the student's gain over the same student alone."""
    from matplotlib.ticker import NullFormatter

    for family in sorted({r["config"]["name"] for r in rows}):
        own = [r for r in rows if r["config"]["name"] == family]
        ax.scatter([r["params"] for r in own], [r["student_auc"] - alone for r in own],
                   label=family)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # 2e5, 3e5, ... overlap
    ax.set_xlabel("teacher parameters")
    ax.set_ylabel("student valid AUC - student alone")
    ax.set_title(title)
    ax.legend()


def _figure(rows: list[dict], alone: float, curves: dict[str, list], path: Path) -> None:
    import matplotlib.pyplot as plt

    from ctrdistill.analysis.plots import save_figure

    fig, (size_ax, budget_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    _size_panel(size_ax, rows, alone, "teacher size vs the student's gain (proxy runs)")
    _plot_curves(budget_ax, {name: [curve] for name, curve in curves.items()},
                 "choosing by student AUC vs by teacher AUC")
    save_figure(fig, path)


def _teachers_figure(rows: list[dict], alone: float, path: Path) -> None:
    """Every student-objective trial: teacher AUC against student AUC, and size against gain."""
    import matplotlib.pyplot as plt

    from ctrdistill.analysis.plots import save_figure

    fig, (auc_ax, size_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for family in sorted({r["config"]["name"] for r in rows}):
        own = [r for r in rows if r["config"]["name"] == family]
        auc_ax.scatter([r["teacher_auc"] for r in own], [r["student_auc"] for r in own],
                       label=family)
    auc_ax.axhline(alone, color="grey", lw=0.8, label="student alone")
    auc_ax.set_xlabel("teacher valid AUC")
    auc_ax.set_ylabel("distilled student valid AUC")
    auc_ax.set_title("does the best teacher make the best student?")
    auc_ax.legend(fontsize=8)
    _size_panel(size_ax, rows, alone, "teacher size vs the student's gain (full runs)")
    save_figure(fig, path)


def _plot_curves(ax: Any, curves: dict[str, list[list]], title: str) -> None:
    """Best-so-far step curves, the budget spent against the best student found by then: one
    colour per strategy, one line per run of it."""
    import matplotlib.pyplot as plt

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for colour, (name, runs) in zip(colours, curves.items(), strict=False):
        for k, curve in enumerate(runs):
            ax.step([c[0] for c in curve], [c[1] for c in curve], where="post", marker="o",
                    ms=3, color=colour, alpha=0.8, label=name if k == 0 else None)
    ax.set_xlabel("budget spent (s of trial wall clock)")
    ax.set_ylabel("student valid AUC of the best teacher so far")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


BUDGET_SPACE = {"models": ["dnn", "deepfm", "dcnv2"], "embedding_dim": {"choices": [4, 8, 16]},
                "width": {"choices": [64, 256]}, "depth": {"choices": [1, 3]},
                "lr": {"choices": [0.001, 0.003]}}
BUDGET_STUDENT = {"name": "dnn", "size": "tiny"}
STRATEGIES = {"student objective, TPE": {"objective": "student", "sampler": "tpe"},
              "student objective, random": {"objective": "student", "sampler": "random"},
              "student objective, grid": {"objective": "student", "sampler": "grid"},
              "teacher objective, TPE": {"objective": "teacher", "sampler": "tpe"}}


def _budget_config(prep: Path, root: Path, name: str, trials: int, **extra: Any) -> dict:
    return {"name": name, "data": str(prep), "output_dir": str(root / "searches"),
            "space": BUDGET_SPACE, "train": QUIET | {"epochs": 1, "eval_every_steps": 30},
            "student": BUDGET_STUDENT, "student_train": QUIET | {"epochs": 1}, "proxy": {},
            "trials": trials, "pruner": "none", "seed": 0} | extra


def _student_of(root: Path, prep: Path, teacher: Path) -> tuple[float, float]:
    """(valid AUC, seconds) of the budget student distilled from `teacher` (made once)."""
    out = root / "teacher-objective-students" / teacher.name
    started = time.perf_counter()
    if not out.exists():
        store = common.run_once(out.parent / f"{teacher.name}-labels", cd.label, cd.LabelConfig(
            teachers=[teacher], data=prep, output=out.parent / f"{teacher.name}-labels",
            progress=False))
        common.run_once(out, cd.distill, cd.DistillConfig(
            name=out.name, data=prep, output_dir=out.parent, label_store=store,
            student=BUDGET_STUDENT, train=cd.TrainConfig(**QUIET, epochs=1)))
    seconds = json.loads((out / "bench_seconds.json").read_text()) if (
        out / "bench_seconds.json").exists() else time.perf_counter() - started
    (out / "bench_seconds.json").write_text(json.dumps(seconds))
    return common.run_metrics(out)["valid"]["auc"], seconds


def _alone_auc(root: Path, prep: Path, student: dict, train: cd.TrainConfig) -> float:
    """Valid AUC of `student` trained on the labels alone (made once, in root/alone)."""
    run = common.run_once(root / "alone" / "student", cd.train, cd.TrainRunConfig(
        name="student", data=prep, output_dir=root / "alone", model=student, train=train))
    return common.run_metrics(run)["valid"]["auc"]


def _correlations(rows: list[dict], alone: float) -> dict[str, float]:
    """Spearman of teacher AUC against student AUC, and of teacher size against the gain."""
    from scipy.stats import spearmanr

    rho, p_value = spearmanr([r["teacher_auc"] for r in rows], [r["student_auc"] for r in rows])
    size_rho, size_p = spearmanr([r["params"] for r in rows],
                                 [r["student_auc"] - alone for r in rows])
    return {"spearman_teacher_student": rho, "spearman_p": p_value,
            "spearman_params_gain": size_rho, "spearman_params_p": size_p}


def _correlation_line(stats: dict[str, float]) -> str:
    return (f"Spearman teacher AUC vs student AUC {stats['spearman_teacher_student']:+.3f} "
            f"(p {stats['spearman_p']:.3f}); teacher parameters vs student gain "
            f"{stats['spearman_params_gain']:+.3f} (p {stats['spearman_params_p']:.3f})")


def _strategy_curve(root: Path, prep: Path, extra: dict, rows: list[dict]
                    ) -> list[tuple[float, float]]:
    if extra["objective"] == "student":
        return _best_so_far(rows, "student_auc", "seconds")
    spent, best, curve = 0.0, None, []
    for row in rows:  # the student is distilled only from the teacher finally chosen
        spent += row["seconds"]
        if best is None or row["teacher_auc"] > best["teacher_auc"]:
            best = row
            best["student_auc"], best["student_seconds"] = _student_of(
                root, prep, Path(row["run"]))
        curve.append((spent + best["student_seconds"], best["student_auc"]))
    return curve


def experiment_budget(root: Path, prep: Path, trials: int, seeds: list[int]) -> None:
    """Every strategy once per sampler seed; seed 0's searches keep their unsuffixed names."""
    curves: dict[str, list[list[tuple[float, float]]]] = {}
    tables: dict[str, list[dict]] = {}
    for name, extra in STRATEGIES.items():
        for seed in seeds:
            slug = name.replace(", ", "-").replace(" ", "-") + (f"-seed{seed}" if seed else "")
            rows = [r for r in cd.search(_budget_config(prep, root, slug, trials, **extra,
                                                        seed=seed), resume=True).rows
                    if r["state"] == "COMPLETE"]
            tables[f"{name}, seed {seed}"] = rows
            curves.setdefault(name, []).append(_strategy_curve(root, prep, extra, rows))
    # Experiments 1 and 2 over the distinct teachers of the student-objective trials: each
    # has a full (not proxy) student; searches that drew the same point trained the same
    # teacher with the same seed, so a repeat is no new measurement.
    distinct = {r["teacher"]: r for name, rows in tables.items() if name.startswith("student")
                for r in rows}
    pooled = list(distinct.values())
    alone = _alone_auc(root, prep, BUDGET_STUDENT, cd.TrainConfig(**QUIET, epochs=1))
    stats = _correlations(pooled, alone)
    summary = {"trials": trials, "seeds": seeds, "space": BUDGET_SPACE,
               "student": BUDGET_STUDENT, "student_alone_valid_auc": alone,
               "distinct_teachers": len(pooled), **stats, "curves": curves,
               "trials_tables": tables}
    (root / "budget.json").write_text(json.dumps(summary, indent=1, default=str))
    _budget_figure(curves, root / "budget.png")
    _teachers_figure(pooled, alone, root / "budget_teachers.png")
    lines = ["| strategy | seeds x trials | seconds spent (mean) | best student valid AUC "
             "(mean ± std) | reached at seconds (mean) |", "|---|---|---|---|---|"]
    for name, runs in curves.items():
        finals = [curve[-1][1] for curve in runs]
        reached = [next(s for s, a in curve if a == curve[-1][1]) for curve in runs]
        spent = [curve[-1][0] for curve in runs]
        lines.append(f"| {name} | {len(runs)} x {trials} | {sum(spent) / len(spent):.0f} | "
                     f"{common.mean_std(finals, 5)} | {sum(reached) / len(reached):.0f} |")
    lines += ["", f"{len(pooled)} distinct teachers of the student-objective trials; student "
              f"alone valid AUC {alone:.5f}; {_correlation_line(stats)}"]
    table = "\n".join(lines) + "\n"
    (root / "budget.md").write_text(table)
    print(table)


def _budget_figure(curves: dict[str, list], path: Path) -> None:
    import matplotlib.pyplot as plt

    from ctrdistill.analysis.plots import save_figure

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    _plot_curves(ax, curves, "best student found against budget (one line per sampler seed)")
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="bench_out/search")
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--proxy-steps", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=1,
                        help="budget: sampler seeds per strategy (0 .. seeds-1)")
    parser.add_argument("--experiment", choices=["correlation", "budget"],
                        default="correlation")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(args.workdir)
    if args.experiment == "budget":
        experiment_budget(root, common.synthetic_dataset(root, args.rows, preset="criteo"),
                          args.trials, list(range(args.seeds)))
        return
    prep = common.synthetic_dataset(root, args.rows)
    result = cd.search(_search_config(prep, root, args.trials, args.proxy_steps), resume=True)
    alone = _alone_auc(root, prep, STUDENT,
                       cd.TrainConfig(**QUIET, epochs=1, max_steps=args.proxy_steps))
    rows = [r for r in result.rows if r["state"] == "COMPLETE"]
    stats = _correlations(rows, alone)
    # The teacher objective needs no student per trial: its cost is the teacher stage, plus one
    # student run for the teacher it chooses (that trial's own student stage).
    by_teacher = _best_so_far(rows, "teacher_auc", "teacher_seconds")
    chosen = max(rows, key=lambda r: r["teacher_auc"])
    extra = chosen["seconds"] - chosen["teacher_seconds"]
    curves = {"student objective": _best_so_far(rows, "student_auc", "seconds"),
              "teacher objective (+1 student run)": [(s + extra, a) for s, a in by_teacher]}
    summary = {"rows": args.rows, "trials": len(rows), "proxy_steps": args.proxy_steps,
               "student_alone_valid_auc": alone, **stats, "best": result.metrics,
               "trials_table": rows, "budget_curves": curves}
    (root / "search_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    _figure(rows, alone, curves, root / "search.png")
    lines = ["| trial | teacher | params | teacher AUC | student AUC | gain over alone | "
             "seconds |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['trial']} | {r['teacher']} | {r['params']:,} | {r['teacher_auc']:.5f} | "
              f"{r['student_auc']:.5f} | {r['student_auc'] - alone:+.5f} | {r['seconds']:.0f} |"
              for r in rows]
    lines += ["", f"student alone ({args.proxy_steps} steps): valid AUC {alone:.5f}; "
              f"{_correlation_line(stats)}; confirmed best: "
              f"{result.metrics.get('best_confirmed_student_auc')}; by teacher AUC: trial "
              f"{chosen['trial']} (student {chosen['student_auc']:.5f})"]
    table = "\n".join(lines) + "\n"
    (root / "search_summary.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
