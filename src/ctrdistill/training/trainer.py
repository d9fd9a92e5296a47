"""The one trainer. It knows nothing of KD, DML or KDEF: a strategy supplies the loss terms, the
outputs to evaluate and the label-free held-out terms; the trainer runs optimisation, evaluation,
early stopping, learning-rate plateaus and keeps the best state. No globals, so a DDP wrapper
can drive it later."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ctrdistill.data.dataset import Batch, ColumnData
from ctrdistill.errors import CtrDistillError
from ctrdistill.models.layers.embedding import FeatureEmbedding
from ctrdistill.progress import progress
from ctrdistill.strategies.base import SERVED, Strategy
from ctrdistill.training.config import TrainConfig
from ctrdistill.training.memory import keep_freed_memory, new_working_set
from ctrdistill.training.metrics import evaluate_logits


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    stopped_early: bool = False
    steps: int = 0
    train_seconds: float = 0.0
    samples_per_second: float = 0.0


def flatten_metrics(per_output: dict[str, dict[str, float]]) -> dict[str, float]:
    """{'served': {'auc': ..}, 'peer0': {'auc': ..}} -> {'auc': .., 'peer0.auc': ..}."""
    flat = {}
    for output, metrics in per_output.items():
        for name, value in metrics.items():
            flat[name if output == SERVED else f"{output}.{name}"] = value
    return flat


class Trainer:
    def __init__(self, strategy: Strategy, config: TrainConfig,
                 log: Callable[[str], None] | None = None) -> None:
        self.strategy = strategy
        self.config = config
        self.log = log or (lambda message: None)
        if config.threads:
            torch.set_num_threads(config.threads)
        keep_freed_memory()
        self.optimizers = self._optimizers()
        self.plateau = None
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

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        sparse_ids = {id(m.weight) for m in self.strategy.modules()
                      if isinstance(m, nn.Embedding) and m.sparse}
        params = [p for p in self.strategy.parameters() if p.requires_grad]
        sparse = [p for p in params if id(p) in sparse_ids]
        dense = [p for p in params if id(p) not in sparse_ids]
        c = self.config
        optimizers: list[torch.optim.Optimizer] = []
        if dense:
            kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                     "sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad}
            # Fused kernels: one pass over all dense parameters instead of one op per tensor.
            extra = {"fused": True} if c.optimizer in ("adam", "adamw", "sgd", "adagrad") else {}
            optimizers.append(kinds[c.optimizer](dense, lr=c.lr, weight_decay=c.weight_decay,
                                                 **extra))
        if sparse:
            optimizers.append(torch.optim.SparseAdam(sparse, lr=c.embedding_lr or c.lr))
        self.dense_params = dense
        return optimizers

    def _embedding_penalty(self) -> torch.Tensor | None:
        norms = [m.batch_sq_norm for m in self.strategy.modules()
                 if isinstance(m, FeatureEmbedding) and m.batch_sq_norm is not None
                 and m.table.weight.requires_grad]
        return torch.stack(norms).sum() if norms else None

    def train_step(self, batch: Batch) -> dict[str, float]:
        terms = self.strategy.loss(batch)
        loss = terms["loss"]
        if self.config.embedding_l2:
            penalty = self._embedding_penalty()
            if penalty is not None:
                loss = loss + self.config.embedding_l2 * penalty
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.dense_params, self.config.grad_clip)
        for optimizer in self.optimizers:
            optimizer.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def fit(self, train: Iterable[Batch], valid: ColumnData | None) -> FitResult:
        """Train; evaluate every `eval_every_steps` and at each epoch's end; restore the best."""
        c = self.config
        result = FitResult()
        self._best_score = -math.inf
        self._best_state: dict | None = None
        self._bad_evals = 0
        step = samples = 0
        started = time.perf_counter()
        total_steps = c.max_steps or c.epochs * len(train)  # type: ignore[arg-type]
        stop = False
        with progress(total_steps, "train", "step", c.progress) as bar:
            for epoch in range(c.epochs):
                self.strategy.train()
                running: dict[str, float] = {}
                seen = 0
                evaluated_at = -1
                for batch in train:
                    self.strategy.start_step(step, epoch)
                    terms = self.train_step(batch)
                    n = len(batch["label"])
                    for key, value in terms.items():
                        running[key] = running.get(key, 0.0) + value * n
                    seen += n
                    samples += n
                    step += 1
                    bar.update(1)
                    if step % 20 == 0:
                        rate = samples / (time.perf_counter() - started)
                        bar.set_postfix(loss=f"{running['loss'] / seen:.4f}",
                                        samples_s=f"{rate:,.0f}")
                    stop = c.max_steps is not None and step >= c.max_steps
                    if c.eval_every_steps and step % c.eval_every_steps == 0:
                        record = self._record(epoch, step, running, seen, samples, started, valid)
                        stop = self._update(record, result) or stop
                        evaluated_at = step
                        self.strategy.train()
                    if stop:
                        break
                if evaluated_at != step:
                    record = self._record(epoch, step, running, seen, samples, started, valid)
                    stop = self._update(record, result) or stop
                if stop:
                    break
        if self._best_state is not None:
            self.strategy.load_trained_state(self._best_state)  # the best evaluation's state
        result.steps = step
        result.train_seconds = time.perf_counter() - started
        result.samples_per_second = samples / max(result.train_seconds, 1e-9)
        return result

    def _update(self, record: dict, result: FitResult) -> bool:
        """Track the best state and the plateau; True when early stopping says stop."""
        result.history.append(record)
        early_stop = self.config.early_stop
        score = self._score(record)
        if score is None or early_stop is None:  # nothing monitored: keep the latest state
            self._best_state, result.best = self.strategy.trained_state(), record
            return False
        if math.isfinite(score) and score > self._best_score + early_stop.min_delta:
            self._best_score, self._bad_evals = score, 0
            self._best_state, result.best = self.strategy.trained_state(), record
        else:
            self._bad_evals += 1
        if self.plateau is not None and math.isfinite(score):
            for scheduler in self.plateau:
                scheduler.step(score)
        # Keras semantics: stop at the `patience`-th evaluation in a row without improvement
        # (0 acts as 1: stop at the first).
        result.stopped_early = self._bad_evals >= max(early_stop.patience, 1)
        return result.stopped_early

    def _record(self, epoch, step, running, seen, samples, started, valid) -> dict:
        elapsed = time.perf_counter() - started
        record = {"epoch": epoch, "step": step, "samples": samples,
                  "samples_per_second": samples / max(elapsed, 1e-9),
                  "lr": self.optimizers[0].param_groups[0]["lr"],
                  "train": {k: v / max(seen, 1) for k, v in running.items()}}
        if valid is not None:
            record["valid"] = self.evaluate(valid)
        record.update(self.strategy.epoch_logs())
        self.log(_describe(record))
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

    @torch.no_grad()
    @new_working_set()
    def predict(self, data: ColumnData) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Named logits for every row of `data`, and the mean label-free held-out terms."""
        self.strategy.eval()
        outputs: dict[str, list[np.ndarray]] = {}
        held_out: dict[str, float] = {}
        size = self.config.eval_batch_size
        for start in range(0, len(data), size):
            batch = data.take(slice(start, start + size))
            for name, logits in self.strategy.predict(batch).items():
                outputs.setdefault(name, []).append(logits.float().numpy())
            n = len(batch["label"])
            for name, value in self.strategy.held_out_terms(batch).items():
                held_out[name] = held_out.get(name, 0.0) + float(value) * n
        return ({k: np.concatenate(v) for k, v in outputs.items()},
                {k: v / len(data) for k, v in held_out.items()})

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
