"""Vocabularies that grow while logs arrive: ids the prepared vocabulary leaves out of
vocabulary are counted per partition, and at a partition boundary the ones seen at least
`min_count` times over the last `window` partitions get the next rows of their vocabulary
(most frequent first, ties by value). Rows are only appended, so an id never moves and a
model's old rows stay valid; sequence fields grow like the others (their tokens, up to
`max_length` per row, are counted).

Hashed buckets (`oov: hash`) are fixed when a follow starts: the prepared vocabularies stay as
they are, each gains `buckets` rows after it (`FeatureMap.oov_buckets`, in the fingerprint), and
the Encoder and the exported graph send every id a vocabulary lacks to one of them by
MurmurHash3; nothing is kept between partitions.

What is kept between partitions is plain lists (`weights_only` torch state, committed with the
partition): per vocabulary owner, `{"values": [...], "counts": [...]}`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import Field, model_validator

from ctrdistill.config import StrictConfig
from ctrdistill.data.encode import (
    STATE_DIR,
    STATE_FILE,
    VOCAB_DIR,
    Encoder,
    PrepareState,
    token_expr,
)
from ctrdistill.data.prepare import vocabulary_digest
from ctrdistill.data.schema import FEATURE_MAP_FILE, FIRST_ID
from ctrdistill.storage import atomic_directory

Counts = dict[str, dict[str, list]]  # owner -> {"values": [...], "counts": [...]}


class VocabularyConfig(StrictConfig):
    oov: Literal["single", "grow", "hash"] = Field(
        "single", description="ids outside the prepared vocabulary: single (they share its "
        "OOV row), grow (an id seen min_count times within window partitions gets the next "
        "row of its vocabulary at a partition boundary; existing rows never move) or hash "
        "(each vocabulary gets `buckets` more rows, and an id it lacks takes row "
        "MurmurHash3(id) % buckets of them, in training, bundles and their ONNX graph alike)")
    min_count: int = Field(2, ge=1, description="oov: grow: times an unseen id must occur "
                           "within the window to get a row")
    window: int = Field(4, ge=1, description="oov: grow: partitions over which unseen ids "
                        "are counted")
    buckets: int | None = Field(None, ge=1, description="oov: hash (and only it): hashed rows "
                                "per vocabulary")

    @model_validator(mode="after")
    def _check(self) -> VocabularyConfig:
        if self.oov == "hash" and self.buckets is None:
            raise ValueError("oov: hash needs buckets (the hashed rows per vocabulary)")
        if self.oov != "hash" and self.buckets is not None:
            raise ValueError(f"buckets applies only to oov: hash (not {self.oov})")
        return self


def _frame(counts: dict[str, list]) -> pl.DataFrame:
    return pl.DataFrame({"value": counts["values"], "count": counts["counts"]},
                        schema={"value": pl.String, "count": pl.Int64})


def _lists(frame: pl.DataFrame) -> dict[str, list]:
    return {"values": frame["value"].to_list(), "counts": frame["count"].to_list()}


def unseen_counts(frame: pl.DataFrame, state: PrepareState) -> dict[str, pl.DataFrame]:
    """Per vocabulary owner, the tokens of a checked raw chunk that `state` leaves out of
    vocabulary, with their counts (fields sharing a vocabulary add up)."""
    specs = {s.name: s for s in state.schema.fields}
    found: dict[str, list[pl.LazyFrame]] = {}
    for field in state.feature_map.fields:
        if field.kind == "numeric":
            continue
        owner = field.vocab or field.name
        tokens = token_expr(specs[field.name])
        if field.kind == "sequence":
            tokens = tokens.list.head(field.max_length).explode()
        value = pl.col("value")
        found.setdefault(owner, []).append(
            frame.lazy().select(tokens.alias("value")).drop_nulls()
            .filter(value.cast(state.encoder.enums[owner], strict=False).is_null())
            .group_by("value").len("count"))
    owners = [owner for owner, parts in found.items() for _ in parts]
    collected: dict[str, list[pl.DataFrame]] = {}
    for owner, part in zip(owners, pl.collect_all([p for ps in found.values() for p in ps]),
                           strict=True):  # the fields in parallel
        collected.setdefault(owner, []).append(part)
    return {owner: _summed(parts) for owner, parts in collected.items()}


def _summed(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return (pl.concat([f.cast({"count": pl.Int64}) for f in frames])
            .group_by("value").agg(pl.col("count").sum()))


def merge(chunks: list[dict[str, pl.DataFrame]]) -> Counts:
    """The counts of a partition's chunks, as kept in the follow state."""
    owners = sorted({owner for chunk in chunks for owner in chunk})
    return {owner: _lists(_summed([c[owner] for c in chunks if owner in c]).sort("value"))
            for owner in owners}


