"""KDEF vs naive ensembles as the number of sub-networks grows, and mutual learning between
equals, on the synthetic benchmark (2M training rows); 3 seeds, mean ± std.

    python -m benchmarks.bench_kdef --experiment scaling [--sizes 1 2 4 6 8] [--seeds 3]
    python -m benchmarks.bench_kdef --experiment mutual [--peers deepfm dcn pnn fibinet]

scaling: N sub-networks (MLP [256, 256] each, one shared embedding of 16), trained one epoch as
         a naive joint ensemble (BCE of the mean logit only) and with KDEF. Reported: ensemble
         AUC, mean and worst sub-network AUC, their spread, mean |p_k - p_E| disagreement on
         test, the information abundance of embeddings and representations, and a PNG of AUC and
         abundance against N (kdef/scaling.png).
mutual:  groups of the first 2, 3, ... peers: trained together from scratch for one epoch vs
         one epoch alone; and pretrained peers (one epoch alone) fine-tuned together for one
         more epoch vs fine-tuned alone for one more epoch (--starts finetune-early: evaluated
         every 50 steps, the best state kept). Relative AUC gain of each peer.

Figures over several runs' members (an ensemble of peers trained apart, disagreement) come from
the members' test logits (`common.member_logits`) through the library's `auc` and `sigmoid`:
no verb evaluates logits that no single run served.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

import numpy as np

import ctrdistill as cd
from benchmarks import common
from ctrdistill.analysis.plots import pyplot, save_figure
from ctrdistill.training.metrics import auc, sigmoid

BACKBONE = {"name": "dnn", "embedding_dim": 16, "hidden_units": [256, 256]}
SIZES = [1, 2, 4, 6, 8]
MODES = ["naive", "kdef"]
PEERS = ["deepfm", "dcn", "pnn", "fibinet"]
# How pretrained peers are fine-tuned for one more epoch: the training settings each adds.
# "finetune-early" evaluates every 50 steps and keeps the best state (stops after 2 worse).
FINETUNES: dict[str, dict] = {
    "finetune": {}, "finetune-early": {"eval_every_steps": 50, "early_stop": {"patience": 2}}}
STARTS = ["scratch", *FINETUNES]


def disagreement(run: Path, prep: Path, rows: int = 100_000) -> float:
    """Mean |p_k - p_E| over sub-networks k and the first `rows` test rows."""
    logits = common.member_logits(run, prep)[:rows]
    ensemble = sigmoid(logits.mean(1, keepdims=True))
    return float(np.abs(sigmoid(logits) - ensemble).mean())


def experiment_scaling(root: Path, prep: Path, seeds: list[int], sizes: list[int],
                       modes: list[str]) -> str:
    runs: dict[tuple[str, int, int], Path] = {}
    for seed in seeds:
        for n in sizes:
            for mode in (["kdef"] if n == 1 else modes):
                out = root / "kdef" / f"{mode}-n{n}-s{seed}"
                runs[(mode, n, seed)] = common.run_once(out, cd.kdef, cd.KDEFConfig(
                    name=out.name, data=prep, output_dir=out.parent, backbone=BACKBONE,
                    num_subnetworks=n, mode=mode, train=common.train_config(seed)))
    reports = {Path(r["run"]).name: r for r in cd.collapse(cd.CollapseConfig(
        runs=list(runs.values()), data=prep, output=root / "kdef" / "collapse",
        sample_rows=4096)).history}
    summary = []
    for (mode, n, seed), out in runs.items():
        test = common.run_metrics(out)["test"]
        subs = [test[f"sub{k}.auc"] for k in range(n)]
        summary.append({"mode": "single MLP" if n == 1 else mode, "N": n, "seed": seed,
                        "ensemble_auc": test["auc"], "mean_sub_auc": statistics.mean(subs),
                        "worst_sub_auc": min(subs), "spread": max(subs) - min(subs),
                        "disagreement": disagreement(out, prep),
                        "field_ia": reports[out.name]["mean_field_abundance"],
                        "hidden_ia": reports[out.name]["mean_hidden_abundance"]})
    (root / "kdef" / "scaling.json").write_text(json.dumps(summary, indent=1))
    groups: dict[tuple[str, int], list[dict]] = {}
    for row in summary:
        groups.setdefault((row["mode"], row["N"]), []).append(row)
    plot_scaling(groups, root / "kdef" / "scaling.png")
    columns = ["ensemble_auc", "mean_sub_auc", "worst_sub_auc", "spread", "disagreement",
               "field_ia", "hidden_ia"]
    lines = ["| mode | N | seeds | ensemble AUC | mean sub AUC | worst sub AUC | spread "
             "| disagreement | field IA | hidden IA |", "|---|---|---|" + "---|" * len(columns)]
    for (mode, n), rows in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cells = [common.mean_std([r[c] for r in rows], 2 if c.endswith("_ia") else 5)
                 for c in columns]
        lines.append(f"| {mode} | {n} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


SCALING_PANELS = (  # (panel title, [(summary key, line style)], y label)
    ("ensemble", [("ensemble_auc", "-o")], "test AUC"),
    ("sub-networks", [("mean_sub_auc", "-s"), ("worst_sub_auc", ":v")], "test AUC"),
    ("embedding tables", [("field_ia", "-o")], "mean information abundance"),
    ("hidden representations", [("hidden_ia", "-o")], "mean information abundance"),
)


def plot_scaling(groups: dict[tuple[str, int], list[dict]], path: Path) -> None:
    """AUC and information abundance against N, naive vs KDEF (mean ± std over seeds)."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    single = groups.get(("single MLP", 1))
    sizes = sorted({n for _, n in groups})
    for ax, (title, series, ylabel) in zip(axes.flat, SCALING_PANELS, strict=True):
        for mode, colour in (("naive", "tab:red"), ("kdef", "tab:blue")):
            keys = sorted(n for m, n in groups if m == mode)
            if single:
                keys = [1, *keys]
            for key, style in series:
                cells = [common.mean_and_std(
                    [r[key] for r in (groups[(mode, n)] if n > 1 else single)]) for n in keys]
                ax.errorbar(keys, [m for m, _ in cells], yerr=[sd for _, sd in cells], fmt=style,
                            color=colour, capsize=3,
                            label=f"{mode} {key.removesuffix('_auc').replace('_', ' ')}")
        ax.set_xticks(sizes)
        ax.set_xlabel("number of sub-networks N")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)


