"""`prepare`: raw CTR logs -> vocabularies fitted on the training split -> encoded Parquet shards.

Two streaming passes over the raw input, each chunk a Polars frame of bounded size: the first
counts values (training rows only) and fits numeric statistics, the second encodes and writes
shards per split. Memory is bounded by the chunk size plus the vocabularies, never by the file.
Everything is written into a temporary directory that replaces the output only on success.

A numeric value that is NaN, infinite or beyond float32's range (the prepared data is float32;
`1e400` reads as infinite) is missing: it takes the field's `fill`, or the missing token when
bucketised, and stays out of the fitted statistics. Such values are counted per field over the
whole input, logged in one warning and recorded in `prepare_report.json` beside the feature map.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import ConfigDict, Field, field_validator, model_validator

from ctrdistill.config import StrictConfig
from ctrdistill.data.encode import VOCAB_DIR, Encoder, save_state, token_expr, without_non_finite
from ctrdistill.data.recipes import Protocol, Recipe, checked_numbers, get_recipe, option_lines
from ctrdistill.data.schema import (
    FEATURE_MAP_FILE,
    FIRST_ID,
    SPLITS,
    EncodedField,
    FeatureMap,
    FieldSpec,
    Schema,
)
from ctrdistill.data.split_files import detected_split_files, given_split_files
from ctrdistill.errors import CtrDistillError
from ctrdistill.progress import progress
from ctrdistill.storage import atomic_directory

logger = logging.getLogger(__name__)

REPORT_FILE = "prepare_report.json"


class SplitConfig(StrictConfig):
    kind: Literal["random", "day", "files"] | None = Field(
        None, description="random: seeded hashes of the row id; day: by the day column; files: "
        "by the file a row comes from (split.files, else the file names). Default: files when "
        "every data file of a directory input names a split (a word train, valid/validation, "
        "test in its name) and no ratios are given, else random")
    ratios: tuple[float, float, float] | None = Field(
        None, description="train/valid/test fractions; default from the protocol, else 8:1:1. "
        "Files split: the splits without files are drawn from the train files by them")
    files: dict[Literal["train", "valid", "test"], list[str]] | None = Field(
        None, description="files split: each split's file names in the input directory, e.g. "
        "{train: [a.csv], valid: [b.csv], test: [c.csv]} (a split's files are read in the "
        "order listed); data files in no split are left out")
    seed: int = Field(2026, description="seed of the random split's hashes")
    train_days: list[int] | None = Field(
        None, description="day split: the training days, in any order; rows of days in no list "
        "are left out. Default: every day before the first valid/test day, and a later day that "
        "is in no list is an error (it would train on the future)")
    valid_days: list[int] = Field(default_factory=list, description="day split: the validation "
                                  "days")
    test_days: list[int] = Field(default_factory=list, description="day split: the test days")

    @field_validator("files", mode="before")
    @classmethod
    def _one_file(cls, value: Any) -> Any:
        """`train: a.csv` is `train: [a.csv]`."""
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _check(self) -> SplitConfig:
        if self.files is not None and self.kind not in (None, "files"):
            raise ValueError(f"files needs kind: files (or no kind), not {self.kind}")
        if self.ratios is not None and (min(self.ratios) < 0 or abs(sum(self.ratios) - 1) > 1e-6):
            raise ValueError("ratios must be non-negative and sum to 1")
        days = {"train_days": self.train_days or [], "valid_days": self.valid_days,
                "test_days": self.test_days}
        if self.kind != "day":
            given = [name for name, listed in days.items() if listed]
            if given:  # a random split would silently ignore them
                raise ValueError(f"{', '.join(given)} need kind: day")
            return self
        if not (self.valid_days or self.test_days):
            raise ValueError("a day split needs valid_days and/or test_days")
        for (a, first), (b, second) in combinations(days.items(), 2):
            shared = sorted(set(first) & set(second))
            if shared:
                raise ValueError(f"day(s) {shared} in both {a} and {b}")
        if (self.train_days is None and self.valid_days and self.test_days
                and max(self.valid_days) > min(self.test_days)):
            raise ValueError(
                f"valid day {max(self.valid_days)} comes after test day {min(self.test_days)}; "
                "validate on days before the test days, or list train_days to choose the days "
                "of each split yourself")
        return self


def split_help() -> str:
    """The split keys of a prepare config, as `prepare --help` and docs/recipes.md list them."""
    return "\n".join([
        "split: how rows go to train, valid and test (`split:` in the prepare config, or --set "
        "split.KEY=VALUE). Row ids number the rows in reading order from 0: a directory's data "
        "files in name order; in a files split the train files, then the valid ones, then the "
        "test ones", *option_lines(SplitConfig(), "split")])


class PrepareConfig(StrictConfig):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    recipe: str = Field(description="the raw format: criteo, avazu, frappe, movielens, "
                        "synthetic, csv, tsv, parquet, ... (an unknown name lists them)")
    input: Path = Field(description="the raw file or directory")
    output: Path = Field(description="the prepared dataset's directory")
    protocol: str | None = Field(None, description="a benchmark protocol of the recipe (x1, x4): "
                                 "split ratios, min count, numeric transforms")
    schema_: Schema | None = Field(None, alias="schema", description="the raw table's columns "
                                   "(generic recipes; others bring their own)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="the recipe's reading options (csv/tsv layout, recbole "
        "label), checked by the recipe's own strict model")
    split: SplitConfig = Field(default_factory=SplitConfig, description="how rows go to train, "
                               "valid and test")
    min_count: int | None = Field(None, ge=1, description="every field's default min count, "
                                  "over the schema's and the protocol's")
    chunk_rows: int = Field(500_000, ge=1, description="raw rows read at a time (bounds memory)")
    shard_rows: int = Field(1_000_000, ge=1, description="rows per output Parquet shard")
    overwrite: bool = Field(False, description="replace an existing prepared dataset")


@dataclass
class _Plan:
    recipe: Recipe
    schema: Schema
    ratios: tuple[float, float, float]
    split: SplitConfig
    files: dict[int, list[Path]] | None = None  # a files split: each split's files


def _plan(config: PrepareConfig) -> tuple[_Plan, Protocol | None]:
    recipe = get_recipe(config.recipe).configure(config.options).for_input(config.input)
    recipe.announce_input(config.input)
    protocol = None
    if config.protocol is not None:
        if config.protocol not in recipe.protocols:
            valid = ", ".join(recipe.protocols) or "none"
            raise CtrDistillError(
                f"recipe '{recipe.name}' has no protocol '{config.protocol}' (valid: {valid})")
        protocol = recipe.protocols[config.protocol]
    schema = config.schema_ or recipe.default_schema(protocol, config.input)
    if schema is None:
        raise CtrDistillError(f"recipe '{recipe.name}' needs a schema in the prepare config")
    min_count = config.min_count or (protocol.min_count if protocol else None)
    if min_count is not None:
        schema = schema.model_copy(update={"min_count": min_count})
    ratios = config.split.ratios or (protocol.ratios if protocol else (0.8, 0.1, 0.1))
    if config.split.kind == "day" and schema.day is None:
        raise CtrDistillError("a day split needs a schema with a `day` column")
    files = None
    if config.split.kind == "files" or config.split.files is not None:
        files = given_split_files(recipe, config.input, config.split.files)
    elif config.split.kind is None and config.split.ratios is None:
        files = detected_split_files(recipe, config.input)
    return _Plan(recipe, schema, ratios, config.split, files), protocol


def uniform_hash(row_ids: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic uniform [0, 1) per row id (splitmix64), independent of chunking."""
    with np.errstate(over="ignore"):
        z = row_ids.astype(np.uint64) + np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _assign_days(frame: pl.DataFrame, plan: _Plan) -> np.ndarray:
    """The day split; without explicit train days, refuses a training row dated after the first
    valid/test day, so the model never trains on the future it is evaluated on."""
    split, column = plan.split, frame[plan.schema.day]
    if column.null_count():
        row = int(frame["row_id"][int(column.is_null().arg_max())]) + 1
        raise CtrDistillError(f"a day split needs a day on every row: day column "
                              f"'{plan.schema.day}' is missing at data row {row} (1-based)")
    day = column.to_numpy()
    if split.train_days is None:
        out = np.zeros(len(frame), dtype=np.int8)
    else:
        out = np.full(len(frame), -1, dtype=np.int8)
        out[np.isin(day, split.train_days)] = 0
    out[np.isin(day, split.valid_days)] = 1
    out[np.isin(day, split.test_days)] = 2
    if split.train_days is None:
        first = min(split.valid_days + split.test_days)
        late = (out == 0) & (day > first)
        if late.any():
            raise CtrDistillError(
                f"day split: day {day[late][0]} is in no list and after the first valid/test "
                f"day {first}, so it would be trained on; list split.train_days to choose the "
                "training days (days in no list are then left out)")
    return out


