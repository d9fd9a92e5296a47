"""Calibration of the synthetic benchmark against BARS Criteo_x4_001: the zoo's ordering and
gaps over LR at 2M training rows, one epoch, embedding 16, Adam 1e-3, at the preset's benchmark
batch (`common.PRESET_BATCH`: 1024 for `criteo`), next to the Bayes AUC of the split and the
learnability reference (the hidden model's own form fitted on the same rows).

    python -m benchmarks.bench_synth_calibration --workdir bench_out/criteo
    python -m benchmarks.bench_synth_calibration --workdir bench_out/criteo --batch-size 4096 \
        --models dnn dcnv2 finalmlp
    python -m benchmarks.bench_synth_calibration --workdir bench_out/criteo --seed 1 \
        --models lr fm dnn

The models train as the teachers of the other benchmarks do (`common.teacher_run`, seed 2026),
so DCNv2 and DeepFM here are bench_distill's teachers. `--set KNOB=VALUE` overrides a generator
knob and works in a subdirectory named after the overrides: that is how the `criteo` preset's
values were chosen.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from benchmarks import common
from ctrdistill.analysis.report import markdown_table, result_row
from ctrdistill.data.synthetic import HiddenClickModel, SynthConfig

# BARS Criteo_x4_001 test AUC (shared METHODS.md section 6).
CRITEO = {"lr": 0.7934, "fm": 0.8086, "dnn": 0.8140, "pnn": 0.8142, "deepfm": 0.8143,
          "dcnv2": 0.8145, "finalmlp": 0.8146}
MODELS = ["lr", "fm", "dnn", "deepfm", "dcnv2", "pnn", "finalmlp", "crossfm", "crossfm-converged"]


def knob(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    return key, json.loads(value)


def calibration_table(rows: list[dict]) -> list[dict]:
    """Each model's gap to LR and its ratio to the same gap on Criteo."""
    lr = next((row["auc"] for row in rows if row["model"] == "lr"), None)
    if lr is None:
        return rows
    for row in rows:
        row["gap_to_lr"] = row["auc"] - lr
        if row["model"] in CRITEO and row["model"] != "lr":
            row["ratio_to_criteo"] = row["gap_to_lr"] / (CRITEO[row["model"]] - CRITEO["lr"])
    return rows


def reference_model(raw: Path) -> dict:
    """CrossFM with the generator's own rank and crosses: the learnability reference."""
    config = SynthConfig.model_validate_json((raw / "synth.json").read_text())
    crosses = [[f"C{j + 1}" for j in fields] for fields in HiddenClickModel(config).cross_fields]
    return {"name": "crossfm", "embedding_dim": config.rank, "crosses": crosses}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_500_000, help="all rows (8:1:1 split)")
    parser.add_argument("--workdir", default="bench_out/criteo")
    parser.add_argument("--preset", default="criteo", choices=list(common.PRESET_BATCH))
    parser.add_argument("--set", type=knob, action="append", default=[], dest="knobs")
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--batch-size", type=int, help="default: the preset's benchmark batch; "
                        "another batch size trains in batch-N/ beside the default's runs")
    parser.add_argument("--seed", type=int, default=common.TEACHER_SEED,
                        help="training seed; another than the teachers' trains in seed-N/")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    knobs = dict(args.knobs)
    root = Path(args.workdir)
    if knobs:
        root /= "tune-" + "-".join([args.preset, str(args.rows)]
                                   + [f"{k}{v}" for k, v in knobs.items()])
    prep = common.synthetic_dataset(root, args.rows, preset=args.preset, **knobs)
    batch = args.batch_size or common.PRESET_BATCH[args.preset]
    if batch != common.PRESET_BATCH[args.preset]:  # other steps in the one epoch
        root /= f"batch-{batch}"
    if args.seed != common.TEACHER_SEED:  # the spread over training seeds, same rows
        root /= f"seed-{args.seed}"
    rows = []
    for model in args.models:
        if model == "crossfm-converged":  # the reference given every epoch it can use
            run = common.train_run(root / "teachers" / model, prep,
                                   reference_model(prep.parent / "raw"), args.seed, epochs=6,
                                   early_stop={"patience": 1}, batch_size=batch)
            label = "crossfm (reference), early-stopped"
        else:
            spec = reference_model(prep.parent / "raw") if model == "crossfm" else {"name": model}
            run = common.train_run(root / "teachers" / model, prep, spec, args.seed,
                                   batch_size=batch)
            label = "crossfm (reference)" if model == "crossfm" else model
        rows.append(result_row(label, common.run_metrics(run)))
        print(markdown_table(rows[-1:]), flush=True)
    table = markdown_table(calibration_table(rows))
    (root / "calibration.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
