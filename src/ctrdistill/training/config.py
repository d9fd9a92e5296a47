"""Training hyperparameters (BARS defaults: Adam 1e-3, batch 4096, embedding L2 1e-5, early stop
on validation AUC with patience 2, learning rate x0.1 on plateau)."""

from __future__ import annotations

import difflib
from typing import Literal

from pydantic import Field, model_validator

from ctrdistill.config import StrictConfig

DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:\d+)$"
#: What evaluation reports for each output (`training.metrics.evaluate_logits`): gauc when the
#: data has groups, the last four when it has the true click probability.
METRICS = ("auc", "logloss", "calibration", "gauc", "bayes_auc", "bayes_logloss", "auc_gap",
           "logloss_gap")
DEVICE_HELP = ("auto (a CUDA device when there is one, else the CPU), cpu, cuda or cuda:N; "
               "under torchrun each process takes the GPU of its local rank")


class EarlyStopConfig(StrictConfig):
    monitor: str | dict[str, float] = Field(
        "auc", description="a validation quantity ('auc', 'logloss', 'distill', 'peer0.auc') "
        "or weights of several, e.g. {auc: 1, logloss: -1}")
    mode: Literal["max", "min", "auto"] = Field(
        "auto", description="'max' or 'min'; 'auto': max for auc/gauc and for weighted "
        "monitors, min otherwise")
    patience: int = Field(
        2, ge=0, description="stop at the patience-th evaluation in a row without improvement, "
        "as Keras does (0 acts as 1: stop at the first); the best evaluation's state is kept")
    min_delta: float = Field(
        0.0, ge=0, description="an evaluation improves only if it beats the best by more than "
        "this (also the threshold of lr_plateau)")

    def quantities(self) -> list[str]:
        return list(self.monitor) if isinstance(self.monitor, dict) else [self.monitor]

    def check(self, outputs: list[str], held_out: list[str]) -> None:
        """Refuse a monitored quantity that no evaluation of this run reports: a metric of the
        served model or of one of `outputs` ('peer0.auc'), or a label-free held-out term."""
        known = [*METRICS, *held_out, *(f"{o}.{m}" for o in outputs for m in METRICS)]
        for quantity in self.quantities():
            if quantity not in known:
                close = difflib.get_close_matches(quantity, known, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise ValueError(f"early_stop.monitor: unknown quantity '{quantity}'{hint} "
                                 f"(this run reports: {', '.join(known)})")

    def resolved_mode(self) -> str:
        if self.mode != "auto":
            return self.mode
        if isinstance(self.monitor, dict):
            return "max"
        lowered = self.monitor.split(".")[-1]
        return "max" if lowered in ("auc", "gauc") else "min"


class PlateauConfig(StrictConfig):
    """Reduce the learning rate when early stopping's monitor stops improving."""

    factor: float = Field(0.1, gt=0, lt=1, description="multiplies the learning rate")
    patience: int = Field(
        1, ge=0, description="reduce at the patience-th evaluation in a row without improvement "
        "and start counting again, as Keras does (0 acts as 1); 1 reduces at every one, as "
        "FuxiCTR does")
    min_lr: float = Field(1e-6, ge=0, description="the learning rate never goes below this")


class TrainConfig(StrictConfig):
    epochs: int = Field(10, ge=1, description="passes over the training rows")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps "
                                  "(evaluating there), whatever epochs says")
    batch_size: int = Field(4096, ge=1, description="training rows per step (all ranks "
                            "together under DDP)")
    eval_batch_size: int = Field(16384, ge=1, description="rows per evaluation batch")
    optimizer: Literal["adam", "adamw", "sgd", "adagrad"] = Field(
        "adam", description="optimizer of the dense parameters (and of the embeddings unless "
        "sparse_embedding)")
    lr: float = Field(1e-3, gt=0, description="learning rate")
    weight_decay: float = Field(0.0, ge=0, description="the optimizer's weight decay on the "
                                "dense parameters")
    sparse_embedding: bool = Field(
        False, description="sparse embedding gradients with SparseAdam: only the rows a batch "
        "uses are updated; pays off for tables of millions of rows (see BENCHMARKS.md)")
    embedding_lr: float | None = Field(None, gt=0, description="learning rate of the embedding "
                                       "tables; defaults to lr")
    embedding_l2: float = Field(1e-5, ge=0, description="L2 on the embedding rows a batch uses")
    grad_clip: float | None = Field(
        10.0, gt=0, description="max global norm of the dense parameters' gradients; None: off")
    eval_every_steps: int | None = Field(None, ge=1, description="evaluate (and maybe stop) "
                                         "every this many steps; None: once per epoch")
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="also save the resume state every this many steps (it is "
        "always saved at each evaluation); None: at evaluations only")
    early_stop: EarlyStopConfig | None = Field(
        default_factory=EarlyStopConfig, description="None: train all epochs, keep the last state")
    lr_plateau: PlateauConfig | None = Field(default_factory=PlateauConfig,
                                             description="None: a constant learning rate")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description=DEVICE_HELP)
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="autocast precision of the forward pass (fp16 adds a gradient "
        "scaler); parameters and optimizer state stay fp32")
    log_every_steps: int = Field(20, ge=1, description="how often the progress bar reads the "
                                 "running loss (each read waits for the device)")
    seed: int = Field(2026, description="seed of initialisation, shuffling and dropout")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; default: all cores")
    streaming: bool = Field(False, description="read training shards through a shuffle buffer")
    buffer_rows: int = Field(1_000_000, ge=1, description="with streaming: rows in the shuffle "
                             "buffer")
    progress: bool = Field(True, description="show a progress bar (display only)")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.lr_plateau is not None and self.early_stop is None:
            raise ValueError("lr_plateau needs early_stop's monitor; set early_stop or drop it")
        return self