def _assign_split(frame: pl.DataFrame, plan: _Plan, file_split: int | None) -> np.ndarray:
    """0 train, 1 valid, 2 test for each row; -1 leaves the row out. `file_split`: the split of
    the file the rows come from (a files split)."""
    if plan.split.kind == "day":
        return _assign_days(frame, plan)
    train, valid, _ = plan.ratios
    if plan.files is not None and file_split is not None:
        drawn = [s for s in (1, 2) if not plan.files[s]]
        if file_split or not drawn:
            return np.full(len(frame), file_split, dtype=np.int8)
        # the train files also give the splits that have no files, in the ratios' proportions
        weights = [plan.ratios[0], *(plan.ratios[s] if s in drawn else 0.0 for s in (1, 2))]
        train, valid = (w / max(sum(weights), 1e-12) for w in weights[:2])
    u = uniform_hash(frame["row_id"].to_numpy(), plan.split.seed)
    return np.where(u < train, 0, np.where(u < train + valid, 1, 2)).astype(np.int8)


def check_label(frame: pl.DataFrame, label: str, source: Path, first_row: int) -> pl.Series:
    """The label as Float32 0/1; rows are reported 1-based, counted over the whole input."""
    values = frame[label].cast(pl.Float32, strict=False)
    if values.null_count():
        index = int(values.is_null().arg_max())
        raise CtrDistillError(f"{source}: missing or non-numeric label in column '{label}' at "
                              f"data row {first_row + index + 1} (1-based)")
    bad = ~values.is_in([0.0, 1.0])
    if bad.any():
        index = int(bad.arg_max())
        raise CtrDistillError(f"{source}: label outside {{0,1}} in column '{label}' at data row "
                              f"{first_row + index + 1} (1-based): {values[index]}")
    return values


