"""Arrived raw files -> prepared rows, with the dataset's fitted preprocessing: the recipe reads
them, numerics and labels are checked and encoded exactly as `prepare` does (one encoder)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ctrdistill.data.encode import PrepareState, without_non_finite
from ctrdistill.data.prepare import check_label, encoded_rows
from ctrdistill.data.recipes import checked_numbers, get_recipe
from ctrdistill.data.schema import OOV_ID, PAD_ID
from ctrdistill.errors import CtrDistillError

CHUNK_ROWS = 500_000


def encode_files(state: PrepareState, files: list[Path]) -> pl.DataFrame:
    """The prepared rows of a partition's raw files, row ids numbered from 0 over the files."""
    recipe = get_recipe(state.state.recipe).configure(state.state.options)
    schema = state.schema
    frames = []
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
            first_row += len(frame)
    if not frames or not first_row:
        raise CtrDistillError(f"{files[0].parent if files else 'partition'}: no rows")
    return pl.concat(frames)


def oov_rates(rows: pl.DataFrame, state: PrepareState) -> dict[str, float]:
    """Per id field, the fraction of its ids (tokens, for a sequence) not in the vocabulary."""
    rates = {}
    for field in state.feature_map.fields:
        if field.kind == "numeric":
            continue
        column = pl.col(field.name)
        if field.kind == "sequence":
            ids = rows.select(column.explode()).to_series()
            ids = ids.filter(ids != PAD_ID)
        else:
            ids = rows[field.name]
        rates[field.name] = float((ids == OOV_ID).mean()) if len(ids) else 0.0
    return rates
