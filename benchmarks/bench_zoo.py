"""Zoo table on the synthetic benchmark: every model trained on the same 2M training rows
(Criteo-x4 protocol, embedding 16, Adam 1e-3, batch 4096), one epoch, one seed.

    python benchmarks/bench_zoo.py --rows 2500000 --workdir bench_out/synth2m

The trained runs are reused as teachers by bench_distill.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import synthetic_dataset
from ctrdistill.analysis.report import markdown_table, result_row
from ctrdistill.models import model_names
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.run import RunConfig, run_train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_500_000)
    parser.add_argument("--workdir", default="bench_out/synth2m")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--models", nargs="*", default=None)
    args = parser.parse_args()
    root = Path(args.workdir)
    prep = synthetic_dataset(root, args.rows)
    train = TrainConfig(epochs=args.epochs, batch_size=4096, early_stop=None, lr_plateau=None,
                        progress=False, threads=2)
    rows = []
    for name in args.models or model_names():
        run = root / "zoo" / name
        if not (run / "metrics.json").exists():
            run_train(RunConfig(name=name, data=prep, output_dir=root / "zoo",
                                model={"name": name}, train=train))
        metrics = json.loads((run / "metrics.json").read_text())
        rows.append(result_row(name, metrics))
        print(markdown_table(rows[-1:]), flush=True)
    table = markdown_table(rows)
    (root / "zoo_results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
