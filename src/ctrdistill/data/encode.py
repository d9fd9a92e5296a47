"""The fitted preprocessing of a prepared dataset, and the one encoder of raw rows into model ids.

`prepare` fits vocabularies and numeric statistics, then encodes every raw chunk with `Encoder`;
scoring new raw logs (`ctrdistill predict --input`) and serving (`ctrdistill.serving`) load the
same state and run the same `Encoder`, so raw rows -> ids is identical by construction.

The state is a folder: `prepare_state.json` (recipe, its options, the schema), the feature map
and `vocab/<owner>.parquet`. It is written once with the dataset and copied into every run
directory and export bundle under `prepare/`. This module imports no torch.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ConfigDict, Field

from ctrdistill.config import StrictConfig
from ctrdistill.data.hashing import murmurhash3
from ctrdistill.data.recipes import DelimitedRecipe, ParquetRecipe, checked_numbers, get_recipe
from ctrdistill.data.schema import (
    FEATURE_MAP_FILE,
    FIRST_ID,
    OOV_ID,
    PAD_ID,
    FeatureMap,
    FieldSpec,
    Schema,
)
from ctrdistill.errors import CtrDistillError
from ctrdistill.files import PREPARE, read_model, read_parquet
from ctrdistill.storage import copy_tree

MISSING_TOKEN = ""
FLOAT32_MAX = float(np.finfo(np.float32).max)
STATE_FILE = "prepare_state.json"
STATE_DIR = "prepare"  # the state's folder inside a run directory or an export bundle
VOCAB_DIR = "vocab"
BLOCKS = ("categorical", "numeric", "sequence")  # the model's input blocks, by field kind


class StateFile(StrictConfig):
    """What `prepare_state.json` holds besides the feature map and the vocabularies."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    format_version: int = 1
    recipe: str
    options: dict[str, Any]
    protocol: str | None = None
    schema_: Schema = Field(alias="schema")


def token_expr(spec: FieldSpec) -> pl.Expr:
    """String tokens of an id field (a list of tokens for a sequence field)."""
    col = pl.col(spec.column)
    if spec.kind == "numeric":  # bucketise: floor(ln(x)^2) for x > 2, else int(x)
        x = col.cast(pl.Float64)
        bucket = pl.when(x > 2).then((x.log() ** 2).floor()).otherwise(x.floor())
        # a value below Int64's range has no bucket: it becomes the missing token, as null does
        return bucket.cast(pl.Int64, strict=False).cast(pl.String).fill_null(MISSING_TOKEN)
    if spec.kind == "sequence":
        return col.cast(pl.String).fill_null("").str.split(spec.separator).list.eval(
            pl.element().filter(pl.element() != ""))
    return col.cast(pl.String).fill_null(MISSING_TOKEN)


def continuous_expr(spec: FieldSpec) -> pl.Expr:
    x = pl.col(spec.column).cast(pl.Float64).fill_null(spec.fill)
    return x.clip(lower_bound=0).log1p() if spec.transform == "log1p" else x


def without_non_finite(frame: pl.DataFrame, schema: Schema) -> tuple[pl.DataFrame, Counter[str]]:
    """Numeric columns with NaN, ±inf and values beyond float32's range made null (missing), and
    how many each numeric field had."""
    columns = list(dict.fromkeys(f.column for f in schema.fields if f.kind == "numeric"))
    if not columns:
        return frame, Counter()
    # NaN compares false, so `finite` is false for NaN and ±inf; null stays null (not counted)
    finite = {c: pl.col(c).abs() <= FLOAT32_MAX for c in columns}
    counts = frame.select((~e).sum().alias(c) for c, e in finite.items()).row(0, named=True)
    per_field = Counter({f.name: int(counts[f.column]) for f in schema.fields
                         if f.kind == "numeric"})
    if not any(counts.values()):
        return frame, per_field
    return frame.with_columns(pl.when(e).then(pl.col(c)).alias(c)
                              for c, e in finite.items()), per_field


def _filled(tokens: pa.Array, ids: pa.Array, first_bucket: int, buckets: int) -> pa.Array:
    unseen = pc.is_null(ids)
    rows = murmurhash3(pc.filter(tokens, unseen)) % np.uint32(buckets) + np.uint32(first_bucket)
    return pc.replace_with_mask(ids, unseen, pa.array(rows.astype(np.int32)))


def hashed_ids(pairs: pl.Series, first_bucket: int, buckets: int) -> pl.Series:
    """The `ids` of a struct series of `tokens` and their `ids` (or lists of both), where
    null (tokens the vocabulary lacks), the row `first_bucket + MurmurHash3(token) % buckets`.
    In Arrow, whose calls cost microseconds where Polars' cost ~50 us (one served row); the
    unseen tokens are hashed as they come, 6x faster than mapping their distinct values
    back."""
    tokens, ids = pairs.to_arrow().flatten()
    if not isinstance(ids.type, pa.LargeListType | pa.ListType):
        return pl.Series(_filled(tokens, ids, first_bucket, buckets))
    flat = _filled(pc.list_flatten(tokens), pc.list_flatten(ids), first_bucket, buckets)
    lengths = pc.list_value_length(ids).fill_null(0).to_numpy()  # cut back into the lists
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int64())
    return pl.Series(pa.LargeListArray.from_arrays(offsets, flat))


