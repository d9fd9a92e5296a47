"""Foundation benchmark: prepare throughput and peak memory, loader throughput, DNN training
throughput (embedding 16, MLP [400, 400, 400], batch 4096) with dense Adam vs sparse embeddings.

    python -m benchmarks.bench_foundation --rows 1000000 --workdir bench_out/foundation

Each stage runs in a fresh subprocess so its peak RSS is its own. A stage imports only the layer
it measures rather than the verbs: `cd.synth` and `cd.prepare` live in `ctrdistill.pipelines`,
whose import loads torch and matplotlib, which would add their start-up time and memory to the
data stages' figures; and training times `Trainer` steps alone, which no verb does.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

LOADER = """
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.loader import BatchLoader
rows = PreparedData("{work}/prep").load("train")
start = time.perf_counter(); n = 0
for batch in BatchLoader(rows, 4096, seed=0):
    n += len(batch)
RESULT["rows_per_second"] = n / (time.perf_counter() - start)
"""
STAGES = {
    "synth": """
from ctrdistill.data.synthetic import SynthConfig, write_synthetic
write_synthetic(SynthConfig(rows={rows}), Path("{work}/raw"), show_progress=False)
""",
    "prepare": """
from ctrdistill.data.prepare import PrepareConfig, prepare
prepare(PrepareConfig(recipe="synthetic", input="{work}/raw", output="{work}/prep",
                      protocol="x4", overwrite=True), show_progress=False)
""",
    "loader": LOADER,
    "loader_1_thread": "import torch\ntorch.set_num_threads(1)\n" + LOADER,
    "train": """
import torch
from ctrdistill.data.dataset import PreparedData
from ctrdistill.data.loader import BatchLoader
from ctrdistill.models import build_model
from ctrdistill.strategies import PlainStrategy
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.trainer import Trainer
torch.manual_seed(0)
data = PreparedData("{work}/prep")
rows = data.load("train")
for sparse in (False, True):
    model = build_model({{"name": "dnn", "embedding_dim": 16, "hidden_units": [400, 400, 400]}},
                        data.feature_map)
    trainer = Trainer(PlainStrategy(model), TrainConfig(sparse_embedding=sparse, progress=False))
    batches = iter(BatchLoader(rows, 4096, seed=0))
    for _ in range(3):
        trainer.train_step(next(batches))
    start = time.perf_counter(); n = 0
    for _ in range({steps}):
        batch = next(batches); trainer.train_step(batch); n += len(batch)
    RESULT["sparse" if sparse else "dense"] = n / (time.perf_counter() - start)
RESULT["embedding_rows"] = model.embedding.num_rows
""",
}


def run_stage(name: str, **values) -> dict:
    # The child reports its own peak RSS, so each stage's memory is its own.
    code = ("import time, json, resource\nfrom pathlib import Path\nRESULT = {}\n"
            + STAGES[name].format(**values)
            + "\nRESULT['peak_rss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024"
            + "\nprint(json.dumps(RESULT))")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["seconds"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workdir", default="bench_out/foundation")
    args = parser.parse_args()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "raw", ignore_errors=True)
    results = {}
    for stage in STAGES:
        results[stage] = run_stage(stage, rows=args.rows, work=work, steps=args.steps)
        print(stage, json.dumps(results[stage]), flush=True)
    results["prepare"]["rows_per_second"] = args.rows / results["prepare"]["seconds"]
    print(json.dumps(results, indent=1))
    (work / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
