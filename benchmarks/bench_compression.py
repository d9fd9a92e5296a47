"""The compression experiment (issue 21): students of every named size trained alone and
distilled from a 3-teacher ensemble, on the `criteo` synthetic preset.

    python -m benchmarks.bench_compression --workdir bench_out/criteo --seeds 3
    python -m benchmarks.bench_compression --workdir bench_out/criteo --seeds 3 --experiment cost
    python -m benchmarks.bench_compression --workdir bench_out/criteo --seeds 3 --experiment init

train: for each size (tiny, small, medium, base DNN) and seed: the student alone, distilled
       directly and with an aux head (soft-label BCE), and directly with the best other distance
       (picked on the validation AUC of the `small` student, seed 1). The teachers (those of
       bench_distill, trained once) score the data once into a label store; the ensemble
       combines them with a per-sample gate trained jointly with each student.
cost:  parameters, bytes, inference samples/s at batch 4096 and batch-1 latency of every
       student and teacher, timed one model at a time on one thread (run it alone on the
       machine); the table and the AUC-against-cost plot.
init:  the base DNN alone with xavier-normal vs PyTorch's default initialisation.
The base student alone and distilled by BCE from the gated ensemble are the same runs as
bench_distill's "DNN alone" and "KD from 3 teachers, gate".
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import torch

import ctrdistill as cd
from benchmarks import bench_distill, common
from ctrdistill.data.dataset import PreparedData
from ctrdistill.models.base import SIZES
from ctrdistill.storage import atomic_file
from ctrdistill.training.speed import model_bytes, side_by_side

OTHER_DISTANCES = ["mse_logits", "kl", "mse_probs"]
ENSEMBLE = {"ensemble": "gate"}
TRAIN = {"batch_size": common.PRESET_BATCH["criteo"]}


def size_model(size: str) -> dict:
    return {"name": "dnn", "size": size}


def alone(root: Path, prep: Path, size: str, seed: int) -> Path:
    if size == "base":
        return common.student_alone_run(root, prep, seed, **TRAIN)
    return common.train_run(root / "compression" / f"{size}-alone-s{seed}", prep,
                            size_model(size), seed, **TRAIN)


def distilled(root: Path, prep: Path, store: Path, size: str, method: str, seed: int) -> Path:
    if size == "base" and method == "direct-bce":  # shared with bench_distill
        out = root / "students" / f"{bench_distill.slug('KD from 3 teachers, gate')}-s{seed}"
        model = common.STUDENT
    else:
        out, model = root / "compression" / f"{size}-{method}-s{seed}", size_model(size)
    kind, _, distance = method.partition("-")
    return common.run_once(out, cd.distill, cd.DistillConfig(
        name=out.name, data=prep, output_dir=out.parent, student=model, label_store=store,
        strategy=ENSEMBLE | {"kind": kind, "distance": distance},
        train=common.train_config(seed, **TRAIN)))


def teacher_runs(root: Path, prep: Path) -> dict[str, Path]:
    return {t: common.teacher_run(root, prep, t, **TRAIN) for t in bench_distill.TEACHERS}


def best_other_distance(root: Path, prep: Path, store: Path) -> str:
    scores = {}
    for distance in OTHER_DISTANCES:
        run = distilled(root, prep, store, "small", f"direct-{distance}", 1)
        scores[distance] = common.run_metrics(run)["valid"]["auc"]
    return max(scores, key=scores.get)


def methods(root: Path, prep: Path, store: Path) -> list[str]:
    return ["direct-bce", "aux-bce", f"direct-{best_other_distance(root, prep, store)}"]


def experiment_train(root: Path, prep: Path, seeds: list[int]) -> dict:
    store = common.teacher_store(root, prep, list(teacher_runs(root, prep).values()))
    results: dict[str, dict[str, list[dict]]] = {}
    for seed in seeds:
        for size in SIZES:
            runs = {"alone": alone(root, prep, size, seed)}
            runs |= {m: distilled(root, prep, store, size, m, seed)
                     for m in methods(root, prep, store)}
            for method, run in runs.items():
                results.setdefault(size, {}).setdefault(method, []).append(
                    common.run_metrics(run)["test"] | {"run": str(run)})
    return results


def gap_recovered(kd: float, alone_auc: float, teacher: float) -> float:
    return (kd - alone_auc) / (teacher - alone_auc)


def costs(models: dict[str, torch.nn.Module], test) -> dict[str, dict]:
    """Parameters, bytes and the side-by-side speeds (issue 32's timing) of every model."""
    timed = side_by_side(models, test)
    return {name: {"params": model.num_parameters(), "model_bytes": model_bytes(model),
                   **timed[name]} for name, model in models.items()}


def ensemble_cost(teachers: list[dict]) -> dict:
    """The cost of teachers run one after another (an ensemble without its gate)."""
    return {"params": sum(c["params"] for c in teachers),
            "model_bytes": sum(c["model_bytes"] for c in teachers),
            "inference_samples_per_second": 1 / sum(1 / c["inference_samples_per_second"]
                                                    for c in teachers),
            "latency_ms": sum(c["latency_ms"] for c in teachers)}


def cheaper(ensemble: dict, row: dict) -> dict:
    """How many times cheaper than the ensemble `row` is to serve, by both measures."""
    return {"cheaper_at_1": ensemble["latency_ms"] / row["latency_ms"],
            "cheaper_at_4096": row["inference_samples_per_second"]
            / ensemble["inference_samples_per_second"]}


def one_run(test: dict) -> dict:
    """A single run's table cells, formatted as the seeds' mean ± std cells are."""
    return {"auc": test["auc"], "logloss": f"{test['logloss']:.5f}",
            "calibration": f"{test['calibration']:.4f}"}


def experiment_cost(root: Path, prep: Path, seeds: list[int]) -> str:
    """One thread; the teachers and the four sizes timed side by side at the end. The
    ensemble's cost is its teachers' (run one after another); its gate is left out, which
    flatters the ensemble. Every method of a size is the same architecture, so each size is
    timed once (on its `alone` run)."""
    torch.set_num_threads(1)
    results = json.loads((root / "compression_train.json").read_text())
    test = PreparedData(prep).load("test")
    teacher_dirs = teacher_runs(root, prep)
    timed = costs({**{f"teacher {name}": cd.load_run(run).model
                      for name, run in teacher_dirs.items()},
                   **{size: cd.load_run(Path(by_method["alone"][0]["run"])).model
                      for size, by_method in results.items()}}, test)
    teachers = {name: (run, timed[f"teacher {name}"]) for name, run in teacher_dirs.items()}
    ensemble_runs = results["base"]["direct-bce"]
    ensemble = {
        "model": "teacher ensemble (gate)",
        "auc": sum(r["ensemble.auc"] for r in ensemble_runs) / len(ensemble_runs),
        "logloss": common.mean_std([r["ensemble.logloss"] for r in ensemble_runs], 5),
        "calibration": common.mean_std([r["ensemble.calibration"] for r in ensemble_runs], 4),
        **ensemble_cost([c for _, c in teachers.values()])}
    rows = [{"model": f"teacher {name}", **one_run(common.run_metrics(run)["test"]), **c}
            for name, (run, c) in teachers.items()] + [ensemble]
    for size, by_method in results.items():
        size_cost = timed[size]
        alone_auc = [r["auc"] for r in by_method["alone"]]
        for method, runs in by_method.items():
            aucs = [r["auc"] for r in runs]
            row = {"model": f"{size} {method}", "size": size, "method": method,
                   "auc_mean_std": common.mean_std(aucs, 5),
                   "auc": sum(aucs) / len(aucs),
                   "logloss": common.mean_std([r["logloss"] for r in runs], 5),
                   "calibration": common.mean_std([r["calibration"] for r in runs], 4),
                   **size_cost}
            if method != "alone":
                recovered = [gap_recovered(r["auc"], a, r["ensemble.auc"])
                             for r, a in zip(runs, alone_auc, strict=True)]
                row["gap_recovered"] = common.mean_std(recovered, 2)
            rows.append(row)
    rows = [row | cheaper(ensemble, row) for row in rows]
    with atomic_file(root / "compression.json") as tmp:
        tmp.write_text(json.dumps(rows, indent=1))
    plot(rows, root / "compression.png")
    return table(rows)


def table(rows: list[dict]) -> str:
    lines = ["| model | params | bytes | test AUC | test logloss | calibration | samples/s @4096 "
             "| ms @1 | x cheaper than the ensemble @4096 / @1 | gap recovered |",
             "|---|" + "---|" * 9]
    for r in rows:
        auc = r.get("auc_mean_std", f"{r['auc']:.5f}")
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['model_bytes']:,} | {auc} | "
            f"{r.get('logloss', '-')} | {r.get('calibration', '-')} | "
            f"{r['inference_samples_per_second']:,.0f} | {r['latency_ms']:.3f} | "
            f"{r['cheaper_at_4096']:.1f}x / {r['cheaper_at_1']:.1f}x | "
            f"{r.get('gap_recovered', '-')} |")
    return "\n".join(lines) + "\n"