GAIN_BARS = (  # (start, gain key, legend, colour)
    ("scratch", "gain", "from scratch vs alone", "tab:orange"),
    ("finetune", "gain", "fine-tuned vs fine-tuned alone", "tab:green"),
    ("finetune", "gain_vs_pretrained", "fine-tuned vs pretrained", "tab:olive"),
    ("finetune-early", "gain", "fine-tuned, early stop, vs alone", "tab:blue"),
    ("finetune-early", "gain_vs_pretrained", "fine-tuned, early stop, vs pretrained", "tab:cyan"),
)


def plot_gains(rows: list[dict], path: Path) -> None:
    """Relative AUC gain of every peer and ensemble per group, against each baseline."""
    labels = sorted({(r["group"], r["peer"]) for r in rows},
                    key=lambda gp: (len(gp[0]), gp[0], gp[1] == "ensemble", gp[1]))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(labels)), 4.5))
    bars = [bar for bar in GAIN_BARS if any(r["start"] == bar[0] for r in rows)]
    width = 0.8 / len(bars)
    for index, (start, key, legend, colour) in enumerate(bars):
        by_label = {(r["group"], r["peer"]): r for r in rows if r["start"] == start}
        offset = (index - (len(bars) - 1) / 2) * width
        xs = [i + offset for i, label in enumerate(labels) if label in by_label]
        cells = [by_label[label] for label in labels if label in by_label]
        ax.bar(xs, [c[f"{key}_mean"] for c in cells], width,
               yerr=[c[f"{key}_std"] for c in cells], color=colour, capsize=3, label=legend)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([f"{peer}\nN={group.count('+') + 1}" for group, peer in labels],
                       fontsize=8)
    ax.set_ylabel("relative test AUC gain (%)")
    ax.set_title("mutual learning: relative AUC gain (mean ± std over seeds)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def mutual_run(root: Path, prep: Path, name: str, seed: int, weight: float = 1.0,
               train: dict | None = None, **members) -> Path:
    out = root / "mutual" / name
    return common.run_once(out, cd.mutual, cd.MutualConfig(
        name=name, data=prep, output_dir=out.parent, weight=weight,
        train=common.train_config(seed, **(train or {})), **members))


def finetuned_alone(root: Path, prep: Path, start: str, alone: dict[str, Path],
                    seed: int) -> np.ndarray:
    """Test logits of the pretrained peers after one more epoch, each alone: a group run with
    mutual weight 0 (independent peers, at a group run's cost and on its batches)."""
    run = mutual_run(root, prep, f"{start}-alone-{'-'.join(alone)}-s{seed}", seed, weight=0.0,
                     train=FINETUNES[start], peer_runs=list(alone.values()))
    return common.member_logits(run, prep)


