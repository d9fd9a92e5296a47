"""Why fine-tuned peers end below the pretrained peers they start from (BENCHMARKS §6.2): a second
pass over rows they have already seen, or the restart itself (a fresh Adam state)?

    python benchmarks/bench_finetune.py [--seeds 3] [--arms seen:1e-3:0 fresh:1e-3:1 ...]

DeepFM and DCN pretrained one epoch alone (bench_kdef's `alone-*` runs, reused) are fine-tuned
on `--finetune-rows` rows that are either *seen* (the first rows of the training split) or
*fresh* (the valid split, never trained on), from a fresh Adam state, and evaluated on the test
split every 10 steps. An arm also sets the learning rate and the mutual weight (0: each peer
fine-tuned alone; 1: the peers fine-tuned together). Same restart, same number of steps: seen
and fresh arms differ only in whether the rows were seen. Writes finetune/restart.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_distill import train_config
from bench_kdef import _alone
from common import add_seed_arguments, mean_std, seed_range, synthetic_dataset
from ctrdistill.analysis.plots import plt, save_figure
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.schema import FEATURE_MAP_FILE
from ctrdistill.ensembles import MutualConfig, mutual
from ctrdistill.storage import atomic_directory

PEERS = ["deepfm", "dcn"]
Arm = tuple[str, float, float]  # rows (seen or fresh), learning rate, mutual weight
ARMS = ["seen:1e-3:0", "fresh:1e-3:0", "seen:1e-4:0", "fresh:1e-4:0", "seen:1e-3:1",
        "fresh:1e-3:1"]
EVAL_EVERY = 10


def data_view(prep: Path, out: Path, rows: str, count: int) -> Path:
    """A prepared-data directory training on `count` seen or fresh rows and validating on test
    (so the fine-tuning curve is the test AUC); vocabularies and test shards are linked."""
    if out.exists():
        return out
    data = PreparedData(prep)
    frame = data.scan("train" if rows == "seen" else "valid").head(count).collect()
    with atomic_directory(out) as tmp:
        (tmp / "train").mkdir()
        frame.write_parquet(tmp / "train" / "part-00000.parquet")
        for name in ("vocab", "schema.json"):
            (tmp / name).symlink_to((prep / name).resolve())
        for split in ("valid", "test"):
            (tmp / split).symlink_to((prep / "test").resolve())
        feature_map = data.feature_map
        feature_map.splits = {"train": len(frame), "valid": feature_map.splits["test"],
                              "test": feature_map.splits["test"]}
        feature_map.save(tmp / FEATURE_MAP_FILE)
    return out


def finetune(root: Path, view: Path, arm: Arm, seed: int) -> dict:
    """Test AUC of each peer at step 0 (pretrained) and every EVAL_EVERY steps after."""
    alone = [_alone(root, root / "prep", p, seed) for p in PEERS]
    rows, lr, weight = arm
    name = f"{rows}-lr{lr:g}-w{weight:g}-s{seed}"
    out = root / "finetune" / name
    if not (out / "metrics.json").exists():
        mutual(MutualConfig(name=name, data=view, output_dir=out.parent, weight=weight,
                            peer_runs=alone, train=train_config(seed, lr=lr,
                                                                eval_every_steps=EVAL_EVERY)))
    history = json.loads((out / "history.json").read_text())
    curves = {}
    for k, (peer, run) in enumerate(zip(PEERS, alone, strict=True)):
        pretrained = json.loads((run / "metrics.json").read_text())["test"]["auc"]
        curves[peer] = [(0, pretrained)] + [(h["step"], h["valid"][f"peer{k}.auc"])
                                            for h in history]
    return curves


def parse_arm(text: str) -> Arm:
    rows, lr, weight = text.split(":")
    if rows not in ("seen", "fresh"):
        raise SystemExit(f"--arms: rows must be seen or fresh, not {rows!r}")
    return rows, float(lr), float(weight)


def label(arm: Arm) -> str:
    rows, lr, weight = arm
    return f"{rows}, lr {lr:g}, mutual weight {weight:g}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="bench_out/synth2m")
    parser.add_argument("--rows", type=int, default=2_500_000, help="synthetic dataset rows")
    parser.add_argument("--finetune-rows", type=int, default=250_000)
    parser.add_argument("--arms", nargs="*", default=ARMS, help="ROWS:LR:WEIGHT, ROWS seen or "
                        "fresh, WEIGHT the mutual weight (0: each peer fine-tuned alone)")
    add_seed_arguments(parser)
    args = parser.parse_args()
    root = Path(args.workdir)
    prep = synthetic_dataset(root, args.rows)
    arms = [parse_arm(arm) for arm in args.arms]
    views = {rows: data_view(prep, root / "finetune" / f"data-{rows}", rows, args.finetune_rows)
             for rows in ("seen", "fresh")}
    results = {arm: [finetune(root, views[arm[0]], arm, seed) for seed in seed_range(args)]
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
            gain = "-"
            if alone:
                without = [c[peer][-1][1] for c in alone]
                gain = mean_std([100 * (e / w - 1) for e, w in zip(end, without, strict=True)],
                                3) + "%"
            lines.append(f"| {label(arm)} | {peer} | {len(per_seed)} | {mean_std(start, 5)} | "
                         f"{mean_std(early, 5)} | {mean_std(end, 5)} | "
                         f"{mean_std(change, 3)}% | {gain} |")
    table = "\n".join(lines) + "\n"
    (root / "finetune" / "restart.md").write_text(table)
    print(table)

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


if __name__ == "__main__":
    main()
