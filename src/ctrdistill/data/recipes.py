"""Recipes: how each raw format is read into frames with the schema's raw columns.

A recipe knows its format's default schema and its benchmark protocols (split ratios, min count,
numeric transform), and yields Polars frames whose label is already 0/1. A recipe may take
options (the prepare config's `options`), validated strictly by its own options model.
Directory inputs follow the one rule of `ctrdistill.data.sources`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pyarrow as pa
from pydantic import Field, model_validator

from ctrdistill.config import StrictConfig, validate_config
from ctrdistill.data.schema import Schema
from ctrdistill.data.sources import data_files, read_delimited, read_parquet, report_skipped
from ctrdistill.errors import CtrDistillError, unknown_name


@dataclass(frozen=True)
class Protocol:
    """A published data protocol: split ratios, min count, Criteo-x4-style bucketising and
    Avazu-x4-style time fields."""

    ratios: tuple[float, float, float]
    min_count: int
    bucketize: bool = False
    description: str = ""
    derive_time: bool = False


@dataclass
class Recipe:
    name: str
    description: str
    protocols: dict[str, Protocol] = field(default_factory=dict)
    options: StrictConfig | None = None
    # a single-table recipe's data files (the directory rule of ctrdistill.data.sources): their
    # extensions, companion files and name patterns of files beside them that are not data
    extensions: ClassVar[tuple[str, ...]] = ()
    companions: ClassVar[tuple[str, ...]] = ()
    skip: ClassVar[tuple[str, ...]] = ()

    def configure(self, options: Mapping[str, Any]) -> Recipe:
        """This recipe with the user's `options` over its defaults; unknown keys are an error."""
        if self.options is None:
            if options:
                raise CtrDistillError(f"recipe '{self.name}' takes no options (given: "
                                      f"{', '.join(options)})")
            return self
        configured = copy.copy(self)
        configured.options = validate_config(type(self.options),
                                             {**self.options.model_dump(), **options},
                                             f"recipe '{self.name}' options")
        return configured

    def default_schema(self, protocol: Protocol | None, path: Path | None = None) -> Schema | None:
        """The format's schema; None where the user must give one. `path`, the raw input, lets a
        format whose optional side files vary (MovieLens) use only the features it can read."""
        return None

    def read(self, path: Path, schema: Schema, chunk_rows: int) -> Iterator[pl.DataFrame]:
        raise NotImplementedError

    def for_input(self, path: Path) -> Recipe:
        """This recipe with the options an input implies (files found beside it), made explicit
        so that the prepared dataset's saved state reads later inputs the same way."""
        return self

    @property
    def file_splits(self) -> bool:
        """Whether `data_files` lists files that each hold rows of their own, so that a files
        split can give each file its split: a single-table recipe's data files; a multi-table
        recipe says so itself (recbole's .inter files, not movielens' one table)."""
        return bool(self.extensions)

    def data_files(self, path: Path) -> list[Path]:
        """The files a single-table recipe reads from `path`, in order (a multi-table recipe
        with `file_splits` lists its own)."""
        if not self.extensions:
            raise CtrDistillError(f"recipe '{self.name}' reads a directory as one dataset, not "
                                  "as separate data files")
        return data_files(path, self.name, self.extensions, self.companions, self.skip)

    def announce_input(self, path: Path) -> None:
        """Log, once per prepare, what the recipe reads from `path` and what not."""
        if self.extensions:
            report_skipped(path, self.name, self.extensions, self.companions, self.skip)


def text_column_types(schema: Schema) -> dict[str, pa.DataType]:
    """Categoricals read as strings (ids are never parsed as numbers), numerics as floats."""
    types: dict[str, pa.DataType] = {schema.label: pa.float64()}
    for spec in schema.fields:
        types[spec.column] = pa.float64() if spec.kind == "numeric" else pa.string()
    for column in schema.passthrough:
        types[column] = pa.float64()
    if schema.group:
        types[schema.group] = pa.string()
    if schema.day:
        types[schema.day] = pa.int64()
    return types


def file_types(base: dict[str, pa.DataType], schema: Schema) -> dict[str, pa.DataType]:
    """The format's column types, with the schema's wishes (a numeric field read as float, ids
    as strings) applied to the columns the file really has."""
    types = dict(base)
    types.update({c: t for c, t in text_column_types(schema).items() if c in base})
    return types


class DelimitedOptions(StrictConfig):
    """How a generic delimited file is laid out."""

    delimiter: str = Field(",", min_length=1, max_length=1)
    header: bool = Field(True, description="the first line names the columns")
    columns: list[str] | None = Field(
        None, description="column names: required without a header; with one, they replace "
        "the header's names")
    quote_char: str | None = Field('"', min_length=1, max_length=1,
                                   description="null turns quoting off")
    comment: str | None = Field(None, min_length=1,
                                description="lines starting with this are skipped")

    @model_validator(mode="after")
    def _check(self) -> DelimitedOptions:
        if not self.header and not self.columns:
            raise ValueError("columns are required when header is false")
        if self.columns:
            duplicates = sorted({c for c in self.columns if self.columns.count(c) > 1})
            if duplicates:
                raise ValueError(f"duplicate column names: {duplicates}")
        if self.quote_char is not None and self.quote_char == self.delimiter:
            raise ValueError("quote_char and delimiter must differ")
        return self


