"""The GPU path, checked and timed on one device (issue 31 part 2). On the device machine the
whole of it is one command, `bash benchmarks/gpu/run.sh` (it installs the wheels that
`benchmarks/gpu/make_wheelhouse.sh` downloaded, then runs this); anywhere else:

    python -m benchmarks.bench_gpu --workdir bench_out/gpu --device cuda
    python -m benchmarks.bench_gpu --workdir /tmp/gpu --quick      # small, on the CPU too (CI)

Checks: every zoo model trains two steps in fp32, bf16 and fp16 with each optimizer, sparse
embeddings off and on; host syncs per training step (`torch.cuda.set_sync_debug_mode("warn")`)
for a plain and a KD step; a DNN with dropout killed mid-run resumes to the uninterrupted run's
result; its checkpoint evaluates on the CPU with the device's AUC; a batch shuffled from a
page-locked split is page-locked; the trainer under DDP in one process (NCCL on a GPU);
`label`, `distill` (from the store and from live teachers) and `kdef` on the device.

Figures: DNN, DeepFM and DCNv2 training samples/s at batch 8192 and 65536, fp32 and bf16, the
training rows in device memory, through `Trainer.train_step` and through a hand-written loop
(Adam, BCE, index slices: the limit for the trainer); labelling rows/s; the distilled student's
training samples/s.

`gpu.json` is rewritten after every stage (a run cut short keeps what it measured) and a stage
that fails is recorded with its error while the others still run; `gpu.md` holds the tables.
The exit code is 1 when any check failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml

import ctrdistill as cd
from benchmarks import common
from ctrdistill.data.batch import TEACHER_LOGITS
from ctrdistill.data.dataset import ColumnData, PreparedData
from ctrdistill.data.loader import BatchLoader
from ctrdistill.models import build_model, model_names
from ctrdistill.storage import atomic_file
from ctrdistill.strategies import PlainStrategy
from ctrdistill.strategies.factory import KDOptions, kd_strategy
from ctrdistill.training import distributed
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.device import autocast, resolve_device, synchronize
from ctrdistill.training.trainer import Trainer

SPEED_MODELS = ["dnn", "deepfm", "dcnv2"]
OPTIMIZERS = ["adam", "adamw", "sgd", "adagrad"]
PRECISIONS = ["fp32", "bf16", "fp16"]
SMALL = {"name": "dnn", "embedding_dim": 8, "hidden_units": [64, 32]}
DROPOUT = {"name": "dnn", "embedding_dim": 8, "hidden_units": [64, 32], "dropout": 0.2}


def _config(device: torch.device, **extra: Any) -> TrainConfig:
    return common.train_config(device=str(device), **extra)


def _batches(rows: ColumnData, size: int, count: int) -> list:
    loader = BatchLoader(rows, size, seed=0)
    batches = []
    while len(batches) < count:
        batches += list(loader.epoch_batches(len(batches)))
    return batches[:count]


def zoo(rows: ColumnData, device: torch.device, models: list[str],
        batch_size: int) -> dict[str, Any]:
    """Two steps of every model x precision x optimizer x sparse embeddings; 'ok' or the
    error's first line, and whether the loss stayed finite."""
    batches = _batches(rows, batch_size, 2)
    results, failed = {}, 0
    for name in models:
        for precision in PRECISIONS:
            for optimizer in OPTIMIZERS:
                for sparse in (False, True):
                    key = f"{name}/{precision}/{optimizer}/{'sparse' if sparse else 'dense'}"
                    try:
                        torch.manual_seed(0)
                        trainer = Trainer(PlainStrategy(build_model({"name": name},
                                                                    rows.feature_map)),
                                          _config(device, precision=precision,
                                                  optimizer=optimizer, sparse_embedding=sparse))
                        losses = [trainer.train_step(b)["loss"] for b in batches]
                        finite = bool(torch.isfinite(torch.stack(losses)).all())
                        results[key] = "ok" if finite else "non-finite loss"
                    except Exception as error:  # recorded: the other combinations still run
                        results[key] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
                    failed += results[key] != "ok"
    return {"combinations": len(results), "failed": failed,
            "failures": {k: v for k, v in results.items() if v != "ok"}, "ok": failed == 0}


