"""Knowledge-distillation experiments on the synthetic benchmark (issue: KD).

    python benchmarks/bench_distill.py --workdir bench_out/synth2m --experiment kd --seeds 3
    python benchmarks/bench_distill.py --workdir bench_out/synth2m --experiment stopping

kd:       DNN alone vs KD from one teacher (DCNv2) vs KD from a 3-teacher ensemble combined by
          mean of logits, learned weights and a per-sample gate (the ensembles' own AUC too).
stopping: early stopping on validation AUC vs on the distillation loss, with and without the
          validation split added to the student's training data.
cost:     inference samples/s of each teacher, the 3-teacher ensemble and the students, measured
          one model at a time (run it alone on the machine) on the runs of `kd`.
(bench_drift.py holds the biased-teacher and streaming experiments.)
Finished runs are reused, so an interrupted benchmark resumes. Teachers train once (seed 2026)
and score the data once into a label store that every student reads (`ctrdistill label`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import add_seed_arguments, mean_std, seed_range, synthetic_dataset
from ctrdistill.analysis.report import markdown_table
from ctrdistill.data.dataset import PreparedData
from ctrdistill.labels.store import write_labels as label
from ctrdistill.pipelines.distill import DistillConfig, distill
from ctrdistill.pipelines.train import TrainRunConfig as RunConfig
from ctrdistill.pipelines.train import train as run_train
from ctrdistill.training.checkpoint import load_checkpoint
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.speed import inference_samples_per_second

TEACHERS = ["dcnv2", "deepfm", "pnn"]
COMBINES = ["mean_logits", "weights", "gate"]
VARIANTS = ["KD from dcnv2"] + [f"KD from 3 teachers, {c}" for c in COMBINES]
STUDENT = {"name": "dnn", "embedding_dim": 16, "hidden_units": [400, 400, 400]}


def train_config(seed: int, **extra) -> TrainConfig:
    base = {"epochs": 1, "batch_size": 4096, "early_stop": None, "lr_plateau": None,
            "progress": False, "seed": seed}
    return TrainConfig(**(base | extra))


def teacher_store(root: Path, prep: Path, runs: list[Path]) -> Path:
    """The teachers' logits on every split, scored once (later calls find it complete)."""
    store = root / "stores" / "+".join(run.name for run in runs)
    label(runs, prep, store, show_progress=False)
    return store


def teacher_run(root: Path, prep: Path, name: str) -> Path:
    run = root / "teachers" / name
    if not (run / "metrics.json").exists():
        run_train(RunConfig(name=name, data=prep, output_dir=root / "teachers",
                            model={"name": name}, train=train_config(2026)))
    return run