@dataclass
class Encoder:
    """Raw columns -> the encoded fields of `feature_map` (ids, transformed numerics).

    Each vocabulary is held as a Polars Enum of its values in id order, so looking a token up
    is a cast (unseen tokens become null, then OOV or, with the feature map's `oov_buckets`,
    their hashed bucket): the same cost per row for a chunk of a million rows and for one
    served row, where mapping by value would rebuild a hash table of the whole vocabulary on
    every call."""

    schema: Schema
    feature_map: FeatureMap
    vocabularies: dict[str, pl.DataFrame]

    def __post_init__(self) -> None:
        # ids run consecutively from FIRST_ID in the vocabulary's id order
        self.enums = {owner: pl.Enum(vocab.sort("id")["value"])
                      for owner, vocab in self.vocabularies.items()}
        self.exprs = self.field_exprs()  # built once: a request's rows are encoded in ~ms

    def _known(self, tokens: pl.Expr, owner: str) -> pl.Expr:
        """Ids of the tokens in the vocabulary, null for the others."""
        position = tokens.cast(self.enums[owner], strict=False).to_physical().cast(pl.Int32)
        return position + FIRST_ID

    def _ids(self, tokens: pl.Expr, owner: str) -> pl.Expr:
        return self._known(tokens, owner).fill_null(OOV_ID)

    def _hashed_ids(self, tokens: pl.Expr, owner: str, sequence: bool) -> pl.Expr:
        """`_ids`, with the tokens the vocabulary lacks in its hashed buckets. The lookup
        stays in Polars (an Enum passed to Python costs ~25 ms per call at 100k values); a
        whole column goes to NumPy to be hashed (in `list.eval`, a Python function would be
        called once per row)."""
        known = (tokens.list.eval(self._known(pl.element(), owner)) if sequence
                 else self._known(tokens, owner))
        bucketed = partial(hashed_ids, first_bucket=FIRST_ID + len(self.vocabularies[owner]),
                           buckets=self.feature_map.oov_buckets)
        return pl.struct(tokens.alias("tokens"), known.alias("ids")).map_batches(
            bucketed, return_dtype=pl.List(pl.Int32) if sequence else pl.Int32)

    def field_exprs(self) -> list[pl.Expr]:
        specs = {s.name: s for s in self.schema.fields}
        hashing = self.feature_map.oov_buckets > 0
        exprs = []
        for field in self.feature_map.fields:
            spec = specs[field.name]
            if field.kind == "numeric":
                x = continuous_expr(spec)
                if spec.transform == "standardize":
                    x = (x - field.mean) / field.std
                exprs.append(x.cast(pl.Float32).alias(field.name))
                continue
            owner = field.vocab or field.name
            if field.kind == "sequence":
                tokens = token_expr(spec).list.head(field.max_length)
                encoded = (self._hashed_ids(tokens, owner, sequence=True) if hashing
                           else tokens.list.eval(self._ids(pl.element(), owner)))
                padding = pl.lit([PAD_ID] * field.max_length, dtype=pl.List(pl.Int32))
                exprs.append(pl.concat_list(encoded.list.head(field.max_length), padding)
                             .list.head(field.max_length).alias(field.name))
            else:
                tokens = token_expr(spec)
                ids = (self._hashed_ids(tokens, owner, sequence=False) if hashing
                       else self._ids(tokens, owner))
                exprs.append(ids.alias(field.name))
        return exprs

    def clean(self, frame: pl.DataFrame, source: Path | str, first_row: int) -> pl.DataFrame:
        """Numeric feature columns checked and cast, non-finite values missing: what prepare
        does to a raw chunk before it encodes it."""
        features = self.schema.model_copy(update={"passthrough": [], "day": None})
        frame = checked_numbers(frame, features, source, first_row)
        return without_non_finite(frame, features)[0]

    def features(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The encoded fields of a cleaned raw frame, in feature-map order (lazily: the
        fields are computed in parallel, which matters for the few rows of a request)."""
        return frame.lazy().select(self.exprs).collect()

    def blocks(self, encoded: pl.DataFrame) -> dict[str, np.ndarray]:
        """The model's input blocks by field kind: `categorical` (B, C) int64 ids, `numeric`
        (B, N) float32, `sequence` (B, S, L) int64 ids; empty blocks are left out."""
        fm = self.feature_map
        out: dict[str, np.ndarray] = {}
        for kind, dtype in zip(BLOCKS, (np.int64, np.float32, np.int64), strict=True):
            names = [f.name for f in fm.of_kind(kind)]  # type: ignore[arg-type]
            if not names:
                continue
            if kind == "sequence":  # (B, S, L) from S list columns of length L
                out[kind] = np.stack([np.stack(encoded[n].to_numpy()) for n in names], 1)
            else:
                out[kind] = encoded.select(names).to_numpy()
            out[kind] = out[kind].astype(dtype, copy=False)
        return out


@dataclass
class PrepareState:
    """A dataset's fitted preprocessing: how to read its recipe's raw files and encode them."""

    state: StateFile
    encoder: Encoder

    @property
    def schema(self) -> Schema:
        return self.encoder.schema

    @property
    def feature_map(self) -> FeatureMap:
        return self.encoder.feature_map

    def raw_columns(self) -> list[str]:
        """The raw feature columns a row must give (the schema's, after the recipe's derived
        fields such as Avazu's weekday)."""
        return list(dict.fromkeys(f.column for f in self.schema.fields))

    def read(self, path: Path, chunk_rows: int, key: str | None = None
             ) -> Iterator[tuple[pl.DataFrame, pl.Series]]:
        """Encoded chunks of a raw input in the recipe's format, with each row's key: the raw
        column `key`, else a 0-based row number over the whole input.

        Recipes that read columns by name (csv, tsv, parquet, synthetic) need no label column;
        the others read their fixed layout, label included."""
        recipe = get_recipe(self.state.recipe).configure(self.state.options)
        schema = self.schema
        by_name = isinstance(recipe, DelimitedRecipe | ParquetRecipe)
        if by_name:  # read only the feature columns (and the key): unlabeled logs score too
            extra = [FieldSpec(name="__key", source=key)] if key else []
            schema = schema.model_copy(update={
                "label": schema.fields[0].column, "fields": [*schema.fields, *extra],
                "passthrough": [], "group": None, "day": None})
        elif key and key not in schema.raw_columns():
            raise CtrDistillError(f"--key {key!r}: recipe '{recipe.name}' reads only its own "
                                  f"columns ({', '.join(schema.raw_columns())})")
        first_row = 0
        for frame in recipe.read(Path(path), schema, chunk_rows):
            keys = (frame[key].rename(key) if key else
                    pl.int_range(first_row, first_row + len(frame), dtype=pl.Int64, eager=True)
                    .rename("row_id"))
            frame = self.encoder.clean(frame, path, first_row)
            first_row += len(frame)
            yield self.encoder.features(frame), keys

    @classmethod
    def load(cls, folder: Path, remedy: str = PREPARE) -> PrepareState:
        """The state saved in a prepared dataset, a run's or a bundle's `prepare/` folder;
        `remedy`: what rebuilds it when damaged (prepare, train or export again)."""
        folder = Path(folder)
        for candidate in (folder, folder / STATE_DIR):
            if (candidate / STATE_FILE).is_file():
                folder = candidate
                break
        else:
            raise CtrDistillError(
                f"{folder}: no {STATE_FILE} (the fitted preprocessing); runs trained on data "
                "prepared before it existed cannot score raw logs: prepare the data again")
        state = read_model(StateFile, folder / STATE_FILE, remedy)
        feature_map = FeatureMap.load(folder / FEATURE_MAP_FILE, remedy)
        owners = {f.vocab or f.name for f in feature_map.fields if f.kind != "numeric"}
        vocabularies = {o: read_parquet(folder / VOCAB_DIR / f"{o}.parquet", remedy)
                        for o in owners}
        return cls(state, Encoder(state.schema_, feature_map, vocabularies))


def save_state(folder: Path, recipe: str, options: dict[str, Any], protocol: str | None,
               schema: Schema) -> None:
    """Write `prepare_state.json` into a dataset folder that has its feature map and vocab/."""
    state = StateFile(recipe=recipe, options=options, protocol=protocol, schema_=schema)
    (folder / STATE_FILE).write_text(state.model_dump_json(indent=2, by_alias=True))


def state_problem(dataset: Path) -> str | None:
    """What keeps a dataset's saved preprocessing from being copied into a run (None: nothing,
    or data prepared before the state was saved), so a run can refuse before it trains."""
    dataset = Path(dataset)
    if not (dataset / STATE_FILE).is_file():
        return None
    missing = [name for name in (FEATURE_MAP_FILE, VOCAB_DIR) if not (dataset / name).exists()]
    if missing:
        return (f"{dataset}: the prepared dataset lacks {' and '.join(missing)} (its fitted "
                "preprocessing is incomplete); prepare it again")
    return None


def copy_state(dataset: Path, target: Path) -> bool:
    """Copy a dataset's state into `target/prepare/`; False (nothing copied) for data prepared
    before the state was saved."""
    dataset = Path(dataset)
    if not (dataset / STATE_FILE).is_file():
        return False
    folder = Path(target) / STATE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name in (STATE_FILE, FEATURE_MAP_FILE):
        shutil.copyfile(dataset / name, folder / name)  # new files: the umask's mode
    copy_tree(dataset / VOCAB_DIR, folder / VOCAB_DIR)
    return True
