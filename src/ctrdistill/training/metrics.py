"""Evaluation metrics: AUC, logloss, gAUC by group, calibration, and on synthetic data the
Bayes-optimal values from the true click probability with the gap to them."""

from __future__ import annotations

import numpy as np
import polars as pl

EPS = 1e-7


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    if labels.min() == labels.max():
        return float("nan")
    from sklearn.metrics import roc_auc_score  # here: scoring without metrics needs no sklearn

    return float(roc_auc_score(labels, scores))


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import log_loss

    return float(log_loss(labels, np.clip(probs, EPS, 1 - EPS), labels=[0, 1]))


def group_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    """Impression-weighted mean of per-group AUCs over groups with both classes (vectorised
    Mann-Whitney: rank sums of positives within each group)."""
    frame = pl.DataFrame({"g": groups, "y": labels.astype(np.int8), "s": scores})
    frame = frame.with_columns(pl.col("s").rank("average").over("g").alias("r"))
    per_group = frame.group_by("g").agg(
        pl.len().alias("n"), pl.col("y").sum().alias("pos"),
        pl.col("r").filter(pl.col("y") == 1).sum().alias("rank_sum"))
    per_group = per_group.filter((pl.col("pos") > 0) & (pl.col("pos") < pl.col("n")))
    if not len(per_group):
        return float("nan")
    neg = per_group["n"] - per_group["pos"]
    pos = per_group["pos"]
    aucs = (per_group["rank_sum"] - pos * (pos + 1) / 2) / (pos * neg)
    weights = per_group["n"].cast(pl.Float64)
    return float((aucs * weights).sum() / weights.sum())


def evaluate_logits(
    labels: np.ndarray,
    logits: np.ndarray,
    groups: np.ndarray | None = None,
    p_true: np.ndarray | None = None,
) -> dict[str, float]:
    probs = sigmoid(logits.astype(np.float64))
    observed = float(labels.mean())
    result = {
        "auc": auc(labels, probs),
        "logloss": logloss(labels, probs),
        "calibration": float(probs.mean() / observed) if observed > 0 else float("nan"),
    }
    if groups is not None:
        result["gauc"] = group_auc(labels, probs, groups)
    if p_true is not None:
        result.update(bayes_gap(labels, result, p_true))
    return result


def bayes_gap(labels: np.ndarray, result: dict[str, float], p_true: np.ndarray) -> dict[str, float]:
    bayes_auc = auc(labels, p_true)
    bayes_logloss = logloss(labels, p_true)
    return {"bayes_auc": bayes_auc, "bayes_logloss": bayes_logloss,
            "auc_gap": bayes_auc - result["auc"], "logloss_gap": result["logloss"] - bayes_logloss}
