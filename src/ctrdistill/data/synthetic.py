"""A Criteo-like synthetic CTR benchmark whose hidden click model is known.

Every row stores its true click probability `p_true`, so evaluation can report the Bayes-optimal
AUC and logloss of each split and how far a model is from them. The hidden logit has first-order
terms per categorical id and numeric field, low-rank pairwise interactions between categorical
fields, and a few third-order crosses. With `drift > 0` the hidden parameters rotate slowly from
day to day (towards an independent second parameter set), so a model trained on early days goes
stale. Generation is chunked and seeded per chunk: any number of rows, bounded memory, the same
rows for the same seed.

Two presets set the knobs' defaults (any knob given explicitly wins):
- `criteo` (the default): calibrated so that LR, FM, the DNN and the interaction models are
  ordered and spaced like on BARS Criteo_x4_001 at 2M rows, one epoch, batch 1024
  (BENCHMARKS.md §10.1). Values are masked as missing
  before the click probability is computed, and a missing value has its own effect, so p_true
  is a function of the visible features and its AUC is the true bound.
- `legacy`: the generator every table before 2026-12-02 used, kept so they stay reproducible.
  Its p_true is computed before masking, so its Bayes AUC is an oracle no model can reach.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from ctrdistill.config import StrictConfig
from ctrdistill.data.schema import FieldSpec, Schema
from ctrdistill.progress import progress
from ctrdistill.storage import atomic_directory

Preset = Literal["criteo", "legacy"]

# The knobs each preset sets unless the config gives them.
PRESETS: dict[str, dict[str, Any]] = {
    "criteo": {"min_vocab": 4, "max_vocab": 200_000, "zipf_exponent": 1.1, "rank": 4,
               "crosses": 6, "positive_rate": 0.25, "missing_rate": 0.05, "first_scale": 0.6,
               "pair_scale": 1.9, "cross_scale": 0.37, "cross_pool": 13,
               "exact_bound": True},
    "legacy": {"min_vocab": 10, "max_vocab": 1_000_000, "zipf_exponent": 1.05, "rank": 4,
               "crosses": 4, "positive_rate": 0.22, "missing_rate": 0.05, "first_scale": 0.29,
               "pair_scale": 1.665, "cross_scale": 0.36, "cross_pool": None,
               "exact_bound": False},
}


def _knob(**kwargs: Any) -> Any:
    """A generator knob whose default the preset sets (shown per preset in docs/config.md)."""
    return Field(json_schema_extra={"preset_knob": True}, **kwargs)


class SynthConfig(StrictConfig):
    preset: Preset = Field("criteo", description="defaults of the knobs below: `criteo` "
                           "(calibrated to Criteo's model gaps, exact Bayes bound) or `legacy` "
                           "(the generator of the tables before 2026-12-02)")
    rows: int = Field(1_000_000, ge=1, description="rows to generate")
    days: int = Field(1, ge=1, description="days the rows are spread over evenly (a day column)")
    drift: float = Field(0.0, ge=0, description="rotation of the hidden model per day (radians)")
    seed: int = Field(2026, description="seed of the hidden click model and of the rows")
    numeric_fields: int = Field(13, ge=0, description="numeric fields I1.. (Criteo has 13)")
    categorical_fields: int = Field(26, ge=1, description="categorical fields C1.. (Criteo has 26)")
    min_vocab: int = _knob(description="vocabulary size of the smallest field (sizes are spaced "
                           "geometrically up to max_vocab)")
    max_vocab: int = _knob(ge=2, description="vocabulary size of the largest field")
    zipf_exponent: float = _knob(gt=0, description="ids are drawn with probability proportional "
                                 "to 1 / rank^zipf_exponent")
    rank: int = _knob(ge=1, description="rank of the pairwise interactions")
    crosses: int = _knob(ge=0, description="number of third-order crosses")
    positive_rate: float = _knob(gt=0, lt=1, description="target click rate (the hidden model's "
                                 "bias is set to reach it)")
    missing_rate: float = _knob(ge=0, lt=1, description="fraction of values left missing")
    first_scale: float = _knob(ge=0, description="spread of the first-order id weights")
    pair_scale: float = _knob(ge=0, description="spread of the pairwise interaction factors")
    cross_scale: float = _knob(ge=0, description="weight of the third-order crosses")
    cross_pool: int | None = _knob(ge=3, description="crosses join fields among this many of the "
                                   "smallest vocabularies (null or more than there are: any "
                                   "field)")
    exact_bound: bool = _knob(description="mask values before computing p_true, a missing value "
                              "having its own effect, so the Bayes AUC is exact for the visible "
                              "features")
    chunk_rows: int = Field(250_000, ge=1, description="rows generated and written at a time "
                            "(bounds memory)")
    output: Path = Field(Path("data/raw"), description="directory for the raw Parquet files "
                         "(where `synth` writes; not part of the generator, nor of synth.json)")

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            preset = data.get("preset", "criteo")
            if preset in PRESETS:
                data = PRESETS[preset] | data
        return data

    @model_validator(mode="after")
    def _vocabularies_ordered(self) -> SynthConfig:
        if not 2 <= self.min_vocab <= self.max_vocab:
            raise ValueError(f"min_vocab ({self.min_vocab}) must be between 2 and max_vocab "
                             f"({self.max_vocab})")
        if self.crosses and self.categorical_fields < 3:
            raise ValueError(f"crosses join 3 fields: categorical_fields "
                             f"({self.categorical_fields}) must be at least 3, or crosses 0")
        return self


def synthetic_schema(config: SynthConfig, bucketize: bool = True) -> Schema:
    """The schema `prepare` uses for synthetic raw data (Criteo-x4 style numerics by default)."""
    transform = "bucketize" if bucketize else "log1p"
    fields = [FieldSpec(name=f"I{i + 1}", kind="numeric", transform=transform)
              for i in range(config.numeric_fields)]
    fields += [FieldSpec(name=f"C{i + 1}") for i in range(config.categorical_fields)]
    return Schema(label="label", fields=fields, day="day", passthrough=["p_true"])


@dataclass
class _Params:
    """One set of hidden parameters: per-id weights and factors, numeric slopes. With an exact
    bound each id table has one more row, the missing value's, and `numeric_missing` holds the
    effect of a missing numeric."""

    first: list[np.ndarray]
    factors: list[np.ndarray]
    cross: list[np.ndarray]
    numeric_slope: np.ndarray
    numeric_curve: np.ndarray
    numeric_missing: np.ndarray


class HiddenClickModel:
    """The hidden click model. Categorical ids are 0..vocab-1; with `exact_bound` the id `vocab`
    stands for a missing value and a NaN numeric for a missing numeric."""

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
        pool = min(config.cross_pool or n_cat, n_cat)  # the smallest vocabularies come first
        self.cross_fields = [rng.choice(pool, 3, replace=False) for _ in range(config.crosses)]
        self.params = [self._draw(rng), self._draw(rng)]
        if config.exact_bound:  # the missing values' effects, from a stream of their own
            missing_rng = np.random.default_rng([config.seed, 3])
            for params in self.params:
                self._add_missing(params, missing_rng)
        self.bias = 0.0
        self.bias = self._calibrated_bias()

    def _factor_spread(self) -> float:
        """Spread of a pairwise factor entry before the field scale: the pairwise term's size
        does not grow with the rank or the number of field pairs."""
        c = self.config
        return c.pair_scale / np.sqrt(c.rank * max(c.categorical_fields - 1, 1))

    def _draw(self, rng: np.random.Generator) -> _Params:
        c = self.config
        pair_scale = self._factor_spread()
        return _Params(
            first=[rng.normal(0, c.first_scale * s, v)
                   for v, s in zip(self.vocab_sizes, self.field_scale, strict=True)],
            factors=[rng.normal(0, pair_scale * np.sqrt(s), (v, c.rank))
                     for v, s in zip(self.vocab_sizes, self.field_scale, strict=True)],
            cross=[rng.normal(0, 1.0, v) for v in self.vocab_sizes],
            numeric_slope=rng.normal(0, 0.16, c.numeric_fields),
            numeric_curve=rng.normal(0, 0.22, c.numeric_fields),
            numeric_missing=np.zeros(c.numeric_fields),
        )

    def _add_missing(self, params: _Params, rng: np.random.Generator) -> None:
        c = self.config
        pair_scale = self._factor_spread()
        for j, s in enumerate(self.field_scale):
            params.first[j] = np.append(params.first[j], rng.normal(0, c.first_scale * s))
            params.factors[j] = np.vstack([params.factors[j],
                                           rng.normal(0, pair_scale * np.sqrt(s), (1, c.rank))])
            params.cross[j] = np.append(params.cross[j], rng.normal(0, 1.0))
        params.numeric_missing = rng.normal(0, 0.3, c.numeric_fields)

    def _calibrated_bias(self) -> float:
        """Bias that gives the configured positive rate on day 0 (bisection on a sample)."""
        rng = np.random.default_rng([self.config.seed, 1])
        ids, numerics = self._draw_inputs(rng, 50_000)
        if self.config.exact_bound:
            ids, numerics = self._mask(rng, ids, numerics)
        logit = self.logit(ids, numerics, day=0)
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

    def _mask(self, rng: np.random.Generator, ids: np.ndarray,
              numerics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs with `missing_rate` of the values missing: NaN numerics, id `vocab`."""
        rate = self.config.missing_rate
        numerics = np.where(rng.random(numerics.shape) < rate, np.nan, numerics)
        ids = np.where(rng.random(ids.shape) < rate, np.asarray(self.vocab_sizes), ids)
        return ids, numerics

    def _mix(self, day: int) -> tuple[float, float]:
        angle = self.config.drift * day
        return float(np.cos(angle)), float(np.sin(angle))

    def logit(self, ids: np.ndarray, numerics: np.ndarray, day: int) -> np.ndarray:
        a, b = self._mix(day)
        logit = np.full(len(ids), self.bias)
        missing = np.isnan(numerics)
        z = (np.log1p(np.maximum(np.nan_to_num(numerics), 0)) - self.numeric_mu) \
            / self.numeric_sigma
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
                part += self.config.cross_scale * np.prod(
                    [params.cross[j][ids[:, j]] for j in fields], axis=0)
            if numerics.shape[1]:
                numeric = z * params.numeric_slope + np.tanh(z) ** 2 * params.numeric_curve
                part += np.where(missing, params.numeric_missing, numeric).sum(1)
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
        yield (_exact_chunk if config.exact_bound else _legacy_chunk)(model, rng, n, day)
        start += n
        chunk_index += 1