class _VocabularyCounter:
    """Counts tokens per vocabulary owner over chunks; compacts partial counts as it goes."""

    def __init__(self, owners: dict[str, list[FieldSpec]]) -> None:
        self.owners = owners
        self.partial: dict[str, list[pl.DataFrame]] = {o: [] for o in owners}

    def add(self, frame: pl.DataFrame) -> None:
        """Counts the tokens of the training rows (`__split` 0) of a chunk."""
        # one query per owner, run together: Polars spreads them over the cores; each filters
        # only its own columns (filtering the whole chunk first copies every column)
        chunk = frame.lazy()
        train = pl.col("__split") == 0

        def tokens(spec: FieldSpec) -> pl.LazyFrame:
            column = chunk.select(token_expr(spec).filter(train).alias("value"))
            return column.explode("value") if spec.kind == "sequence" else column

        counts = pl.collect_all([
            pl.concat([tokens(s) for s in specs]).drop_nulls().group_by("value").len("count")
            for specs in self.owners.values()])
        full = []
        for owner, owner_counts in zip(self.owners, counts, strict=True):
            self.partial[owner].append(owner_counts)
            if len(self.partial[owner]) >= 8:
                full.append(owner)
        for owner, merged in zip(full, pl.collect_all(
                [self._merge(self.partial[o]) for o in full]), strict=True):
            self.partial[owner] = [merged]

    @staticmethod
    def _merge(parts: list[pl.DataFrame]) -> pl.LazyFrame:
        return pl.concat([p.lazy() for p in parts]).group_by("value").agg(pl.col("count").sum())

    def vocabulary(self, owner: str, min_count: int) -> pl.DataFrame:
        """value -> id, most frequent first (ties by value, so the result is deterministic)."""
        parts = self.partial[owner]
        counts = (self._merge(parts).collect() if parts
                  else pl.DataFrame(schema={"value": pl.String, "count": pl.UInt32}))
        kept = counts.filter(pl.col("count") >= min_count).sort(
            ["count", "value"], descending=[True, False])
        return kept.with_columns(
            pl.int_range(FIRST_ID, FIRST_ID + len(kept), dtype=pl.Int32).alias("id"))


