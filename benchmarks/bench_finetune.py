"""Fine-tuning pretrained peers (BENCHMARKS §6.3): why they end below where they started, and
whether mutual learning helps when the fine-tuning rows are new to them.

    python -m benchmarks.bench_finetune --experiment restart [--seeds 3] [--arms seen:1e-3:0 ...]
    python -m benchmarks.bench_finetune --experiment halves [--seeds 3]

restart: DeepFM and DCN pretrained one epoch alone (bench_kdef's `alone-*` runs, reused) are
         fine-tuned on `--finetune-rows` rows that are either *seen* (the first rows of the
         training split) or *fresh* (the valid split, never trained on), from a fresh Adam
         state, and evaluated on the test split every 10 steps. An arm also sets the learning
         rate and the mutual weight (0: each peer fine-tuned alone; 1: together). Seen and fresh
         arms differ only in whether the rows were seen. Writes finetune/restart.{json,md,png}.
halves:  the peers are pretrained one epoch alone on the first half of the training rows, then
         fine-tuned one epoch on the second half, alone (mutual weight 0) or together (weight 1),
         as one would fine-tune on a new day's rows. Writes finetune/halves.{json,md}.

The fine-tuning rows are `common.data_subset`s of the benchmark data (a verb trains on a whole
train split), and the ensemble's AUC is the library's `auc` of the peers' mean test logit (no
verb evaluates an ensemble of separate runs).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

import ctrdistill as cd
from benchmarks import common
from ctrdistill.analysis.plots import plt, save_figure
from ctrdistill.data.dataset import PreparedData
from ctrdistill.rundir import RunDirectory
from ctrdistill.training.metrics import auc

PEERS = ["deepfm", "dcn"]
Arm = tuple[str, float, float]  # rows (seen or fresh), learning rate, mutual weight
ARMS = ["seen:1e-3:0", "fresh:1e-3:0", "seen:1e-4:0", "fresh:1e-4:0", "seen:1e-3:1",
        "fresh:1e-3:1"]
EVAL_EVERY = 10


def finetune(root: Path, prep: Path, view: Path, arm: Arm, seed: int) -> dict:
    """Test AUC of each peer at step 0 (pretrained) and every EVAL_EVERY steps after."""
    alone = [common.alone_run(root, prep, p, seed) for p in PEERS]
    rows, lr, weight = arm
    out = root / "finetune" / f"{rows}-lr{lr:g}-w{weight:g}-s{seed}"
    common.run_once(out, cd.mutual, cd.MutualConfig(
        name=out.name, data=view, output_dir=out.parent, weight=weight, peer_runs=alone,
        train=common.train_config(seed, lr=lr, eval_every_steps=EVAL_EVERY)))
    history = RunDirectory(out).history()
    curves = {}
    for k, (peer, run) in enumerate(zip(PEERS, alone, strict=True)):
        curves[peer] = [(0, common.run_metrics(run)["test"]["auc"])] + [
            (h["step"], h["valid"][f"peer{k}.auc"]) for h in history]
    return curves


def parse_arm(text: str) -> Arm:
    rows, lr, weight = text.split(":")
    if rows not in ("seen", "fresh"):
        raise SystemExit(f"--arms: rows must be seen or fresh, not {rows!r}")
    return rows, float(lr), float(weight)


def label(arm: Arm) -> str:
    rows, lr, weight = arm
    return f"{rows}, lr {lr:g}, mutual weight {weight:g}"


def experiment_restart(root: Path, prep: Path, arms: list[Arm], rows: int,
                       seeds: list[int]) -> str:
    data = PreparedData(prep)
    views = {kind: common.data_subset(prep, root / "finetune" / f"data-{kind}",
                                      data.scan("train" if kind == "seen" else "valid").head(rows),
                                      valid="test")
             for kind in ("seen", "fresh")}
    results = {arm: [finetune(root, prep, views[arm[0]], arm, seed) for seed in seeds]
               for arm in arms}
    (root / "finetune" / "restart.json").write_text(
        json.dumps({label(arm): curves for arm, curves in results.items()}, indent=1))

    lines = ["| rows, lr, mutual weight | peer | seeds | pretrained AUC | AUC after 10 steps "
             "| after the last step | relative change | relative gain vs mutual weight 0 |",
             "|---" * 8 + "|"]
    for arm, per_seed in results.items():
        alone = results.get((arm[0], arm[1], 0.0)) if arm[2] else None
        for peer in PEERS:
            start, early, end = ([c[peer][i][1] for c in per_seed] for i in (0, 1, -1))
            change = [100 * (e / s - 1) for e, s in zip(end, start, strict=True)]
            gain = (relative(end, [c[peer][-1][1] for c in alone]) if alone else "-")
            cells = [common.mean_std(values, 5) for values in (start, early, end)]
            lines.append(f"| {label(arm)} | {peer} | {len(per_seed)} | {' | '.join(cells)} | "
                         f"{common.mean_std(change, 3)}% | {gain} |")

    fig, axes = plt.subplots(1, len(PEERS), figsize=(5 * len(PEERS), 3.6), sharey=True)
    for ax, peer in zip(axes, PEERS, strict=True):
        for arm, per_seed in results.items():
            steps = [s for s, _ in per_seed[0][peer]]
            mean = [sum(c[peer][i][1] for c in per_seed) / len(per_seed)
                    for i in range(len(steps))]
            ax.plot(steps, mean, marker="o", markersize=3, label=label(arm))
        ax.set_title(f"{peer}: fine-tuning a pretrained peer")
        ax.set_xlabel("fine-tuning step (batch 4096)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test AUC")
    axes[0].legend(fontsize=8)
    save_figure(fig, root / "finetune" / "restart.png")
    return "\n".join(lines) + "\n"


def relative(after: list[float], before: list[float]) -> str:
    """Relative change in percent per seed, as 'mean ± std%'."""
    return common.mean_std([100 * (a / b - 1) for a, b in zip(after, before, strict=True)], 3) + "%"


def experiment_halves(root: Path, prep: Path, seeds: list[int]) -> str:
    data = PreparedData(prep)
    half = data.feature_map.splits["train"] // 2
    first = common.data_subset(prep, root / "finetune" / "data-first-half",
                               data.scan("train").head(half))
    second = common.data_subset(prep, root / "finetune" / "data-second-half",
                                data.scan("train").slice(half))
    out = root / "finetune" / "halves"
    # peer -> per seed: pretrained on the first half, fine-tuned alone, together, all rows once
    aucs: dict[str, list[tuple[float, ...]]] = {p: [] for p in [*PEERS, "ensemble"]}
    for seed in seeds:
        pretrained = [common.train_run(out / f"{peer}-first-half-s{seed}", first,
                                       {"name": peer}, seed) for peer in PEERS]
        tests = []
        for weight in (0.0, 1.0):
            name = f"second-half-w{weight:g}-s{seed}"
            run = common.run_once(out / name, cd.mutual, cd.MutualConfig(
                name=name, data=second, output_dir=out, weight=weight, peer_runs=pretrained,
                train=common.train_config(seed)))
            tests.append(common.run_metrics(run)["test"])
        once = [common.alone_run(root, prep, p, seed) for p in PEERS]
        for k, peer in enumerate([*PEERS, "ensemble"]):
            key = f"peer{k}.auc" if peer != "ensemble" else "auc"
            if peer == "ensemble":
                before = mean_logit_auc(prep, pretrained)
                all_rows = mean_logit_auc(prep, once)
            else:
                before = common.run_metrics(pretrained[k])["test"]["auc"]
                all_rows = common.run_metrics(once[k])["test"]["auc"]
            aucs[peer].append((before, tests[0][key], tests[1][key], all_rows))
    (out.parent / "halves.json").write_text(json.dumps(aucs, indent=1))
    lines = ["| peer | seeds | first half only | + second half alone | + second half together "
             "| relative gain of the mutual term | one epoch on all rows |", "|---" * 7 + "|"]
    for peer, rows in aucs.items():
        before, alone, together, all_rows = ([r[i] for r in rows] for i in range(4))
        cells = [common.mean_std(values, 5) for values in (before, alone, together)]
        lines.append(f"| {peer} | {len(rows)} | {' | '.join(cells)} | "
                     f"{relative(together, alone)} | {common.mean_std(all_rows, 5)} |")
    return "\n".join(lines) + "\n"


def mean_logit_auc(prep: Path, runs: list[Path]) -> float:
    """Test AUC of the mean logit of finished runs."""
    logits = np.concatenate([common.member_logits(run, prep) for run in runs], 1).mean(1)
    return auc(common.labels_of_test(prep), logits)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="bench_out/synth2m")
    parser.add_argument("--experiment", choices=["restart", "halves"], default="restart")
    parser.add_argument("--rows", type=int, default=2_500_000, help="synthetic dataset rows")
    parser.add_argument("--finetune-rows", type=int, default=250_000)
    parser.add_argument("--arms", nargs="*", default=ARMS, help="ROWS:LR:WEIGHT, ROWS seen or "
                        "fresh, WEIGHT the mutual weight (0: each peer fine-tuned alone)")
    common.add_seed_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(args.workdir)
    prep = common.synthetic_dataset(root, args.rows)
    if args.experiment == "restart":
        table = experiment_restart(root, prep, [parse_arm(a) for a in args.arms],
                                   args.finetune_rows, common.seed_range(args))
    else:
        table = experiment_halves(root, prep, common.seed_range(args))
    (root / "finetune" / f"{args.experiment}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