def summarise(results: dict[str, list[dict]], keys=("auc", "logloss", "calibration")) -> str:
    lines = ["| variant | seeds | " + " | ".join(f"test {k} (mean ± std)" for k in keys) + " |",
             "|---|---|" + "---|" * len(keys)]
    for variant, runs in results.items():
        cells = [mean_std([r[key] for r in runs], 5) for key in keys]
        lines.append(f"| {variant} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def student(root: Path, prep: Path, name: str, seed: int, **config) -> dict:
    out = root / "students"
    metrics_file = out / f"{name}-s{seed}" / "metrics.json"
    if not metrics_file.exists():
        distill(DistillConfig(name=f"{name}-s{seed}", data=prep, output_dir=out,
                              student=STUDENT, **config), log=print)
    metrics = json.loads(metrics_file.read_text())
    return metrics["test"] | {k: metrics[k] for k in ("params", "inference_samples_per_second")}


def alone(root: Path, prep: Path, seed: int) -> dict:
    run = root / "students" / f"dnn-alone-s{seed}"
    if not (run / "metrics.json").exists():
        run_train(RunConfig(name=run.name, data=prep, output_dir=run.parent, model=STUDENT,
                            train=train_config(seed)))
    metrics = json.loads((run / "metrics.json").read_text())
    return metrics["test"] | {k: metrics[k] for k in ("params", "inference_samples_per_second")}


def experiment_kd(root: Path, prep: Path, seeds: list[int]) -> dict[str, list[dict]]:
    runs = {t: teacher_run(root, prep, t) for t in TEACHERS}
    results: dict[str, list[dict]] = {}
    for t, run in runs.items():
        metrics = json.loads((run / "metrics.json").read_text())
        results[f"teacher {t}"] = [metrics["test"]]
    variants = kd_variants(root, prep, runs)
    for seed in seeds:
        results.setdefault("DNN alone", []).append(alone(root, prep, seed))
        for variant, config in variants.items():
            metrics = student(root, prep, slug(variant), seed, train=train_config(seed), **config)
            results.setdefault(variant, []).append(metrics)
            if "3 teachers" in variant:  # the ensemble the student learned from, on test
                combine = variant.rsplit(" ", 1)[-1]
                results.setdefault(f"teacher ensemble, {combine}", []).append(
                    {k.removeprefix("ensemble."): v for k, v in metrics.items()
                     if k.startswith("ensemble.")})
    return results


def kd_variants(root: Path, prep: Path, runs: dict[str, Path]) -> dict[str, dict]:
    one, three = (teacher_store(root, prep, [runs["dcnv2"]]),
                  teacher_store(root, prep, list(runs.values())))
    variants: dict[str, dict] = {"KD from dcnv2": {"label_store": one}}
    for combine in COMBINES:
        variants[f"KD from 3 teachers, {combine}"] = {"label_store": three,
                                                      "strategy": {"ensemble": combine}}
    assert list(variants) == VARIANTS
    return variants


def slug(variant: str) -> str:
    return variant.replace(" ", "-").replace(",", "")


def experiment_cost(root: Path, prep: Path, seeds: list[int]) -> str:
    """Inference cost at the AUC each model reached in `kd` (test split; students: mean over
    seeds, speed of the seed-1 checkpoint). Teachers of an ensemble run one after another."""
    data = PreparedData(prep)
    test = data.load("test")

    def speed(run: Path) -> tuple[int, float]:
        model, _ = load_checkpoint(run, data.feature_map)
        return model.num_parameters(), inference_samples_per_second(model, test, max_rows=200_000,
                                                                    repeats=3)

    def test_auc(run: Path, key: str = "auc") -> float:
        return json.loads((run / "metrics.json").read_text())["test"][key]

    rows, teacher_speeds, teacher_params = [], [], 0
    for name in TEACHERS:
        run = root / "teachers" / name
        params, rate = speed(run)
        teacher_speeds.append(rate)
        teacher_params += params
        rows.append({"model": f"teacher {name}", "params": params, "auc": test_auc(run),
                     "inference_samples_per_second": rate})
    ensemble_rate = 1.0 / sum(1.0 / r for r in teacher_speeds)
    gate_runs = [root / "students" / f"{slug('KD from 3 teachers, gate')}-s{s}" for s in seeds]
    rows.append({"model": "teacher ensemble (gate)", "params": teacher_params,
                 "auc": statistics.mean(test_auc(r, "ensemble.auc") for r in gate_runs),
                 "inference_samples_per_second": ensemble_rate})
    students = {"DNN alone": [root / "students" / f"dnn-alone-s{s}" for s in seeds]}
    for variant in VARIANTS:
        students[variant] = [root / "students" / f"{slug(variant)}-s{s}" for s in seeds]
    for name, runs in students.items():
        params, rate = speed(runs[0])
        rows.append({"model": f"student: {name}", "params": params,
                     "auc": statistics.mean(test_auc(r) for r in runs),
                     "inference_samples_per_second": rate})
    best = max(rows[: len(TEACHERS)], key=lambda r: r["auc"])
    lines = [markdown_table(rows), "", "| student | AUC - best teacher AUC | speed-up vs best "
             "teacher | speed-up vs ensemble |", "|---|---|---|---|"]
    for row in rows[len(TEACHERS) + 1:]:
        rate = row["inference_samples_per_second"]
        lines.append(f"| {row['model']} | {row['auc'] - best['auc']:+.5f} | "
                     f"{rate / best['inference_samples_per_second']:.1f}x | "
                     f"{rate / ensemble_rate:.1f}x |")
    return "\n".join(lines) + "\n"


def experiment_stopping(root: Path, prep: Path, seeds: list[int]) -> dict[str, list[dict]]:
    teacher = teacher_run(root, prep, "dcnv2")
    stop = {"epochs": 4, "early_stop": {"patience": 0}, "eval_every_steps": 150}
    variants = {
        "stop on valid AUC": {"stop_on": "valid_auc"},
        "stop on distill loss": {"stop_on": "distill"},
        "stop on distill loss + valid in training": {"stop_on": "distill",
                                                     "add_valid_to_train": True},
    }
    results: dict[str, list[dict]] = {}
    for seed in seeds:
        for variant, config in variants.items():
            name = "stop-" + variant.replace(" ", "-").replace("+", "plus")
            results.setdefault(variant, []).append(student(
                root, prep, name, seed, label_store=teacher_store(root, prep, [teacher]),
                train=train_config(seed, **stop), **config))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="bench_out/synth2m")
    parser.add_argument("--rows", type=int, default=2_500_000)
    parser.add_argument("--experiment", choices=["kd", "stopping", "cost"], default="kd")
    add_seed_arguments(parser)
    args = parser.parse_args()
    root = Path(args.workdir)
    prep = synthetic_dataset(root, args.rows)
    seeds = seed_range(args)
    if args.experiment == "cost":
        table = experiment_cost(root, prep, seeds)
    else:
        run = {"kd": experiment_kd, "stopping": experiment_stopping}[args.experiment]
        results = run(root, prep, seeds)
        table = summarise(results)
        (root / f"distill_{args.experiment}.json").write_text(json.dumps(results, indent=1))
    (root / f"distill_{args.experiment}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