def syncs(rows: ColumnData, device: torch.device, steps: int = 10) -> dict[str, Any]:
    """Host syncs counted over `steps` training steps (inside one log interval) of a plain and
    a KD step (stored teacher logits, mean-logits ensemble), data on the device."""
    if device.type != "cuda":
        return {"skipped": "set_sync_debug_mode needs CUDA", "ok": True}
    logits = {TEACHER_LOGITS: torch.randn(len(rows), 2)}
    data = replace(rows, optional=rows.optional | logits).to(device)
    out: dict[str, Any] = {}
    for kind in ("plain", "kd"):
        torch.manual_seed(0)
        model = build_model(SMALL, rows.feature_map)
        strategy = PlainStrategy(model) if kind == "plain" else kd_strategy(
            KDOptions(), model, [], 2, rows.feature_map)
        trainer = Trainer(strategy, _config(device, log_every_steps=steps + 1))
        batches = _batches(data, 4096, steps + 2)
        for batch in batches[:2]:  # warm-up: the first steps allocate optimizer state
            trainer.train_step(batch)
        synchronize(device)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for step, batch in enumerate(batches[2:], 2):
                    trainer.strategy.start_step(step, 0)
                    trainer.train_step(batch)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        found = [str(w.message).splitlines()[0] for w in caught
                 if "synchroniz" in str(w.message)]
        out[kind] = {"syncs_per_step": len(found) / steps, "first": found[:3]}
    out["ok"] = all(out[k]["syncs_per_step"] == 0 for k in ("plain", "kd"))
    return out


CHILD = """
import os, signal, sys
from ctrdistill.training.trainer import Trainer
import ctrdistill as cd

step, calls = Trainer.train_step, 0

def killed(self, *args):
    global calls
    calls += 1
    if calls == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, *args)

Trainer.train_step = killed
cd.train(sys.argv[1])
"""


def _run_yaml(path: Path, name: str, prep: Path, device: torch.device, **train: Any) -> Path:
    path.write_text(yaml.safe_dump({
        "name": name, "data": str(prep), "output_dir": str(path.parent), "model": DROPOUT,
        "train": _config(device, epochs=2, batch_size=1024, checkpoint_every_steps=4,
                         **train).model_dump(mode="json")}))
    return path


def resume(root: Path, prep: Path, device: torch.device) -> dict[str, Any]:
    """A DNN with dropout killed (SIGKILL) mid-epoch 1 and resumed ends as the uninterrupted
    run does; its checkpoint then evaluates on the CPU with the device's test AUC."""
    shutil.rmtree(root, ignore_errors=True)  # a rerun measures afresh
    root.mkdir(parents=True)
    whole = cd.train(_run_yaml(root / "whole.yaml", "whole", prep, device))
    steps = whole.metrics["steps"]
    config = _run_yaml(root / "cut.yaml", "cut", prep, device)
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), str(config),
                             str(steps // 2 + steps // 4)], env=env, capture_output=True,
                            text=True)
    resumed = cd.train(config, resume=True)
    a = torch.load(whole.path / "checkpoint.pt", map_location="cpu", weights_only=True)
    b = torch.load(resumed.path / "checkpoint.pt", map_location="cpu", weights_only=True)
    difference = max((a["state_dict"][k].float() - b["state_dict"][k].float()).abs().max().item()
                     for k in a["state_dict"] if a["state_dict"][k].numel())
    device_auc = whole.metrics["test"]["auc"]
    cpu_auc = cd.load_run(whole.path, device="cpu").evaluate(prep)["auc"]
    return {"killed_with": killed.returncode, "steps": steps,
            "max_parameter_difference": difference,
            "test_auc": {"uninterrupted": device_auc, "resumed": resumed.metrics["test"]["auc"]},
            "cpu_evaluation_auc": cpu_auc,
            "resume_ok": killed.returncode == -signal.SIGKILL and difference < 1e-5,
            "cpu_eval_ok": abs(cpu_auc - device_auc) < 1e-3,
            "ok": killed.returncode == -signal.SIGKILL and difference < 1e-5
            and abs(cpu_auc - device_auc) < 1e-3}