def _owner_of(spec: FieldSpec) -> str:
    return spec.share_vocab_with or spec.name


def _sources(config: PrepareConfig, plan: _Plan) -> list[tuple[Path, int | None]]:
    """What is read in order, with the split each gives (files split) or None (all the input)."""
    if plan.files is None:
        return [(config.input, None)]
    return [(file, split) for split in range(3) for file in plan.files[split]]


def _chunks(config: PrepareConfig, plan: _Plan,
            non_finite: Counter[str] | None = None) -> Iterator[pl.DataFrame]:
    """Raw chunks with a stable global row id and the split of each row; non-finite numerics are
    missing, and counted into `non_finite` when given."""
    first_row = 0
    for source, file_split in _sources(config, plan):
        source_row = 0  # errors name the source's own 1-based data rows
        for frame in plan.recipe.read(source, plan.schema, config.chunk_rows):
            # whatever the recipe, numeric columns reach the strict casts below as numbers
            frame = checked_numbers(frame, plan.schema, source, source_row)
            frame, counts = without_non_finite(frame, plan.schema)
            if non_finite is not None:
                non_finite.update(counts)
            label = check_label(frame, plan.schema.label, source, source_row)
            frame = frame.with_columns(
                label.alias("__label"),
                pl.int_range(first_row, first_row + len(frame), dtype=pl.Int64).alias("row_id"))
            frame = frame.with_columns(pl.Series("__split",
                                                 _assign_split(frame, plan, file_split)))
            first_row += len(frame)
            source_row += len(frame)
            yield frame


@dataclass
class _Fitted:
    vocabularies: dict[str, pl.DataFrame]
    stats: dict[str, tuple[float, float]]
    rows: int
    non_finite: Counter[str]


