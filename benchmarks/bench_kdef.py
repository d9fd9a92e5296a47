"""KDEF vs naive ensembles as the number of sub-networks grows, and mutual learning between
equals, on the synthetic benchmark (2M training rows).

    python benchmarks/bench_kdef.py --experiment scaling --seeds 1
    python benchmarks/bench_kdef.py --experiment mutual

scaling: N in {1, 2, 4, 6, 8} sub-networks (MLP [256, 256] each, one shared embedding of 16),
         trained one epoch as a naive joint ensemble (BCE of the mean logit only) and with KDEF.
         Reported: ensemble AUC, mean and worst sub-network AUC, their spread, mean |p_k - p_E|
         disagreement on test, and the information abundance of embeddings and representations.
mutual:  peers DeepFM, DCN, PNN (groups of 2 and 3): trained together from scratch for one epoch
         vs one epoch alone; and pretrained peers (one epoch alone) fine-tuned together for one
         more epoch vs fine-tuned alone for one more epoch. Relative AUC gain of each peer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from bench_distill import teacher_run, train_config
from common import synthetic_dataset
from ctrdistill.analysis.collapse import analyze_collapse
from ctrdistill.data.dataset import PreparedData
from ctrdistill.ensembles import KDEFConfig, MutualConfig, kdef, mutual
from ctrdistill.training.checkpoint import load_checkpoint

BACKBONE = {"name": "dnn", "embedding_dim": 16, "hidden_units": [256, 256]}
SIZES = [1, 2, 4, 6, 8]


@torch.no_grad()
def disagreement(run: Path, data: PreparedData, rows: int = 100_000) -> float:
    """Mean |p_k - p_E| over sub-networks k and test rows."""
    model, _ = load_checkpoint(run, data.feature_map)
    test = data.load("test")
    batch = test.take(slice(0, rows))
    logits = torch.stack([o.logit for o in model.encode_all(batch)], 1)
    probs = torch.sigmoid(logits)
    ensemble = torch.sigmoid(logits.mean(1, keepdim=True))
    return float((probs - ensemble).abs().mean())


def experiment_scaling(root: Path, prep: Path, seeds: list[int]) -> str:
    data = PreparedData(prep)
    runs: dict[tuple[str, int, int], Path] = {}
    for seed in seeds:
        for n in SIZES:
            for mode in (["kdef"] if n == 1 else ["naive", "kdef"]):
                name = f"{mode}-n{n}-s{seed}"
                out = root / "kdef" / name
                if not (out / "metrics.json").exists():
                    kdef(KDEFConfig(name=name, data=prep, output_dir=out.parent,
                                    backbone=BACKBONE, num_subnetworks=n, mode=mode,
                                    train=train_config(seed)))
                runs[(mode, n, seed)] = out
    reports = {Path(r["run"]).name: r for r in analyze_collapse(
        list(runs.values()), prep, root / "kdef" / "collapse", 4096)}
    lines = ["| mode | N | ensemble AUC | mean sub AUC | worst sub AUC | spread | disagreement "
             "| field IA | hidden IA |", "|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for (mode, n, seed), out in runs.items():
        test = json.loads((out / "metrics.json").read_text())["test"]
        subs = [test[f"sub{k}.auc"] for k in range(n)]
        row = {"mode": "single MLP" if n == 1 else mode, "N": n, "seed": seed,
               "ensemble_auc": test["auc"], "mean_sub_auc": statistics.mean(subs),
               "worst_sub_auc": min(subs), "spread": max(subs) - min(subs),
               "disagreement": disagreement(out, data),
               "field_ia": reports[out.name]["mean_field_abundance"],
               "hidden_ia": reports[out.name]["mean_hidden_abundance"]}
        summary.append(row)
        lines.append(f"| {row['mode']} | {n} | {row['ensemble_auc']:.5f} | "
                     f"{row['mean_sub_auc']:.5f} | {row['worst_sub_auc']:.5f} | "
                     f"{row['spread']:.5f} | {row['disagreement']:.4f} | {row['field_ia']:.2f} | "
                     f"{row['hidden_ia']:.2f} |")
    (root / "kdef" / "scaling.json").write_text(json.dumps(summary, indent=1))
    return "\n".join(lines) + "\n"


def _mutual_run(root: Path, prep: Path, name: str, weight: float = 1.0, **members) -> dict:
    out = root / "mutual" / name
    if not (out / "metrics.json").exists():
        mutual(MutualConfig(name=name, data=prep, output_dir=out.parent, weight=weight,
                            train=train_config(2026), **members))
    return json.loads((out / "metrics.json").read_text())["test"]


def experiment_mutual(root: Path, prep: Path) -> str:
    peers = ["deepfm", "dcn", "pnn"]
    alone = {p: teacher_run(root, prep, p) for p in peers}
    scratch_base = {p: json.loads((alone[p] / "metrics.json").read_text())["test"]["auc"]
                    for p in peers}
    # Fine-tuning gets one more epoch: its baseline is each peer fine-tuned alone one more
    # epoch (mutual weight 0 trains the peers independently, at the same cost).
    alone_more = _mutual_run(root, prep, "finetune-alone", weight=0.0,
                             peer_runs=[alone[p] for p in peers])
    finetune_base = {p: alone_more[f"peer{k}.auc"] for k, p in enumerate(peers)}
    lines = ["| start | group | peer | AUC without mutual term | AUC with | relative gain |",
             "|---|---|---|---|---|---|"]
    for start, base in (("scratch", scratch_base), ("finetune", finetune_base)):
        for size in (2, 3):
            group = peers[:size]
            members = ({"peers": [{"name": p} for p in group]} if start == "scratch"
                       else {"peer_runs": [alone[p] for p in group]})
            test = _mutual_run(root, prep, f"dml-{start}-{'-'.join(group)}", **members)
            for k, peer in enumerate(group):
                after = test[f"peer{k}.auc"]
                lines.append(f"| {start} | {'+'.join(group)} | {peer} | {base[peer]:.5f} | "
                             f"{after:.5f} | {100 * (after - base[peer]) / base[peer]:+.3f}% |")
            lines.append(f"| {start} | {'+'.join(group)} | mean of peers | - | "
                         f"{test['auc']:.5f} | - |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="bench_out/synth2m")
    parser.add_argument("--rows", type=int, default=2_500_000)
    parser.add_argument("--experiment", choices=["scaling", "mutual"], default="scaling")
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    root = Path(args.workdir)
    prep = synthetic_dataset(root, args.rows)
    if args.experiment == "scaling":
        table = experiment_scaling(root, prep, list(range(1, args.seeds + 1)))
    else:
        table = experiment_mutual(root, prep)
    (root / f"kdef_{args.experiment}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