def _frame(label: np.ndarray, numerics: np.ndarray, numeric_missing: np.ndarray,
           ids: np.ndarray, id_missing: np.ndarray, day: int, p_true: np.ndarray) -> pl.DataFrame:
    columns: dict[str, pl.Series] = {"label": pl.Series("label", label.astype(np.int8))}
    for j in range(numerics.shape[1]):
        values = pl.Series(f"I{j + 1}", np.nan_to_num(numerics[:, j]).astype(np.int64))
        missing = pl.Series(numeric_missing[:, j])
        columns[f"I{j + 1}"] = values.set(missing, None) if missing.any() else values
    for j in range(ids.shape[1]):
        values = pl.Series(f"C{j + 1}", ids[:, j]).cast(pl.String)
        missing = pl.Series(id_missing[:, j])
        columns[f"C{j + 1}"] = values.set(missing, None) if missing.any() else values
    columns["day"] = pl.Series("day", np.full(len(label), day, dtype=np.int32))
    columns["p_true"] = pl.Series("p_true", p_true.astype(np.float64))
    return pl.DataFrame(columns)


def _legacy_chunk(model: HiddenClickModel, rng: np.random.Generator, n: int,
                  day: int) -> pl.DataFrame:
    """The legacy order of draws: p_true from the full inputs, then the masks, column by column."""
    ids, numerics = model._draw_inputs(rng, n)
    p_true = 1 / (1 + np.exp(-model.logit(ids, numerics, day)))
    label = rng.random(n) < p_true
    rate = model.config.missing_rate
    numeric_missing = np.stack([rng.random(n) < rate for _ in range(numerics.shape[1])], 1) \
        if numerics.shape[1] else np.zeros((n, 0), dtype=bool)
    id_missing = np.stack([rng.random(n) < rate for _ in range(ids.shape[1])], 1)
    return _frame(label, numerics, numeric_missing, ids, id_missing, day, p_true)


def _exact_chunk(model: HiddenClickModel, rng: np.random.Generator, n: int,
                 day: int) -> pl.DataFrame:
    """Masks first, so p_true is a function of what a model sees."""
    ids, numerics = model._mask(rng, *model._draw_inputs(rng, n))
    p_true = 1 / (1 + np.exp(-model.logit(ids, numerics, day)))
    label = rng.random(n) < p_true
    id_missing = ids == np.asarray(model.vocab_sizes)
    return _frame(label, numerics, np.isnan(numerics), ids, id_missing, day, p_true)


def write_synthetic(config: SynthConfig, out: Path, show_progress: bool = True) -> Path:
    """Write raw synthetic Parquet parts into `out` atomically, with the generator config."""
    with atomic_directory(out) as tmp, progress(config.rows, "synth", "rows",
                                                show_progress) as bar:
        for index, chunk in enumerate(generate_chunks(config)):
            chunk.write_parquet(tmp / f"part-{index:05d}.parquet")
            bar.update(len(chunk))
        (tmp / "synth.json").write_text(config.model_dump_json(indent=2, exclude={"output"}))
    return out