def grow(window: list[Counts], min_count: int) -> tuple[Counts, list[Counts]]:
    """The ids that reached `min_count` over `window` (per owner, in the order they get their
    rows) and the window without them."""
    owners = sorted({owner for counts in window for owner in counts})
    added: Counts = {}
    for owner in owners:
        total = _summed([_frame(c[owner]) for c in window if owner in c])
        kept = total.filter(pl.col("count") >= min_count).sort(["count", "value"],
                                                                descending=[True, False])
        if len(kept):
            added[owner] = _lists(kept)
    if not added:
        return added, window
    rest = [{owner: _lists(_frame(c).filter(~pl.col("value").is_in(
        added[owner]["values"] if owner in added else [])))
        for owner, c in counts.items()} for counts in window]
    return added, rest


def extend(added: Counts, more: Counts) -> Counts:
    """Everything grown so far, `more` appended."""
    owners = sorted(added.keys() | more.keys())
    empty: dict[str, list] = {"values": [], "counts": []}
    return {o: {k: added.get(o, empty)[k] + more.get(o, empty)[k] for k in empty}
            for o in owners}


def grown_state(base: PrepareState, added: Counts) -> PrepareState:
    """`base` with the `added` ids appended to its vocabularies (ids after the last one)."""
    if not any(a["values"] for a in added.values()):
        return base
    vocabularies = {}
    for owner, vocab in base.encoder.vocabularies.items():
        if owner not in added:
            vocabularies[owner] = vocab
            continue
        first = FIRST_ID + len(vocab)
        values = added[owner]["values"]
        appended = pl.DataFrame({"value": values, "count": added[owner]["counts"],
                                 "id": range(first, first + len(values))})
        vocabularies[owner] = pl.concat([vocab, appended.select(
            pl.col(c).cast(vocab.schema[c]) for c in vocab.columns)])
    feature_map = base.feature_map
    feature_map = feature_map.model_copy(update={
        "fields": [f if f.kind == "numeric" else f.model_copy(update={
            "vocab_size": len(vocabularies[f.vocab or f.name]) + FIRST_ID})
            for f in feature_map.fields],
        "vocab_digests": {o: vocabulary_digest(v) for o, v in vocabularies.items()}})
    return PrepareState(base.state, Encoder(base.schema, feature_map, vocabularies))


def hashed_state(base: PrepareState, buckets: int) -> PrepareState:
    """`base` with `buckets` hashed rows after each vocabulary for the ids it lacks."""
    vocabularies = base.encoder.vocabularies
    feature_map = base.feature_map.model_copy(update={
        "oov_buckets": buckets,
        "fields": [f if f.kind == "numeric" else f.model_copy(update={
            "vocab_size": FIRST_ID + len(vocabularies[f.vocab or f.name]) + buckets})
            for f in base.feature_map.fields]})
    return PrepareState(base.state, Encoder(base.schema, feature_map, vocabularies))


def vocab_sizes(state: PrepareState) -> dict[str, int]:
    """Rows of each vocabulary owner's embedding table (padding and OOV included)."""
    return {f.vocab or f.name: f.vocab_size for f in state.feature_map.fields
            if f.kind != "numeric"}


def write_state(state: PrepareState, dataset: Path, target: Path) -> None:
    """`state` as the `prepare/` folder of run directory `target` (replaced atomically); the
    recipe and schema are the prepared `dataset`'s."""
    with atomic_directory(Path(target) / STATE_DIR, overwrite=True) as folder:
        shutil.copyfile(Path(dataset) / STATE_FILE, folder / STATE_FILE)
        state.feature_map.save(folder / FEATURE_MAP_FILE)
        (folder / VOCAB_DIR).mkdir()
        for owner, vocab in state.encoder.vocabularies.items():
            vocab.write_parquet(folder / VOCAB_DIR / f"{owner}.parquet")


def empty_state() -> dict[str, Any]:
    """What the follow state keeps: the ids grown so far and the counts of the window."""
    return {"added": {}, "window": []}