def _fit(config: PrepareConfig, plan: _Plan, show_progress: bool) -> _Fitted:
    schema = plan.schema
    id_specs = [s for s in schema.fields if s.encoded_kind != "numeric"]
    owners: dict[str, list[FieldSpec]] = {}
    for spec in id_specs:
        owners.setdefault(_owner_of(spec), []).append(spec)
    counter = _VocabularyCounter(owners)
    standardized = [s for s in schema.fields if s.transform == "standardize"]
    # over the values present: missing (and non-finite) values stay out of mean and std
    counts = np.zeros(len(standardized))
    sums = np.zeros(len(standardized))
    squares = np.zeros(len(standardized))
    non_finite: Counter[str] = Counter()
    train_rows = 0
    total = 0
    with progress(None, "prepare: fit", "rows", show_progress) as bar:
        for frame in _chunks(config, plan, non_finite):
            total += len(frame)
            in_train = int((frame["__split"] == 0).sum())
            train_rows += in_train
            if in_train:
                counter.add(frame)
                if standardized:
                    x = [pl.col(s.column).cast(pl.Float64).filter(pl.col("__split") == 0)
                         for s in standardized]
                    moments = frame.select(
                        *(e.count().alias(f"n{i}") for i, e in enumerate(x)),
                        *(e.sum().alias(f"s{i}") for i, e in enumerate(x)),
                        *((e**2).sum().alias(f"q{i}") for i, e in enumerate(x))).to_numpy()[0]
                    counts += moments[:len(x)]
                    sums += moments[len(x):2 * len(x)]
                    squares += moments[2 * len(x):]
            bar.update(len(frame))
    if total == 0:
        raise CtrDistillError(f"{config.input}: no rows")
    if train_rows == 0:
        raise CtrDistillError("the split leaves no training rows")
    by_name = {s.name: s for s in schema.fields}
    vocabularies = {o: counter.vocabulary(o, schema.min_count_of(by_name[o])) for o in owners}
    present = np.maximum(counts, 1)  # a field with no value in training: mean 0, std 1
    mean = sums / present
    variance = squares / present - mean**2
    # a constant training column would divide by ~0; std 1 keeps its encoding finite
    std = np.where(variance > 0, np.sqrt(np.maximum(variance, 0)) + 1e-12, 1.0)
    stats = {s.name: (float(m), float(d)) for s, m, d in zip(standardized, mean, std, strict=True)}
    return _Fitted(vocabularies, stats, total, non_finite)


def vocabulary_digest(vocab: pl.DataFrame) -> str:
    """sha256 of the values in id order (ids run consecutively from FIRST_ID, so the order is the
    whole value -> id map); the byte lengths make the concatenation unambiguous."""
    values = vocab.sort("id")["value"]
    digest = hashlib.sha256(values.str.len_bytes().to_numpy().astype("<u8").tobytes())
    digest.update(values.str.join("").item().encode())
    return digest.hexdigest()[:16]


def _feature_map(plan: _Plan, vocabularies: dict[str, pl.DataFrame],
                 stats: dict[str, tuple[float, float]], config: PrepareConfig) -> FeatureMap:
    fields = []
    for spec in plan.schema.fields:
        kind = spec.encoded_kind
        if kind == "numeric":
            mean, std = stats.get(spec.name, (0.0, 1.0))
            fields.append(EncodedField(name=spec.name, kind=kind, transform=spec.transform,
                                       mean=mean, std=std))
        else:
            owner = _owner_of(spec)
            fields.append(EncodedField(
                name=spec.name, kind=kind, vocab=owner, transform=spec.transform,
                vocab_size=len(vocabularies[owner]) + FIRST_ID,
                max_length=spec.max_length if kind == "sequence" else 0))
    return FeatureMap(fields=fields, has_group=plan.schema.group is not None,
                      has_day=plan.schema.day is not None, passthrough=plan.schema.passthrough,
                      source={"recipe": config.recipe, "input": str(config.input),
                              "protocol": config.protocol or ""},
                      vocab_digests={o: vocabulary_digest(v) for o, v in vocabularies.items()})


def encoded_rows(frame: pl.DataFrame, schema: Schema, encoder: Encoder) -> pl.DataFrame:
    """The prepared rows of a checked raw chunk (with `row_id` and `__label`): what prepare
    writes, and what `follow` trains on."""
    exprs = [pl.col("row_id"), pl.col("__label").alias("label"), *encoder.exprs]
    if schema.group:
        exprs.append(pl.col(schema.group).cast(pl.String).hash(seed=0)
                     .reinterpret(signed=True).alias("group"))
    if schema.day:
        exprs.append(pl.col(schema.day).cast(pl.Int32).alias("day"))
    exprs += [pl.col(c).cast(pl.Float64).alias(c) for c in schema.passthrough]
    return frame.select(exprs)