class DelimitedRecipe(Recipe):
    """Generic CSV/TSV; the schema names the columns to use, the options the file's layout."""

    def __init__(self, name: str, delimiter: str, extensions: tuple[str, ...]) -> None:
        super().__init__(name, f"generic {name.upper()} (header by default); needs a schema",
                         options=DelimitedOptions(delimiter=delimiter,
                                                  quote_char=None if delimiter == "\t" else '"'))
        self.extensions = extensions  # csv and tsv differ

    def read(self, path: Path, schema: Schema, chunk_rows: int) -> Iterator[pl.DataFrame]:
        options = self.options
        assert isinstance(options, DelimitedOptions)
        types = text_column_types(schema)
        for file in self.data_files(path):
            for frame in read_delimited(file, options.delimiter, options.columns, types,
                                        skip_rows=int(options.header and bool(options.columns)),
                                        max_rows=chunk_rows, include_columns=schema.raw_columns(),
                                        quote_char=options.quote_char, comment=options.comment):
                yield frame.select(schema.raw_columns())


def checked_numbers(frame: pl.DataFrame, schema: Schema, source: Path | str,
                    first_row: int) -> pl.DataFrame:
    """Numeric fields and passthrough columns as numbers, the day as an integer. Text that is
    not a number is one clear error naming the column, the 1-based data row and the value;
    empty text is missing (a numeric field's `fill`). Columns already of a numeric type (an
    integer type for the day) stay as they are: every use casts them, and casting cannot fail."""
    targets: dict[str, type[pl.DataType]] = {
        **{f.column: pl.Float64 for f in schema.fields if f.kind == "numeric"},
        **dict.fromkeys(schema.passthrough, pl.Float64)}
    if schema.day:
        targets[schema.day] = pl.Int64
    casts = []
    for column, dtype in targets.items():
        current = frame.schema[column]
        if current.is_integer() or (dtype == pl.Float64 and current.is_numeric()):
            continue
        try:
            cast = frame[column].cast(dtype, strict=False)
        except pl.exceptions.InvalidOperationError:
            raise CtrDistillError(f"{source}: column '{column}' holds {current}, not numbers"
                                  ) from None
        bad = cast.is_null() & frame[column].is_not_null()
        if current == pl.String:
            bad &= frame[column].str.strip_chars() != ""
        if bad.any():
            index = int(bad.arg_max())
            raise CtrDistillError(
                f"{source}: non-numeric value in a numeric column '{column}' at data row "
                f"{first_row + index + 1} (1-based): {frame[column][index]!r}")
        casts.append(cast)
    return frame.with_columns(casts)


class ParquetRecipe(Recipe):
    """Generic Parquet file or directory of Parquet files; the schema names the columns."""

    extensions = (".parquet",)

    def read(self, path: Path, schema: Schema, chunk_rows: int) -> Iterator[pl.DataFrame]:
        for file in self.data_files(path):
            first_row = 0
            for frame in read_parquet(file, schema.raw_columns(), chunk_rows):
                # Parquet columns carry any type: numbers may arrive as integers or as text
                yield checked_numbers(frame, schema, file, first_row)
                first_row += len(frame)


class SyntheticRecipe(ParquetRecipe):
    """The output of `ctrdistill synth` (Parquet with label, I*, C*, day, p_true)."""

    companions = ("synth.json",)

    def default_schema(self, protocol: Protocol | None, path: Path | None = None) -> Schema:
        from ctrdistill.data.synthetic import SynthConfig, synthetic_schema

        config = SynthConfig()  # the generator's config, when `synth.json` is beside the parts
        if path is not None and (Path(path) / "synth.json").is_file():
            config = SynthConfig.model_validate_json((Path(path) / "synth.json").read_text())
        return synthetic_schema(config, bucketize=protocol is None or protocol.bucketize)


_RECIPES: dict[str, Recipe] = {}


def register_recipe(recipe: Recipe) -> Recipe:
    _RECIPES[recipe.name] = recipe
    return recipe


register_recipe(DelimitedRecipe("csv", ",", (".csv", ".txt")))
register_recipe(DelimitedRecipe("tsv", "\t", (".tsv", ".txt")))
register_recipe(ParquetRecipe("parquet", "generic Parquet; needs a schema"))
register_recipe(SyntheticRecipe(
    "synthetic", "output of `ctrdistill synth`",
    {"x4": Protocol((0.8, 0.1, 0.1), 10, True, "8:1:1, min count 10, bucketised numerics"),
     "x1": Protocol((0.7, 0.2, 0.1), 1, False, "7:2:1, min count 1, log1p numerics")},
))


def recipe_names() -> list[str]:
    import ctrdistill.data.formats  # noqa: F401  (registers the official raw formats)

    return sorted(_RECIPES)


def get_recipe(name: str) -> Recipe:
    names = recipe_names()
    if name not in _RECIPES:
        raise unknown_name("recipe", name, names)
    return _RECIPES[name]


def recipes_help() -> str:
    """Every registered recipe with its protocols and options (name, default, meaning): the
    text `prepare --help` and the docs show, so a new recipe is listed without editing them."""
    lines = []
    for name in recipe_names():
        recipe = _RECIPES[name]
        lines.append(f"{name}: {recipe.description}")
        if recipe.protocols:
            lines.append("    protocols: " + "; ".join(
                f"{key} ({protocol.description})" for key, protocol in recipe.protocols.items()))
        if recipe.options is not None:
            lines += option_lines(recipe.options, "options")
    return "\n".join(lines)


def option_lines(options: StrictConfig, prefix: str) -> list[str]:
    """`    prefix.key (default value): meaning` for each key of a config, as --help lists them."""
    lines = []
    for option, spec in type(options).model_fields.items():
        default = getattr(options, option)
        meaning = f": {spec.description}" if spec.description else ""
        lines.append(f"    {prefix}.{option} (default {default!r}){meaning}")
    return lines
