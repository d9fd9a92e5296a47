"""Knowledge-distillation experiments on the synthetic benchmark (issue: KD).

    python -m benchmarks.bench_distill --workdir bench_out/synth2m --experiment kd --seeds 3
    python -m benchmarks.bench_distill --workdir bench_out/synth2m --experiment stopping
    python -m benchmarks.bench_distill --workdir bench_out/criteo --preset criteo --seeds 3 \
        --single-teacher deepfm

kd:       DNN alone vs KD from one teacher (--single-teacher) vs KD from a 3-teacher ensemble
          combined by mean of logits, learned weights and a per-sample gate, trained jointly
          with the student or fitted first on the valid split and frozen (the ensembles' own
          AUC too).
stopping: early stopping on validation AUC vs on the distillation loss, with and without the
          validation split added to the student's training data.
cost:     inference samples/s of each teacher, the 3-teacher ensemble and the students, measured
          one model at a time (run it alone on the machine) on the runs of `kd`. No verb times
          a model, so this calls the library's timer (`training.speed`) on loaded checkpoints.
(bench_drift holds the biased-teacher and streaming experiments.)
Finished runs are reused, so an interrupted benchmark resumes. Teachers train once (seed 2026)
and score the data once into a label store that every student reads (`ctrdistill label`).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from functools import partial
from pathlib import Path

import ctrdistill as cd
from benchmarks import common
from ctrdistill.analysis.report import markdown_table
from ctrdistill.data.dataset import PreparedData
from ctrdistill.training.speed import side_by_side

TEACHERS = ["dcnv2", "deepfm", "pnn"]
# How the 3 teachers combine. A gate trained jointly sees the teachers' logits on rows they
# trained on; fitted on the valid split it sees them out of sample (BENCHMARKS.md §10.3).
COMBINES = {"mean_logits": {"ensemble": "mean_logits"}, "weights": {"ensemble": "weights"},
            "gate": {"ensemble": "gate"},
            "gate fitted on valid": {"ensemble": "gate", "gate_fit": "valid"}}
ENSEMBLE_VARIANTS = [f"KD from 3 teachers, {c}" for c in COMBINES]


def variants_of(single: str) -> list[str]:
    """The KD variants: from the single teacher `single`, and from the 3-teacher ensembles."""
    return [f"KD from {single}", *ENSEMBLE_VARIANTS]


def metrics_and_cost(run: Path) -> dict:
    """Test metrics of a finished run, with its parameters and inference speed."""
    metrics = common.run_metrics(run)
    return metrics["test"] | {k: metrics[k] for k in ("params", "inference_samples_per_second")}


def student(root: Path, prep: Path, name: str, seed: int, **config) -> dict:
    out = root / "students" / f"{name}-s{seed}"
    return metrics_and_cost(common.run_once(out, cd.distill, cd.DistillConfig(
        name=out.name, data=prep, output_dir=out.parent, student=common.STUDENT, **config)))


def experiment_kd(root: Path, prep: Path, seeds: list[int], single: str, train: dict
                  ) -> dict[str, list[dict]]:
    runs = {t: common.teacher_run(root, prep, t, **train) for t in TEACHERS}
    results: dict[str, list[dict]] = {f"teacher {t}": [common.run_metrics(run)["test"]]
                                      for t, run in runs.items()}
    variants = kd_variants(root, prep, runs, single)
    for seed in seeds:
        results.setdefault("DNN alone", []).append(
            metrics_and_cost(common.student_alone_run(root, prep, seed, **train)))
        for variant, config in variants.items():
            metrics = student(root, prep, slug(variant), seed,
                              train=common.train_config(seed, **train), **config)
            results.setdefault(variant, []).append(metrics)
            if "3 teachers" in variant:  # the ensemble the student learned from, on test
                combine = variant.removeprefix("KD from 3 teachers, ")
                results.setdefault(f"teacher ensemble, {combine}", []).append(
                    {k.removeprefix("ensemble."): v for k, v in metrics.items()
                     if k.startswith("ensemble.")})
    return results


def kd_variants(root: Path, prep: Path, runs: dict[str, Path], single: str
                ) -> dict[str, dict]:
    one, three = (common.teacher_store(root, prep, [runs[single]]),
                  common.teacher_store(root, prep, list(runs.values())))
    variants: dict[str, dict] = {f"KD from {single}": {"label_store": one}}
    for combine, strategy in COMBINES.items():
        variants[f"KD from 3 teachers, {combine}"] = {"label_store": three, "strategy": strategy}
    assert list(variants) == variants_of(single)
    return variants


def slug(variant: str) -> str:
    return variant.replace(" ", "-").replace(",", "")


def experiment_cost(root: Path, prep: Path, seeds: list[int], single: str, train: dict) -> str:
    """Inference cost at the AUC each model reached in `kd` (test split; students: mean over
    seeds, speed of the seed-1 checkpoint). Teachers of an ensemble run one after another.

    Speeds are timed here side by side at the end (issue 32's timing: each figure the median
    of rounds in which every model is timed once), so that all models are timed alike: the
    speeds in metrics.json were taken during training, beside whatever else was running."""
    test = PreparedData(prep).load("test")

    def test_auc(run: Path, key: str = "auc") -> float:
        return common.run_metrics(run)["test"][key]

    teachers = {f"teacher {name}": common.teacher_run(root, prep, name, **train)
                for name in TEACHERS}
    students = {"DNN alone": [common.student_alone_run(root, prep, s, **train) for s in seeds]}
    for variant in variants_of(single):
        students[variant] = [root / "students" / f"{slug(variant)}-s{s}" for s in seeds]
    models = {name: cd.load_run(run).model for name, run in teachers.items()}
    models |= {f"student: {name}": cd.load_run(runs[0]).model for name, runs in students.items()}
    rates = {name: figures["inference_samples_per_second"]
             for name, figures in side_by_side(models, test).items()}
    rows = [{"model": name, "params": models[name].num_parameters(), "auc": test_auc(run),
             "inference_samples_per_second": rates[name]} for name, run in teachers.items()]
    ensemble_rate = 1.0 / sum(1.0 / rates[name] for name in teachers)
    gate_runs = [root / "students" / f"{slug('KD from 3 teachers, gate')}-s{s}" for s in seeds]
    rows.append({"model": "teacher ensemble (gate)",
                 "params": sum(models[name].num_parameters() for name in teachers),
                 "auc": statistics.mean(test_auc(r, "ensemble.auc") for r in gate_runs),
                 "inference_samples_per_second": ensemble_rate})
    for name, runs in students.items():
        rows.append({"model": f"student: {name}", "params": models[f"student: {name}"]
                     .num_parameters(), "auc": statistics.mean(test_auc(r) for r in runs),
                     "inference_samples_per_second": rates[f"student: {name}"]})
    best = max(rows[: len(TEACHERS)], key=lambda r: r["auc"])
    lines = [markdown_table(rows), "", "| student | AUC - best teacher AUC | speed-up vs best "
             "teacher | speed-up vs ensemble |", "|---|---|---|---|"]
    for row in rows[len(TEACHERS) + 1:]:
        rate = row["inference_samples_per_second"]
        lines.append(f"| {row['model']} | {row['auc'] - best['auc']:+.5f} | "
                     f"{rate / best['inference_samples_per_second']:.1f}x | "
                     f"{rate / ensemble_rate:.1f}x |")
    return "\n".join(lines) + "\n"


def experiment_stopping(root: Path, prep: Path, seeds: list[int], single: str, train: dict,
                        patience: int = 0) -> dict[str, list[dict]]:
    teacher = common.teacher_run(root, prep, single, **train)
    # evaluated every 614,400 rows (150 steps of the legacy batch) whatever the batch
    stop = {"epochs": 4, "early_stop": {"patience": patience},
            "eval_every_steps": 150 * common.PRESET_BATCH["legacy"] // train["batch_size"]}
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
            name += f"-patience{patience}" if patience else ""
            results.setdefault(variant, []).append(student(
                root, prep, name, seed, label_store=common.teacher_store(root, prep, [teacher]),
                train=common.train_config(seed, **stop | train), **config))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="bench_out/synth2m")
    parser.add_argument("--rows", type=int, default=2_500_000)
    parser.add_argument("--experiment", choices=["kd", "stopping", "cost"], default="kd")
    parser.add_argument("--preset", default="legacy", choices=list(common.PRESET_BATCH),
                        help="synthetic preset (criteo: issue 21); it sets the batch size")
    parser.add_argument("--single-teacher", default="dcnv2", choices=TEACHERS,
                        help="the one teacher of `KD from ...` and of the stopping experiment "
                        "(the strongest: dcnv2 on legacy, deepfm on criteo)")
    parser.add_argument("--patience", type=int, default=0,
                        help="stopping: stop at the patience-th evaluation in a row without "
                        "improvement (0 and 1 both stop at the first)")
    common.add_seed_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(args.workdir)
    prep = common.synthetic_dataset(root, args.rows, preset=args.preset)
    seeds = common.seed_range(args)
    train = {"batch_size": common.PRESET_BATCH[args.preset]}
    output = root / (f"distill_{args.experiment}"
                     + (f"-patience{args.patience}" if args.patience else ""))
    if args.experiment == "cost":
        table = experiment_cost(root, prep, seeds, args.single_teacher, train)
    else:
        run = {"kd": experiment_kd, "stopping": partial(experiment_stopping,
                                                        patience=args.patience)}[args.experiment]
        results = run(root, prep, seeds, args.single_teacher, train)
        table = common.summarise(results)
        output.with_suffix(".json").write_text(json.dumps(results, indent=1))
    output.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