class _ShardWriter:
    """Buffers encoded rows per split and writes fixed-size Parquet shards."""

    def __init__(self, root: Path, shard_rows: int) -> None:
        self.root = root
        self.shard_rows = shard_rows
        self.buffers: dict[str, list[pl.DataFrame]] = {s: [] for s in SPLITS}
        self.buffered = dict.fromkeys(SPLITS, 0)
        self.shards = dict.fromkeys(SPLITS, 0)
        self.rows = dict.fromkeys(SPLITS, 0)

    def add(self, split: str, frame: pl.DataFrame) -> None:
        if not len(frame):
            return
        self.buffers[split].append(frame)
        self.buffered[split] += len(frame)
        self.rows[split] += len(frame)
        while self.buffered[split] >= self.shard_rows:
            whole = pl.concat(self.buffers[split])
            self._write(split, whole.head(self.shard_rows))
            rest = whole.slice(self.shard_rows)
            self.buffers[split] = [rest] if len(rest) else []
            self.buffered[split] = len(rest)

    def _write(self, split: str, frame: pl.DataFrame) -> None:
        folder = self.root / split
        folder.mkdir(exist_ok=True)
        frame.write_parquet(folder / f"part-{self.shards[split]:05d}.parquet")
        self.shards[split] += 1

    def close(self) -> None:
        for split in SPLITS:
            if self.buffers[split]:
                self._write(split, pl.concat(self.buffers[split]))
            self.buffers[split] = []


def _report_non_finite(config: PrepareConfig, non_finite: Counter[str]) -> None:
    found = {name: count for name, count in non_finite.items() if count}
    if found:
        logger.warning("%s: non-finite numeric values (NaN, inf, beyond float32) treated as "
                       "missing: %s", config.input,
                       ", ".join(f"{name} {count}" for name, count in found.items()))


def prepare(config: PrepareConfig, show_progress: bool = True) -> FeatureMap:
    """Run the two passes and write `config.output` (atomically). Returns the feature map."""
    plan, _ = _plan(config)
    if config.output.exists() and not config.overwrite:  # fail before the long fitting pass
        raise CtrDistillError(
            f"output already exists: {config.output} (choose another path or remove it)")
    fitted = _fit(config, plan, show_progress)
    vocabularies = fitted.vocabularies
    _report_non_finite(config, fitted.non_finite)
    feature_map = _feature_map(plan, vocabularies, fitted.stats, config)
    encoder = Encoder(plan.schema, feature_map, vocabularies)
    with atomic_directory(config.output, overwrite=config.overwrite) as tmp:
        writer = _ShardWriter(tmp, config.shard_rows)
        with progress(fitted.rows, "prepare: encode", "rows", show_progress) as bar:
            for frame in _chunks(config, plan):
                encoded = encoded_rows(frame, plan.schema, encoder)
                split_of = frame["__split"]
                for index, split in enumerate(SPLITS):
                    writer.add(split, encoded.filter(split_of == index))
                bar.update(len(frame))
        writer.close()
        feature_map.splits = dict(writer.rows)
        (tmp / VOCAB_DIR).mkdir()
        for owner, vocab in vocabularies.items():
            vocab.write_parquet(tmp / VOCAB_DIR / f"{owner}.parquet")
        (tmp / "schema.json").write_text(plan.schema.model_dump_json(indent=2))
        # what scoring new raw logs needs besides the feature map and vocab/
        save_state(tmp, plan.recipe.name, plan.recipe.options.model_dump(mode="json")
                   if plan.recipe.options else {}, config.protocol, plan.schema)
        report: dict[str, Any] = {"rows": fitted.rows,
                                  "numeric_non_finite": dict(fitted.non_finite)}
        if plan.files is not None:
            report["split_files"] = {SPLITS[s]: [f.name for f in files]
                                     for s, files in plan.files.items()}
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
        feature_map.save(tmp / FEATURE_MAP_FILE)
    return feature_map