def pinned(rows: ColumnData, device: torch.device) -> dict[str, Any]:
    """A shuffled batch of a page-locked split is page-locked (its copy can be asynchronous)."""
    if device.type != "cuda":
        return {"skipped": "page-locked memory needs CUDA", "ok": True}
    batch = rows.pin_memory().take(torch.randperm(len(rows))[:4096])
    ok = batch.cat.is_pinned() and batch.label.is_pinned()
    return {"batch_pinned": ok, "ok": ok}


def ddp_one_process(rows: ColumnData, device: torch.device) -> dict[str, Any]:
    """The trainer as the one rank of a DDP group (NCCL on a GPU, gloo on the CPU): torchrun
    with one process forms no group, so the group is joined here and handed to the trainer."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1,
                            device_id=device if device.type == "cuda" else None)
    joined = distributed.group
    distributed.group = lambda _device: distributed.Group(0, 1, 0, backend)
    try:
        torch.manual_seed(0)
        trainer = Trainer(PlainStrategy(build_model(SMALL, rows.feature_map)), _config(device))
        losses = [trainer.train_step(b, len(b)) for b in _batches(rows.to(device), 2048, 5)]
        finite = bool(torch.isfinite(torch.stack([t["loss"] for t in losses])).all())
        wrapped = isinstance(trainer.forward, torch.nn.parallel.DistributedDataParallel)
    finally:
        distributed.group = joined
        dist.destroy_process_group()
    return {"backend": backend, "ddp": wrapped, "finite": finite, "ok": wrapped and finite}


def verbs(root: Path, prep: Path, device: torch.device) -> dict[str, Any]:
    """label, distill (store and live teachers) and kdef on the device, with their speeds."""
    shutil.rmtree(root, ignore_errors=True)  # a rerun measures afresh
    train = _config(device, batch_size=4096).model_dump(mode="json")
    teacher = common.train_run(root / "teacher", prep, {"name": "dnn"}, device=str(device),
                               batch_size=4096)
    started = time.perf_counter()
    store = cd.label(teachers=[teacher], data=prep, output=root / "store", device=str(device),
                     progress=False)
    label_rate = store.metrics["rows"] / (time.perf_counter() - started)
    stored = cd.distill({"name": "from-store", "data": str(prep), "output_dir": str(root),
                         "label_store": str(store.path), "student": SMALL, "train": train})
    live = cd.distill({"name": "live", "data": str(prep), "output_dir": str(root),
                       "teachers": [{"run": str(teacher)}], "student": SMALL, "train": train})
    kdef = cd.kdef({"name": "kdef", "data": str(prep), "output_dir": str(root),
                    "backbone": SMALL, "num_subnetworks": 2, "train": train})
    aucs = {"student (store)": stored.metrics["test"]["auc"],
            "student (live)": live.metrics["test"]["auc"], "kdef": kdef.metrics["test"]["auc"]}
    return {"label_rows_per_second": label_rate,
            "student_train_samples_per_second": stored.metrics["train_samples_per_second"],
            "test_auc": aucs, "ok": all(0 <= v <= 1 for v in aucs.values())}


def _trainer_rate(name: str, rows: ColumnData, size: int, precision: str,
                  device: torch.device, seconds: float) -> float:
    torch.manual_seed(0)
    trainer = Trainer(PlainStrategy(build_model({"name": name}, rows.feature_map)),
                      _config(device, batch_size=size, precision=precision))
    trainer.strategy.train()
    return _timed(lambda batch: trainer.train_step(batch), rows, size, device, seconds)


def _loop_rate(name: str, rows: ColumnData, size: int, precision: str, device: torch.device,
               seconds: float) -> float:
    """The same model and steps in a hand-written loop: Adam (fused), BCE, nothing else."""
    torch.manual_seed(0)
    model = build_model({"name": name}, rows.feature_map).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

    def step(batch) -> None:
        with autocast(device, precision):
            logit = model(batch)
        loss = F.binary_cross_entropy_with_logits(logit.float(), batch.label)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _timed(step, rows, size, device, seconds)


def _timed(step: Callable, rows: ColumnData, size: int, device: torch.device,
           seconds: float) -> float:
    loader = BatchLoader(rows, size, seed=0)
    batches, epoch = loader.epoch_batches(0), 0
    for _ in range(3):  # warm-up: kernels chosen, memory pools grown
        step(next(batches))
    synchronize(device)
    started, steps = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        batch = next(batches, None)
        if batch is None:
            epoch += 1
            batches = loader.epoch_batches(epoch)
            batch = next(batches)
        step(batch)
        steps += 1
        if steps % 20 == 0:
            synchronize(device)
    synchronize(device)
    return steps * size / (time.perf_counter() - started)


def speed(rows: ColumnData, device: torch.device, sizes: list[int], seconds: float,
          models: list[str]) -> dict[str, Any]:
    on_device = rows.to(device)
    table = []
    for name in models:
        for size in sizes:
            for precision in ("fp32", "bf16"):
                ours = _trainer_rate(name, on_device, size, precision, device, seconds)
                loop = _loop_rate(name, on_device, size, precision, device, seconds)
                table.append({"model": name, "batch": size, "precision": precision,
                              "trainer_samples_per_second": ours,
                              "loop_samples_per_second": loop, "ratio": ours / loop})
                logging.info("%s", table[-1])
    return {"table": table, "ok": True}


def report_md(report: dict[str, Any]) -> str:
    lines = [f"device: {report['device_name']} ({report['device']}), torch {report['torch']}",
             "", "| stage | ok | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {s.get('ok')} | {s.get('seconds', 0):.1f} |"
              for name, s in report["stages"].items()]
    table = report["stages"].get("speed", {}).get("table", [])
    if table:
        lines += ["", "| model | batch | precision | trainer samples/s | hand-written loop "
                  "samples/s | ratio |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['batch']} | {r['precision']} | "
                  f"{r['trainer_samples_per_second']:,.0f} | {r['loop_samples_per_second']:,.0f}"
                  f" | {r['ratio']:.2f} |" for r in table]
    return "\n".join(lines) + "\n"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench_out/gpu"))
    parser.add_argument("--report", type=Path, help="where gpu.json and gpu.md go (default: "
                        "the workdir)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per figure")
    parser.add_argument("--quick", action="store_true",
                        help="small data, two models, small batches (checks the script anywhere)")
    args = parser.parse_args()
    models, speed_models, sizes, zoo_batch = model_names(), SPEED_MODELS, [8192, 65536], 1024
    if args.quick:
        args.rows, args.seconds = 20_000, 0.2
        models, speed_models, sizes, zoo_batch = ["dnn"], ["dnn"], [512], 128
    device = resolve_device(args.device)
    report_dir = args.report or args.workdir
    report_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "device": str(device), "torch": torch.__version__, "rows": args.rows,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "stages": {}}
    prep = common.synthetic_dataset(args.workdir / "data", args.rows, preset="criteo")
    rows = PreparedData(prep).load("train")
    stages: dict[str, Callable[[], dict[str, Any]]] = {
        "zoo": lambda: zoo(rows, device, models, zoo_batch),
        "syncs": lambda: syncs(rows, device),
        "pinned": lambda: pinned(rows, device),
        "ddp one process": lambda: ddp_one_process(rows, device),
        "resume and cpu evaluation": lambda: resume(args.workdir / "resume", prep, device),
        "verbs": lambda: verbs(args.workdir / "verbs", prep, device),
        "speed": lambda: speed(rows, device, sizes, args.seconds, speed_models),
    }
    for name, stage in stages.items():
        started = time.perf_counter()
        try:
            result = stage()
        except Exception as error:  # recorded: the later stages still run
            result = {"ok": False, "error": f"{type(error).__name__}: {error}",
                      "traceback": traceback.format_exc()[-3000:]}
        result["seconds"] = time.perf_counter() - started
        report["stages"][name] = result
        logging.info("stage %s: %s", name, {k: v for k, v in result.items()
                                             if k not in ("table", "traceback")})
        with atomic_file(report_dir / "gpu.json") as tmp:
            tmp.write_text(json.dumps(report, indent=1, default=str))
    (report_dir / "gpu.md").write_text(report_md(report))
    print(report_md(report))
    if not all(s.get("ok") for s in report["stages"].values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
