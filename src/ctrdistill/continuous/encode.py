"""Arrived raw files -> prepared rows, with the dataset's fitted preprocessing: the recipe reads
them, numerics and labels are checked and encoded exactly as `prepare` does (one encoder)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ctrdistill.continuous.vocabulary import Counts, merge, unseen_counts
from ctrdistill.data.encode import PrepareState, without_non_finite
from ctrdistill.data.prepare import check_label, encoded_rows
from ctrdistill.data.recipes import checked_numbers, get_recipe
from ctrdistill.data.schema import OOV_ID, PAD_ID, FeatureMap
from ctrdistill.errors import CtrDistillError

CHUNK_ROWS = 500_000


def encode_files(state: PrepareState, files: list[Path], count_unseen: bool = False
                 ) -> tuple[pl.DataFrame, Counts | None]:
    """The prepared rows of a partition's raw files, row ids numbered from 0 over the files,
    and (with `count_unseen`) the counts of the tokens it leaves out of vocabulary."""
    recipe = get_recipe(state.state.recipe).configure(state.state.options)
    schema = state.schema
    frames, unseen = [], []
    first_row = 0
    for path in files:
        for frame in recipe.read(path, schema, CHUNK_ROWS):
            frame = without_non_finite(checked_numbers(frame, schema, path, first_row),
                                       schema)[0]
            label = check_label(frame, schema.label, path, first_row)
            frame = frame.with_columns(
                label.alias("__label"),
                pl.int_range(first_row, first_row + len(frame), dtype=pl.Int64).alias("row_id"))
            frames.append(encoded_rows(frame, schema, state.encoder))
            if count_unseen:
                unseen.append(unseen_counts(frame, state))
            first_row += len(frame)
    if not frames or not first_row:
        raise CtrDistillError(f"{files[0].parent if files else 'partition'}: no rows")
    return pl.concat(frames), merge(unseen) if count_unseen else None


def oov_rates(rows: pl.DataFrame, feature_map: FeatureMap,
              sizes: dict[str, int] | None = None) -> dict[str, float]:
    """Per id field, the fraction of its ids (tokens, for a sequence) not in the vocabulary;
    with `sizes` (rows by vocabulary owner), ids at or past them count as out of vocabulary
    too: the rate a vocabulary that never grew past those sizes would have."""
    rates = {}
    for field in feature_map.fields:
        if field.kind == "numeric":
            continue
        column = pl.col(field.name)
        if field.kind == "sequence":
            ids = rows.select(column.explode()).to_series()
            ids = ids.filter(ids != PAD_ID)
        else:
            ids = rows[field.name]
        oov = ids == OOV_ID
        if sizes is not None:
            oov = oov | (ids >= sizes[field.vocab or field.name])
        rates[field.name] = float(oov.mean()) if len(ids) else 0.0
    return rates