def experiment_mutual(root: Path, prep: Path, peers: list[str], seeds: list[int],
                      starts: list[str], group_sizes: list[int] | None = None) -> str:
    """Groups peers[:2], peers[:3], ...: from scratch (one epoch together vs one epoch alone)
    and fine-tuning (peers trained alone one epoch, then one more epoch together vs one more
    epoch alone: mutual weight 0 trains them independently at the same cost). Fine-tuned peers
    are also compared with the pretrained peers they started from. The peers' ensemble (mean
    logit) is compared with the ensemble of the same peers trained without the mutual term."""
    labels = common.labels_of_test(prep)
    # (start, group, peer) -> per seed: (AUC without the mutual term, with it, pretrained)
    results: dict[tuple[str, str, str], list[tuple[float, float, float]]] = {}
    for seed in seeds:
        alone = {p: common.alone_run(root, prep, p, seed) for p in peers}
        pretrained = np.concatenate([common.member_logits(alone[p], prep) for p in peers], 1)
        for start in starts:
            base = pretrained if start == "scratch" else finetuned_alone(
                root, prep, start, alone, seed)
            for size in group_sizes or range(2, len(peers) + 1):
                group = peers[:size]
                members = ({"peers": [{"name": p} for p in group]} if start == "scratch"
                           else {"peer_runs": [alone[p] for p in group]})
                test = common.run_metrics(mutual_run(
                    root, prep, f"dml-{start}-{'-'.join(group)}-s{seed}", seed,
                    train=FINETUNES.get(start), **members))["test"]
                for k, peer in enumerate(group):
                    results.setdefault((start, "+".join(group), peer), []).append(
                        (auc(labels, base[:, k]), test[f"peer{k}.auc"],
                         auc(labels, pretrained[:, k])))
                results.setdefault((start, "+".join(group), "ensemble"), []).append(
                    (auc(labels, base[:, :size].mean(1)), test["auc"],
                     auc(labels, pretrained[:, :size].mean(1))))
    rows = []
    for (start, group, peer), triples in results.items():
        without, with_, before = ([t[i] for t in triples] for i in range(3))
        row = {"start": start, "group": group, "peer": peer, "seeds": len(triples),
               "auc_without": without, "auc_with": with_, "auc_pretrained": before,
               **relative_gain(with_, without, "gain")}
        if start in FINETUNES:
            row |= relative_gain(with_, before, "gain_vs_pretrained")
        rows.append(row)
    (root / "mutual" / "gains.json").write_text(json.dumps(rows, indent=1))
    plot_gains(rows, root / "mutual" / "gains.png")
    lines = ["| start | group | peer | seeds | AUC without mutual term | AUC with | relative gain "
             "| pretrained AUC | relative gain vs pretrained |", "|---" * 9 + "|"]
    for row in rows:
        versus = ([common.mean_std(row["auc_pretrained"], 5),
                   f"{row['gain_vs_pretrained_mean']:.3f} ± {row['gain_vs_pretrained_std']:.3f}%"]
                  if row["start"] in FINETUNES else ["-", "-"])
        lines.append(f"| {row['start']} | {row['group']} | {row['peer']} | {row['seeds']} | "
                     f"{common.mean_std(row['auc_without'], 5)} | "
                     f"{common.mean_std(row['auc_with'], 5)} | "
                     f"{row['gain_mean']:.3f} ± {row['gain_std']:.3f}% | " + " | ".join(versus)
                     + " |")
    return "\n".join(lines) + "\n"


def relative_gain(after: list[float], before: list[float], name: str) -> dict[str, float]:
    """Mean and std over seeds of 100 * (after - before) / before."""
    mean, std = common.mean_and_std([100 * (a - b) / b for a, b in zip(after, before, strict=True)])
    return {f"{name}_mean": mean, f"{name}_std": std}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="bench_out/synth2m")
    parser.add_argument("--rows", type=int, default=2_500_000)
    parser.add_argument("--experiment", choices=["scaling", "mutual"], default="scaling")
    common.add_seed_arguments(parser)
    parser.add_argument("--sizes", type=int, nargs="*", default=SIZES)
    parser.add_argument("--modes", nargs="*", choices=MODES, default=MODES,
                        help="scaling: ensemble modes for N > 1 (split runs over processes)")
    parser.add_argument("--peers", nargs="*", default=PEERS)
    parser.add_argument("--starts", nargs="*", choices=STARTS, default=["scratch", "finetune"],
                        help="mutual: from scratch and/or how pretrained peers are fine-tuned")
    parser.add_argument("--group-sizes", type=int, nargs="*",
                        help="mutual: train only these groups (the first K peers; default all "
                        "from 2 to the number of peers)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if any(not 2 <= k <= len(args.peers) for k in args.group_sizes or []):
        parser.error(f"--group-sizes must lie in 2..{len(args.peers)}")
    root = Path(args.workdir)
    prep = common.synthetic_dataset(root, args.rows)
    seeds = common.seed_range(args)
    if args.experiment == "scaling":
        table = experiment_scaling(root, prep, seeds, args.sizes, args.modes)
    else:
        table = experiment_mutual(root, prep, args.peers, seeds, args.starts, args.group_sizes)
    (root / f"kdef_{args.experiment}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
