"""Serving cost of the architectures of one results table, timed side by side (issue 32's
timing: every figure the median of blocks of calls lasting 0.2 s or more, all models of the
table timed in alternation over three rounds at the end, one thread).

    python -m benchmarks.bench_cost --table compression   # §10.2: teachers and DNN sizes, criteo
    python -m benchmarks.bench_cost --table distill       # §4.4: teachers and DNNs, legacy

Inference cost depends on a model's architecture and the rows it scores, not on its trained
weights, so each model is built fresh from the table's config on the table's dataset (the same
vocabularies, hence the same parameters): no trained run is needed. The ensemble's cost is its
three teachers run one after another (its gate left out). Writes `cost_TABLE.json` and
`cost_TABLE.md` into the workdir.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from benchmarks import bench_distill, common
from benchmarks.bench_compression import cheaper, costs, ensemble_cost
from ctrdistill.data.dataset import PreparedData
from ctrdistill.models.base import SIZES
from ctrdistill.models.registry import build_model, model_config
from ctrdistill.storage import atomic_file

ENSEMBLE = "teacher ensemble"
#: The architectures of each table, with the dataset (preset, workdir) it was measured on.
TABLES = {
    "compression": ("criteo", "bench_out/criteo",
                    {**{f"teacher {t}": {"name": t} for t in bench_distill.TEACHERS},
                     **{f"student {s}": {"name": "dnn", "size": s} for s in SIZES
                        if s != "base"},
                     "student base": common.STUDENT}),
    # with the smaller students of §4.4's second table (medium and small are those DNNs)
    "distill": ("legacy", "bench_out/synth2m",
                {**{f"teacher {t}": {"name": t} for t in bench_distill.TEACHERS},
                 "student base": common.STUDENT,
                 **{f"student {s}": {"name": "dnn", "size": s} for s in ("medium", "small")}}),
}


def table_costs(prep: Path, specs: dict[str, dict]) -> list[dict]:
    """Parameters, bytes and the side-by-side speeds of every model, plus the ensemble of the
    teachers and each model's cost relative to it."""
    data = PreparedData(prep)
    models = {name: build_model(model_config(spec), data.feature_map).eval()
              for name, spec in specs.items()}
    timed = costs(models, data.load("test"))
    rows = [{"model": name, **figures} for name, figures in timed.items()]
    teachers = [r for r in rows if r["model"].startswith("teacher ")]
    ensemble = {"model": ENSEMBLE, **ensemble_cost(teachers)}
    rows.insert(len(teachers), ensemble)
    return [r | cheaper(ensemble, r) for r in rows]


def table(rows: list[dict]) -> str:
    lines = ["| model | params | bytes | samples/s @4096 | ms @1 | x cheaper than the ensemble "
             "@4096 / @1 |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['params']:,} | {r['model_bytes']:,} | "
              f"{r['inference_samples_per_second']:,.0f} | {r['latency_ms']:.3f} | "
              f"{r['cheaper_at_4096']:.1f}x / {r['cheaper_at_1']:.1f}x |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", choices=list(TABLES), default="compression")
    parser.add_argument("--workdir", help="default: the table's own benchmark workdir")
    parser.add_argument("--rows", type=int, default=2_500_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    preset, workdir, specs = TABLES[args.table]
    root = Path(args.workdir or workdir)
    prep = common.synthetic_dataset(root, args.rows, preset=preset)
    rows = table_costs(prep, specs)
    text = table(rows)
    with atomic_file(root / f"cost_{args.table}.json") as tmp:
        tmp.write_text(json.dumps(rows, indent=1))
    with atomic_file(root / f"cost_{args.table}.md") as tmp:
        tmp.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