def microseconds_per_row(row: dict) -> float:
    return 1e6 / row["inference_samples_per_second"]


def plot(rows: list[dict], out: Path) -> None:
    matplotlib.use("Agg")
    fig, ax = plt.subplots(figsize=(7.5, 5))
    styles = {"alone": ("o", "-", "tab:gray"), "direct-bce": ("s", "-", "tab:blue"),
              "aux-bce": ("^", "--", "tab:green")}
    methods_seen = list(dict.fromkeys(r["method"] for r in rows if "method" in r))
    for method in methods_seen:
        marker, line, colour = styles.get(method, ("D", ":", "tab:purple"))
        points = [r for r in rows if r.get("method") == method]
        ax.plot([microseconds_per_row(r) for r in points], [r["auc"] for r in points],
                marker=marker, linestyle=line, color=colour, label=f"student {method}")
        if method == "alone":
            for r in points:
                ax.annotate(r["size"], (microseconds_per_row(r), r["auc"]),
                            textcoords="offset points", xytext=(4, -12), fontsize=8,
                            color="tab:gray")
    for r in rows:
        if r["model"].startswith("teacher"):
            ax.plot(microseconds_per_row(r), r["auc"], marker="*", markersize=13,
                    linestyle="none", color="tab:red" if "ensemble" in r["model"]
                    else "tab:orange")
            ax.annotate(r["model"].removeprefix("teacher "), (microseconds_per_row(r), r["auc"]),
                        textcoords="offset points", xytext=(-10, 7), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("inference cost: microseconds per row at batch 4096 (log scale, 1 thread)")
    ax.set_ylabel("test AUC (mean of seeds)")
    ax.set_title("Students alone vs distilled from the 3-teacher ensemble")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_file(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def experiment_init(root: Path, prep: Path, seeds: list[int]) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {}
    for seed in seeds:
        results.setdefault("xavier_normal", []).append(
            common.run_metrics(common.student_alone_run(root, prep, seed, **TRAIN))["test"])
        run = common.train_run(root / "init" / f"torch-default-s{seed}", prep,
                               common.STUDENT | {"dense_init": "torch_default"}, seed, **TRAIN)
        results.setdefault("torch_default", []).append(common.run_metrics(run)["test"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="bench_out/criteo")
    parser.add_argument("--rows", type=int, default=2_500_000)
    parser.add_argument("--experiment", choices=["train", "cost", "init"], default="train")
    common.add_seed_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(args.workdir)
    prep = common.synthetic_dataset(root, args.rows, preset="criteo")
    seeds = common.seed_range(args)
    if args.experiment == "train":
        results = experiment_train(root, prep, seeds)
        with atomic_file(root / "compression_train.json") as tmp:
            tmp.write_text(json.dumps(results, indent=1))
        text = "\n".join(f"## {size}\n" + common.summarise(by_method)
                         for size, by_method in results.items())
    elif args.experiment == "cost":
        text = experiment_cost(root, prep, seeds)
    else:
        text = common.summarise(experiment_init(root, prep, seeds))
    (root / f"compression_{args.experiment}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
