"""The one trainer. It knows nothing of KD, DML or KDEF: a strategy supplies the loss terms, the
outputs to evaluate and the label-free held-out terms; the trainer runs optimisation on the
configured device and precision (and, under torchrun, as one rank of a DDP group), the L2 on
the embedding rows a batch touches, evaluation, early stopping, learning-rate plateaus, keeps
the best state, and saves and restores everything a resumed fit needs to continue exactly as an
uninterrupted one would (model, optimizers, schedulers, RNG, loader position, history).

Losses stay on the device between reads: the host waits for it only every `log_every_steps`
and at evaluations, never per step."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ctrdistill.data.batch import Batch
from ctrdistill.data.dataset import ColumnData
from ctrdistill.data.loader import Loader
from ctrdistill.errors import CtrDistillError
from ctrdistill.models.layers.embedding import FeatureEmbedding
from ctrdistill.progress import progress
from ctrdistill.strategies.base import SERVED, Strategy
from ctrdistill.training import distributed
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.device import autocast, grad_scaler, resolve_device
from ctrdistill.training.inference import collect
from ctrdistill.training.memory import keep_freed_memory
from ctrdistill.training.metrics import evaluate_logits

logger = logging.getLogger(__name__)

#: Saves a resume state (a dict of tensors and plain values); called at every evaluation and
#: every `checkpoint_every_steps`.
Checkpoint = Callable[[dict[str, Any]], None]


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    stopped_early: bool = False
    steps: int = 0
    train_seconds: float = 0.0
    samples_per_second: float = 0.0


@dataclass
class _Progress:
    """Where a fit stands; saved in the resume state."""

    epoch: int = 0
    batch: int = 0  # batches of `epoch` done
    step: int = 0
    samples: int = 0
    seconds: float = 0.0  # training time before the current session
    running: dict[str, Any] = field(default_factory=dict)  # this epoch's loss sums (tensors)
    seen: int = 0  # this epoch's rows
    evaluated_at: int = -1
    stop: bool = False
    best_score: float = -math.inf
    bad_evals: int = 0


def fused_kernel(optimizer: str, device: torch.device) -> bool | None:
    """True where this torch has the fused kernel of `optimizer` for `device` (one pass over
    all dense parameters instead of one op per tensor); None (torch's default) elsewhere:
    torch 2.x has no fused Adagrad on CUDA, and a missing kernel fails only at the first step."""
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device.type)
    return True if key and torch._C._dispatch_has_kernel_for_dispatch_key(
        f"aten::_fused_{optimizer}_", key) else None


def sparse_step_unless_non_finite(optimizer: torch.optim.SparseAdam) -> None:
    """SparseAdam's step under fp16 loss scaling, skipped where its (unscaled) gradients hold
    an inf or NaN, as GradScaler.step skips it, but without GradScaler's host read of that flag
    (`.item()`, a sync every step: SparseAdam takes no found-inf tensor). The rows the step
    touches are saved and put back when the flag is set; the step count still advances."""
    saved = []
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is None:
                continue
            param.grad = param.grad.coalesce()
            rows = param.grad.indices()[0]
            state = optimizer.state[param]
            before = [t.index_select(0, rows) if t is not None else None for t in
                      (param.detach(), state.get("exp_avg"), state.get("exp_avg_sq"))]
            saved.append((param, rows, ~torch.isfinite(param.grad.values()).all(), before))
    optimizer.step()
    for param, rows, non_finite, before in saved:
        state = optimizer.state[param]
        for tensor, old in zip((param.detach(), state["exp_avg"], state["exp_avg_sq"]), before,
                               strict=True):
            new = tensor.index_select(0, rows)
            tensor.index_copy_(0, rows, torch.where(
                non_finite, torch.zeros_like(new) if old is None else old, new))


def flatten_metrics(per_output: dict[str, dict[str, float]]) -> dict[str, float]:
    """{'served': {'auc': ..}, 'peer0': {'auc': ..}} -> {'auc': .., 'peer0.auc': ..}."""
    flat = {}
    for output, metrics in per_output.items():
        for name, value in metrics.items():
            flat[name if output == SERVED else f"{output}.{name}"] = value
    return flat


class Trainer:
    def __init__(self, strategy: Strategy, config: TrainConfig,
                 unused_parameters: bool = False) -> None:
        """`unused_parameters`: some steps' losses may leave parameters out (DDP then looks
        for them after each backward pass, which costs a walk of the autograd graph)."""
        self.config = config
        self.unused_parameters = unused_parameters
        if config.threads:
            torch.set_num_threads(config.threads)
        keep_freed_memory()
        self.device = resolve_device(config.device)
        self.group = distributed.group(self.device)
        if self.group and self.group.backend == "nccl" and config.sparse_embedding:
            raise CtrDistillError("train.sparse_embedding: NCCL cannot all-reduce sparse "
                                  "gradients; use dense embeddings on GPUs (gloo, on CPUs, can)")
        self.strategy = strategy.to(self.device)
        self.embeddings = [m for m in strategy.modules() if isinstance(m, FeatureEmbedding)
                           and m.table.weight.requires_grad]
        self.optimizers = self._optimizers()
        self.scaler = grad_scaler(self.device, config.precision)
        self.forward = self._wrapped()
        self.plateau = []
        if config.lr_plateau and config.early_stop:
            p = config.lr_plateau
            # Scores are sign-adjusted so that higher is always better, and the threshold is
            # early stopping's min_delta, so both agree on what counts as an improvement. Torch
            # reduces once the bad count exceeds its patience, Keras (and our config) once it
            # reaches it: hence the - 1.
            self.plateau = [torch.optim.lr_scheduler.ReduceLROnPlateau(
                o, mode="max", factor=p.factor, patience=max(p.patience - 1, 0),
                threshold=config.early_stop.min_delta, threshold_mode="abs",
                min_lr=p.min_lr) for o in self.optimizers]

    def _wrapped(self) -> nn.Module:
        """DDP all-reduces gradients as they are computed; it wraps the strategy, whose forward
        is its loss, so the trainer drives it unchanged."""
        if self.group is None:
            return self.strategy
        return nn.parallel.DistributedDataParallel(
            self.strategy, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=self.unused_parameters)

    def reshaped(self) -> None:
        """Call after the strategy's parameters changed shape (vocabulary growth), on every
        rank: DDP sizes its gradient buckets when it wraps, and wrapping again also gives every
        rank rank 0's parameters (the new rows each rank drew)."""
        if self.group is not None:
            self.forward = self.strategy  # the old wrapper, and its gradient hooks, go first
            self.forward = self._wrapped()

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        c = self.config
        # Sparse gradients are the optimizer's choice, made here: the models do not know.
        for embedding in self.embeddings:
            embedding.table.sparse = c.sparse_embedding
        sparse_ids = {id(e.table.weight) for e in self.embeddings} if c.sparse_embedding else set()
        params = [p for p in self.strategy.parameters() if p.requires_grad]
        sparse = [p for p in params if id(p) in sparse_ids]
        dense = [p for p in params if id(p) not in sparse_ids]
        optimizers: list[torch.optim.Optimizer] = []
        if dense:
            kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                     "sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad}
            optimizers.append(kinds[c.optimizer](dense, lr=c.lr, weight_decay=c.weight_decay,
                                                 fused=fused_kernel(c.optimizer, self.device)))
        if sparse:
            optimizers.append(torch.optim.SparseAdam(sparse, lr=c.embedding_lr or c.lr))
        self.dense_params = dense
        return optimizers

    def _embedding_penalty(self, batch: Batch) -> torch.Tensor | None:
        norms = [n for n in (e.rows_sq_norm(batch) for e in self.embeddings) if n is not None]
        return torch.stack(norms).sum() if norms else None

    def train_step(self, batch: Batch, global_rows: int | None = None) -> dict[str, torch.Tensor]:
        """One optimisation step on this rank's `batch`, a share of `global_rows` (all ranks';
        default: an even split); returns the detached loss terms (still on the device)."""
        batch = batch.to(self.device, non_blocking=True)
        with autocast(self.device, self.config.precision):
            terms = self.forward(batch)
            loss = terms["loss"]
            if self.config.embedding_l2:
                penalty = self._embedding_penalty(batch)
                if penalty is not None:
                    loss = loss + self.config.embedding_l2 * penalty
        if self.group:
            # local rows * world / global rows: DDP averages the ranks' gradients, and a global
            # batch that does not split evenly would otherwise weigh its rows unequally. Every
            # rank knows the global size: no collective needed.
            world = self.group.world
            loss = loss * (len(batch) * world / (global_rows or len(batch) * world))
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            for optimizer in self.optimizers:
                self.scaler.unscale_(optimizer)
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.dense_params, self.config.grad_clip)
        for optimizer in self.optimizers:
            if self.scaler is None:
                optimizer.step()
            elif isinstance(optimizer, torch.optim.SparseAdam):
                sparse_step_unless_non_finite(optimizer)
            else:
                self.scaler.step(optimizer)
        if self.scaler is not None:
            self.scaler.update()
        return {k: v.detach().float() for k, v in terms.items()}

    # --- resume state ------------------------------------------------------------------------
    def _rng_state(self) -> list[torch.Tensor]:
        """This process's RNG states (CPU, then every CUDA device's)."""
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return [torch.get_rng_state(), *cuda]

    def learner_state(self) -> dict[str, Any]:
        """What persists across fits of this trainer: the trained state, optimizers, plateau
        schedulers, gradient scaler and the RNG states of every rank (collective under DDP:
        every rank must call it). Follow commits it after each partition."""
        rng = [self._rng_state()]
        if self.group:
            rng = distributed.all_gather(rng[0])
        return {"strategy": self.strategy.trained_state(),
                "optimizers": [o.state_dict() for o in self.optimizers],
                "plateau": [s.state_dict() for s in self.plateau],
                "scaler": self.scaler.state_dict() if self.scaler else None, "rng": rng}

    def load_learner_state(self, state: dict[str, Any]) -> None:
        """Restore `learner_state()` (loaded on the CPU: it moves to this trainer's device)."""
        self.strategy.load_trained_state(state["strategy"])
        for optimizer, saved in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
        for scheduler, saved in zip(self.plateau, state["plateau"], strict=True):
            scheduler.load_state_dict(saved)
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        # a group larger than the one that saved it: the extra ranks take saved ranks' states
        saved = state["rng"]
        rng = saved[(self.group.rank if self.group else 0) % len(saved)]
        torch.set_rng_state(rng[0])
        if len(rng) > 1 and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng[1:])

    def state_dict(self, at: _Progress, result: FitResult) -> dict[str, Any]:
        """Everything a resumed fit needs to continue exactly from `at` (collective under DDP:
        every rank must call it)."""
        progress_state = dict(vars(at))
        progress_state["running"] = {k: float(v) for k, v in at.running.items()}
        return {"progress": progress_state, "history": result.history, "best": result.best,
                "stopped_early": result.stopped_early, "best_state": self._best_state,
                **self.learner_state()}

    def _restore(self, state: dict[str, Any], result: FitResult) -> _Progress:
        self.load_learner_state(state)
        self._best_state = state["best_state"]
        result.history, result.best = state["history"], state["best"]
        result.stopped_early = state["stopped_early"]
        return _Progress(**state["progress"])

    # --- fitting ------------------------------------------------------------------------------
    def fit(self, train: Loader, valid: ColumnData | None, resume: dict[str, Any] | None = None,
            checkpoint: Checkpoint | None = None,
            on_evaluate: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
        """Train; evaluate every `eval_every_steps` and at each epoch's end; restore the best.

        `resume` is a state that `checkpoint` received from an earlier, interrupted fit of the
        same strategy, config and data: the fit continues from there. `on_evaluate` receives
        each evaluation's record (the same on every rank) after its checkpoint; an exception it
        raises ends the fit (a pruner stopping a trial)."""
        c = self.config
        result = FitResult()
        self._best_state: dict | None = None
        at = self._restore(resume, result) if resume is not None else _Progress()
        if resume is not None:
            logger.info("resuming at epoch %d, step %d", at.epoch, at.step)
        started = time.perf_counter() - at.seconds
        batches_per_epoch = len(train)
        total_steps = c.max_steps or c.epochs * batches_per_epoch

        def save() -> None:
            if checkpoint is None:
                return
            at.seconds = time.perf_counter() - started
            state = self.state_dict(at, result)
            if self.group is None or self.group.is_main:  # one file, written by rank 0
                checkpoint(state)

        def evaluate() -> None:
            record = self._record(at, started, valid)
            at.stop = self._update(record, result, at) or at.stop
            at.evaluated_at = at.step
            save()
            if on_evaluate is not None:
                on_evaluate(record)

        with progress(total_steps, "train", "step", c.progress, initial=at.step) as bar:
            while at.epoch < c.epochs and not at.stop:
                self.strategy.train()
                for batch in train.epoch_batches(at.epoch, skip=at.batch):
                    n = len(batch)  # the global batch: every rank counts the same rows
                    if self.group:
                        batch = batch.rows(*distributed.shard_bounds(n, self.group.rank,
                                                                     self.group.world))
                    self.strategy.start_step(at.step, at.epoch)
                    terms = self.train_step(batch, n)
                    for key, value in terms.items():
                        at.running[key] = at.running.get(key, 0.0) + value * len(batch)
                    at.seen += n
                    at.samples += n
                    at.step += 1
                    at.batch += 1
                    bar.update(1)
                    if at.step % c.log_every_steps == 0:
                        rate = at.samples / (time.perf_counter() - started)
                        bar.set_postfix(loss=f"{self._mean(at)['loss']:.4f}",
                                        samples_s=f"{rate:,.0f}")
                    at.stop = c.max_steps is not None and at.step >= c.max_steps
                    if c.eval_every_steps and at.step % c.eval_every_steps == 0:
                        evaluate()
                        self.strategy.train()
                    elif c.checkpoint_every_steps and at.step % c.checkpoint_every_steps == 0:
                        save()
                    if at.stop:
                        break
                if at.evaluated_at != at.step:
                    evaluate()
                if not at.stop:
                    at.epoch, at.batch, at.running, at.seen = at.epoch + 1, 0, {}, 0
                    at.evaluated_at = -1
        if self._best_state is not None:
            self.strategy.load_trained_state(self._best_state)  # the best evaluation's state
        result.steps = at.step
        result.train_seconds = time.perf_counter() - started
        result.samples_per_second = at.samples / max(result.train_seconds, 1e-9)
        return result

    def _update(self, record: dict, result: FitResult, at: _Progress) -> bool:
        """Track the best state and the plateau; True when early stopping says stop."""
        result.history.append(record)
        early_stop = self.config.early_stop
        score = self._score(record)
        if score is None or early_stop is None:  # nothing monitored: keep the latest state
            self._best_state, result.best = self.strategy.trained_state(), record
            return False
        if math.isfinite(score) and score > at.best_score + early_stop.min_delta:
            at.best_score, at.bad_evals = score, 0
            self._best_state, result.best = self.strategy.trained_state(), record
        else:
            at.bad_evals += 1
        if math.isfinite(score):
            for scheduler in self.plateau:
                scheduler.step(score)
        # Keras semantics: stop at the `patience`-th evaluation in a row without improvement
        # (0 acts as 1: stop at the first).
        result.stopped_early = at.bad_evals >= max(early_stop.patience, 1)
        return result.stopped_early

    def _mean(self, at: _Progress) -> dict[str, float]:
        """This epoch's mean loss terms so far, over every rank's rows (waits for the device)."""
        names = sorted(at.running)
        if not names:
            return {}
        sums = torch.stack([torch.as_tensor(at.running[k], dtype=torch.float32,
                                            device=self.device) for k in names])
        if self.group:
            torch.distributed.all_reduce(sums)
        return {k: float(v) / max(at.seen, 1) for k, v in zip(names, sums.tolist(), strict=True)}

    def _record(self, at: _Progress, started: float, valid: ColumnData | None) -> dict:
        elapsed = time.perf_counter() - started
        record = {"epoch": at.epoch, "step": at.step, "samples": at.samples,
                  "samples_per_second": at.samples / max(elapsed, 1e-9),
                  "lr": self.optimizers[0].param_groups[0]["lr"], "train": self._mean(at)}
        if valid is not None:
            record["valid"] = self.evaluate(valid)
        record.update(self.strategy.epoch_logs())
        logger.info(_describe(record))
        return record

    def _score(self, record: dict) -> float | None:
        monitor = self.config.early_stop
        if monitor is None or "valid" not in record:
            return None
        values = record["valid"]
        weights = monitor.monitor if isinstance(monitor.monitor, dict) else {monitor.monitor: 1.0}
        missing = [k for k in weights if k not in values]
        if missing:
            raise CtrDistillError(f"early_stop.monitor: unknown quantity {missing[0]!r} "
                                  f"(available: {', '.join(sorted(values))})")
        score = sum(w * values[k] for k, w in weights.items())
        return score if monitor.resolved_mode() == "max" else -score

    def predict(self, data: ColumnData) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Named logits for every row of `data`, and the mean label-free held-out terms. Under
        DDP every rank scores its shard and every rank gets the whole result."""
        self.strategy.eval()

        def outputs(batch: Batch):
            with autocast(self.device, self.config.precision):
                return self.strategy.predict(batch), self.strategy.held_out_terms(batch)

        if self.group is None:
            return collect(outputs, data, self.config.eval_batch_size, self.device)
        start, end = distributed.shard_bounds(len(data), self.group.rank, self.group.world)
        shard = data.subset(torch.arange(start, end))
        values, means = collect(outputs, shard, self.config.eval_batch_size, self.device)
        parts = distributed.all_gather((values, means, len(shard)))
        names = parts[0][0].keys()
        joined = {k: np.concatenate([p[0][k] for p in parts if p[2]]) for k in names}
        rows = sum(p[2] for p in parts)
        held_out = {k: sum(p[1][k] * p[2] for p in parts if p[2]) / rows for k in parts[0][1]}
        return joined, held_out

    def evaluate(self, data: ColumnData) -> dict[str, float]:
        outputs, held_out = self.predict(data)
        return evaluate_outputs(data, outputs) | held_out


def evaluate_outputs(data: ColumnData, outputs: dict[str, np.ndarray]) -> dict[str, float]:
    labels = data.label.numpy()
    groups = data.optional["group"].numpy() if "group" in data.optional else None
    p_true = data.optional["p_true"].numpy() if "p_true" in data.optional else None
    per_output = {name: evaluate_logits(labels, logits, groups, p_true)
                  for name, logits in outputs.items()}
    return flatten_metrics(per_output)


def _describe(record: dict) -> str:
    parts = [f"epoch {record['epoch']} step {record['step']}",
             f"{record['samples_per_second']:,.0f} samples/s",
             f"train loss {record['train'].get('loss', float('nan')):.5f}"]
    valid = record.get("valid", {})
    for key in ("auc", "logloss", "distill"):
        if key in valid:
            parts.append(f"valid {key} {valid[key]:.5f}")
    return " | ".join(parts)
