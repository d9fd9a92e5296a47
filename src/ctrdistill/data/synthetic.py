"""A Criteo-like synthetic CTR benchmark whose hidden click model is known.

Every row stores its true click probability `p_true`, so evaluation can report the Bayes-optimal
AUC and logloss of each split and how far a model is from them. The hidden logit has first-order
terms per categorical id and numeric field, low-rank pairwise interactions between all
categorical fields, and a few third-order crosses. With `drift > 0` the hidden parameters rotate
slowly from day to day (towards an independent second parameter set), so a model trained on early
days goes stale. Generation is chunked and seeded per chunk: any number of rows, bounded memory,
the same rows for the same seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import Field

from ctrdistill.config import StrictConfig
from ctrdistill.data.schema import FieldSpec, Schema
from ctrdistill.progress import progress
from ctrdistill.storage import atomic_directory


class SynthConfig(StrictConfig):
    rows: int = Field(1_000_000, ge=1, description="rows to generate")
    days: int = Field(1, ge=1, description="days the rows are spread over evenly (a day column)")
    drift: float = Field(0.0, ge=0, description="rotation of the hidden model per day (radians)")
    seed: int = Field(2026, description="seed of the hidden click model and of the rows")
    numeric_fields: int = Field(13, ge=0, description="numeric fields I1.. (Criteo has 13)")
    categorical_fields: int = Field(26, ge=1, description="categorical fields C1.. (Criteo has 26)")
    min_vocab: int = Field(10, ge=2, description="vocabulary size of the smallest field (sizes "
                           "are spaced geometrically up to max_vocab)")
    max_vocab: int = Field(1_000_000, ge=2, description="vocabulary size of the largest field")
    zipf_exponent: float = Field(1.05, gt=0, description="ids are drawn with probability "
                                 "proportional to 1 / rank^zipf_exponent")
    rank: int = Field(4, ge=1, description="rank of the pairwise interactions")
    crosses: int = Field(4, ge=0, description="number of third-order crosses")
    positive_rate: float = Field(0.22, gt=0, lt=1, description="target click rate (the hidden "
                                 "model's bias is set to reach it)")
    missing_rate: float = Field(0.05, ge=0, lt=1, description="fraction of values left missing")
    chunk_rows: int = Field(250_000, ge=1, description="rows generated and written at a time "
                            "(bounds memory)")


def synthetic_schema(config: SynthConfig, bucketize: bool = True) -> Schema:
    """The schema `prepare` uses for synthetic raw data (Criteo-x4 style numerics by default)."""
    transform = "bucketize" if bucketize else "log1p"
    fields = [FieldSpec(name=f"I{i + 1}", kind="numeric", transform=transform)
              for i in range(config.numeric_fields)]
    fields += [FieldSpec(name=f"C{i + 1}") for i in range(config.categorical_fields)]
    return Schema(label="label", fields=fields, day="day", passthrough=["p_true"])


@dataclass
class _Params:
    """One set of hidden parameters: per-id weights and factors, numeric slopes."""

    first: list[np.ndarray]
    factors: list[np.ndarray]
    cross: list[np.ndarray]
    numeric_slope: np.ndarray
    numeric_curve: np.ndarray


class HiddenClickModel:
    def __init__(self, config: SynthConfig) -> None:
        self.config = config
        rng = np.random.default_rng([config.seed, 0])
        n_cat = config.categorical_fields
        self.vocab_sizes = np.geomspace(config.min_vocab, config.max_vocab, n_cat).astype(
            np.int64).tolist()
        self.field_scale = rng.uniform(0.2, 1.0, n_cat)
        # Frequency rank -> id: a fixed permutation, so ids carry no frequency order.
        self.permutations = [rng.permutation(v) for v in self.vocab_sizes]
        self.cdf = []
        for v in self.vocab_sizes:
            weights = 1.0 / np.arange(1, v + 1) ** config.zipf_exponent
            self.cdf.append(np.cumsum(weights) / weights.sum())
        self.numeric_mu = rng.uniform(0.0, 4.0, config.numeric_fields)
        self.numeric_sigma = rng.uniform(0.5, 1.5, config.numeric_fields)
        self.cross_fields = [rng.choice(n_cat, 3, replace=False) for _ in range(config.crosses)]
        self.params = [self._draw(rng), self._draw(rng)]
        self.bias = 0.0
        self.bias = self._calibrated_bias()

    def _draw(self, rng: np.random.Generator) -> _Params:
        c = self.config
        pair_scale = 0.9 / np.sqrt(c.rank * max(c.categorical_fields - 1, 1))
        return _Params(
            first=[rng.normal(0, 0.29 * s, v) for v, s in zip(self.vocab_sizes, self.field_scale,
                                                               strict=True)],
            factors=[rng.normal(0, pair_scale * np.sqrt(s) * 1.85, (v, c.rank))
                     for v, s in zip(self.vocab_sizes, self.field_scale, strict=True)],
            cross=[rng.normal(0, 1.0, v) for v in self.vocab_sizes],
            numeric_slope=rng.normal(0, 0.16, c.numeric_fields),
            numeric_curve=rng.normal(0, 0.22, c.numeric_fields),
        )

    def _calibrated_bias(self) -> float:
        """Bias that gives the configured positive rate on day 0 (bisection on a sample)."""
        ranks, numerics = self._draw_inputs(np.random.default_rng([self.config.seed, 1]), 50_000)
        logit = self.logit(ranks, numerics, day=0)
        lo, hi = -15.0, 15.0
        for _ in range(60):
            mid = (lo + hi) / 2
            rate = np.mean(1 / (1 + np.exp(-(logit + mid))))
            lo, hi = (mid, hi) if rate < self.config.positive_rate else (lo, mid)
        return (lo + hi) / 2

    def _draw_inputs(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.empty((n, len(self.vocab_sizes)), dtype=np.int64)
        for j, cdf in enumerate(self.cdf):
            rank = np.minimum(np.searchsorted(cdf, rng.random(n)), len(cdf) - 1)
            ids[:, j] = self.permutations[j][rank]
        numerics = np.exp(rng.normal(self.numeric_mu, self.numeric_sigma,
                                     (n, len(self.numeric_mu))))
        return ids, np.floor(numerics) - 1  # integer counts from -1, like Criteo's I-fields

    def _mix(self, day: int) -> tuple[float, float]:
        angle = self.config.drift * day
        return float(np.cos(angle)), float(np.sin(angle))

    def logit(self, ids: np.ndarray, numerics: np.ndarray, day: int) -> np.ndarray:
        a, b = self._mix(day)
        logit = np.full(len(ids), self.bias)
        for weight, params in ((a, self.params[0]), (b, self.params[1])):
            if weight == 0:
                continue
            part = np.zeros(len(ids))
            factor_sum = np.zeros((len(ids), self.config.rank))
            factor_sq = np.zeros(len(ids))
            for j in range(ids.shape[1]):
                part += params.first[j][ids[:, j]]
                f = params.factors[j][ids[:, j]]
                factor_sum += f
                factor_sq += (f * f).sum(1)
            part += 0.5 * ((factor_sum * factor_sum).sum(1) - factor_sq)
            for fields in self.cross_fields:
                part += 0.36 * np.prod([params.cross[j][ids[:, j]] for j in fields], axis=0)
            if numerics.shape[1]:
                z = (np.log1p(np.maximum(numerics, 0)) - self.numeric_mu) / self.numeric_sigma
                part += z @ params.numeric_slope + np.tanh(z) ** 2 @ params.numeric_curve
            logit += weight * part
        return logit


def generate_chunks(config: SynthConfig) -> Iterator[pl.DataFrame]:
    """Raw synthetic rows in chunks: label, I1.., C1.. (strings), day, p_true."""
    model = HiddenClickModel(config)
    rows_per_day = -(-config.rows // config.days)
    start = 0
    chunk_index = 0
    while start < config.rows:
        day = start // rows_per_day
        n = min(config.chunk_rows, config.rows - start, (day + 1) * rows_per_day - start)
        rng = np.random.default_rng([config.seed, 2, chunk_index])
        ids, numerics = model._draw_inputs(rng, n)
        p_true = 1 / (1 + np.exp(-model.logit(ids, numerics, day)))
        label = (rng.random(n) < p_true).astype(np.int8)
        columns: dict[str, pl.Series] = {"label": pl.Series("label", label)}
        for j in range(numerics.shape[1]):
            values = pl.Series(f"I{j + 1}", numerics[:, j].astype(np.int64))
            missing = pl.Series(rng.random(n) < config.missing_rate)
            columns[f"I{j + 1}"] = values.set(missing, None) if missing.any() else values
        for j in range(ids.shape[1]):
            values = pl.Series(f"C{j + 1}", ids[:, j]).cast(pl.String)
            missing = pl.Series(rng.random(n) < config.missing_rate)
            columns[f"C{j + 1}"] = values.set(missing, None) if missing.any() else values
        columns["day"] = pl.Series("day", np.full(n, day, dtype=np.int32))
        columns["p_true"] = pl.Series("p_true", p_true.astype(np.float64))
        yield pl.DataFrame(columns)
        start += n
        chunk_index += 1


def write_synthetic(config: SynthConfig, out: Path, show_progress: bool = True) -> Path:
    """Write raw synthetic Parquet parts into `out` atomically, with the generator config."""
    with atomic_directory(out) as tmp, progress(config.rows, "synth", "rows",
                                                show_progress) as bar:
        for index, chunk in enumerate(generate_chunks(config)):
            chunk.write_parquet(tmp / f"part-{index:05d}.parquet")
            bar.update(len(chunk))
        (tmp / "synth.json").write_text(config.model_dump_json(indent=2))
    return out
