"""Sparse text formats: libsvm / libfm lines `label idx:value ...` and libffm lines
`label field:idx:value ...`, any number of features per line (iPinYou- and KDD12-style dumps).

- Labels are 0/1 or -1/+1 (-1 is 0). `options.skip_columns` drops plain columns after the label
  (iPinYou's `.yzx.txt`: `click payprice idx:1 ...`, so 1).
- Values: a feature is present when its value is not 0, absent when it is 0 (libsvm's sparse
  zero). The value itself is not kept: CTR dumps use 1 (or one constant, like LIBSVM's unit-norm
  Criteo), so it carries nothing; the schema scan warns with the count of other values.
- `libsvm` fields: field:index:value lines give one field `f<field>` per field, holding the
  field's feature index, or its indices as a sequence where a line has several in that field.
  index:value lines with a feature-to-field map (`options.field_map`, by default a
  `featindex.txt` in the input directory or beside the input file: make-ipinyou-data's
  `<field>:<value><TAB><index>` lines) give the same: the map names each index's field, and a
  feature whose key has no field (`truncate`, the constant first line) is dropped. Without a map
  they give one sequence field `features`, the line's feature indices in line order, and a
  warning: field-interaction models see a single field. Without a schema in the prepare config,
  one extra pass over the input finds the fields and the longest sequences (`max_length`).
- `frappe` (and any fixed layout): position k of the line is field f<k>, one feature each.

Parsing is vectorised: each chunk of lines is validated by one regular expression, then split
into one flat sequence of feature tokens.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import Field

from ctrdistill.config import StrictConfig
from ctrdistill.data.recipes import Protocol, Recipe
from ctrdistill.data.schema import FieldSpec, Schema
from ctrdistill.data.sources import read_lines
from ctrdistill.errors import CtrDistillError

logger = logging.getLogger(__name__)

EXTENSIONS = (".libsvm", ".svm", ".libfm", ".libffm", ".ffm", ".txt")
BAG_FIELD = "features"


def _normalised(lines: pl.DataFrame) -> pl.Series:
    """Lines with single spaces between tokens; the regex pass only on a chunk that needs it."""
    line = lines["line"]
    odd = (line.str.contains("  ", literal=True) | line.str.contains("\t", literal=True)
           | line.str.starts_with(" ") | line.str.ends_with(" "))
    if not odd.any():
        return line
    return line.str.replace_all(r"\s+", " ").str.strip_chars()


def _label(text: pl.Series) -> pl.Series:
    """0/1 labels, -1 read as 0; text that is no number is null (prepare reports it)."""
    raw = text.cast(pl.Float64, strict=False)
    return pl.select(pl.when(raw == -1).then(0.0).otherwise(raw)).to_series().alias("label")


def tokens(lines: pl.DataFrame) -> pl.DataFrame:
    """`label` and `features` (the line's other tokens) of each line."""
    parts = _normalised(lines).str.split(" ")
    return pl.DataFrame([_label(parts.list.first()), parts.list.slice(1).alias("features")])


PAIR = r"[^\s:]+:[^\s:]+"
TRIPLE = r"[^\s:]+:[^\s:]+:[^\s:]+"


@dataclass
class _Chunk:
    """A chunk of lines as labels plus one entry per present feature, in line order."""

    label: pl.Series
    triples: bool
    row: np.ndarray  # the feature's line, 0-based within the chunk, ascending
    field: pl.Series | None  # libffm only
    index: pl.Series
    weighted: int  # features with a value other than 0 and 1

    @property
    def lines(self) -> int:
        return len(self.label)

    def by_field(self) -> dict[str, tuple[np.ndarray, pl.Series]]:
        if self.field is None:
            return {BAG_FIELD: (self.row, self.index)}
        groups = pl.DataFrame({"field": self.field, "row": self.row, "index": self.index}
                              ).group_by("field").agg("row", "index")  # keeps the rows' order
        return {f"f{name}": (rows.to_numpy().astype(np.int64), index)
                for name, rows, index in zip(groups["field"], groups["row"], groups["index"],
                                             strict=True)}


def _without_columns(line: pl.Series, skip: int, file: Path, first_row: int) -> pl.Series:
    """Lines without the `skip` plain columns after the label (iPinYou's winning price)."""
    head = rf"^(\S+)(?: [^\s:]+){{{skip}}}"
    fits = line.str.contains(head + "( |$)")
    if not fits.all():
        index = int((~fits).arg_max())
        raise CtrDistillError(
            f"{file}: data row {first_row + index + 1} (1-based) lacks the {skip} plain "
            f"column(s) after the label that options.skip_columns drops: {line[index][:80]!r}")
    return line.str.replace(head, "$1")


def _parse(lines: pl.DataFrame, file: Path, first_row: int, skip: int = 0,
           field_of: pl.DataFrame | None = None) -> _Chunk:
    """Split a chunk of lines: every feature token is validated by one regular expression over
    the lines, then ':' becomes a separator too, so the tokens of all lines form one flat
    sequence with period 2 (index, value) or 3 (field, index, value). `field_of` (index ->
    field, a field map) gives index:value features their fields."""
    line = _normalised(lines)
    if skip:
        line = _without_columns(line, skip, file, first_row)
    spaces = line.str.count_matches(" ", literal=True)
    with_features = spaces > 0
    triples = False
    if with_features.any():
        first = line[int(with_features.arg_max())].split(" ")[1]
        triples = first.count(":") == 2
        valid = line.str.contains(rf"^\S+( {TRIPLE if triples else PAIR})*$")
        if not valid.all():
            index = int((~valid).arg_max())
            form = "field:index:value" if triples else "index:value"
            tokens = line[index].split(" ")
            token = next(t for t in tokens[1:] if not re.fullmatch(TRIPLE if triples else PAIR, t))
            hint = ("; a number right after the label, like iPinYou's winning price in its "
                    ".yzx.txt files, is dropped by options.skip_columns: 1"
                    if token == tokens[1] and re.fullmatch(r"[-+.\d]+", token) else "")
            raise CtrDistillError(
                f"{file}: bad feature {token[:40]!r} at data row {first_row + index + 1} "
                f"(1-based): expected {form}, like the chunk's first feature {first[:40]!r}"
                + hint)
    period = 3 if triples else 2
    flat = line.str.replace_all(":", " ", literal=True).str.split(" ").list.slice(1).explode()
    flat = flat.drop_nulls()  # a line without features explodes to one null
    row = np.repeat(np.arange(len(line), dtype=np.int64), spaces.to_numpy())
    value_text = flat.gather_every(period, period - 1)
    field = flat.gather_every(period, 0) if triples else None
    index = flat.gather_every(period, period - 2)
    weighted = 0
    if not (value_text == "1").all():
        value = value_text.cast(pl.Float64, strict=False)
        bad = value.is_null() | value.is_nan()
        if bad.any():
            at = int(bad.arg_max())
            token = ":".join([*([field[at]] if field is not None else []), index[at],
                              value_text[at]])
            raise CtrDistillError(f"{file}: non-numeric feature value in {token[:40]!r} at data "
                                  f"row {first_row + int(row[at]) + 1} (1-based)")
        present = (value != 0).to_numpy()
        weighted = int(((value != 0) & (value != 1)).sum())
        row, index = row[present], index.filter(present)
        field = field.filter(present) if field is not None else None
    if field_of is not None and triples:
        raise CtrDistillError(f"{file}: field:index:value lines name their own fields; a field "
                              "map (options.field_map, or a featindex.txt beside the data) is "
                              "for index:value lines")
    if field_of is not None and len(index):
        field = pl.DataFrame({"index": index}).join(field_of, on="index", how="left",
                                                    maintain_order="left")["field"]
        unknown = field.is_null()
        if unknown.any():
            at = int(unknown.arg_max())
            raise CtrDistillError(
                f"{file}: feature index {index[at][:40]!r} at data row "
                f"{first_row + int(row[at]) + 1} (1-based) is not in the field map; give the "
                "map these files were indexed with (options.field_map)")
        kept = (field != "").to_numpy()  # a feature the map puts in no field (`truncate`)
        row, index, field = row[kept], index.filter(kept), field.filter(kept)
    elif field_of is not None:
        field = pl.Series([], dtype=pl.String)
    return _Chunk(_label(line.str.extract(r"^(\S*)")), triples, row, field, index, weighted)


MAP_FILE = "featindex.txt"
MAP_LINE = r"^([^\t]*)\t\s*(\d+)\s*$"


def read_field_map(path: Path) -> pl.DataFrame:
    """`index` -> `field` of a feature-to-field map: make-ipinyou-data's featindex.txt, lines
    `<field>:<value><TAB><index>` (`8:115.45.195.*\t29`). A key without a field before its first
    colon (the first line, `truncate\t0`, a constant on every row) maps to field "": such
    features are dropped."""
    lines = pl.concat(list(read_lines(path, 1 << 20)))
    parts = lines["line"].str.extract_groups(MAP_LINE)
    bad = parts.struct.field("2").is_null()
    if bad.any():
        at = int(bad.arg_max())
        raise CtrDistillError(f"{path}: line {at + 1} is not `<field>:<value><TAB><index>`: "
                              f"{lines['line'][at][:80]!r}")
    frame = pl.DataFrame({
        "index": parts.struct.field("2"),
        "field": parts.struct.field("1").str.extract(r"^([^:]*):").fill_null("")})
    twice = frame["index"].is_duplicated()
    if twice.any():
        raise CtrDistillError(f"{path}: feature index {frame['index'][int(twice.arg_max())]} "
                              "is listed twice")
    return frame


def _joined(lines: int, rows: np.ndarray, values: pl.Series,
            separator: str) -> tuple[pl.Series, np.ndarray]:
    """Each line's values joined by `separator` (null where it has none), and how many each line
    has."""
    counts = np.bincount(rows, minlength=lines)
    if not len(rows) or counts.max() <= 1:  # at most one a line: put each in place
        empty = pl.repeat(None, lines, dtype=pl.String, eager=True)
        return empty.scatter(rows, values.cast(pl.String)), counts
    offsets = np.concatenate([[0], np.cumsum(counts)])
    lists = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()),
                                          values.cast(pl.String).rechunk().to_arrow())
    return pl.Series(lists).list.join(separator), counts


def _field_order(name: str) -> tuple[int, int | str]:
    """f2 before f10: numeric field ids by number, others after, by name."""
    rest = name[1:]
    return (0, int(rest)) if rest.isdigit() else (1, rest)


class LibsvmOptions(StrictConfig):
    """How libsvm lines are laid out, and where their features' fields come from."""

    field_map: Path | None = Field(
        None, description="feature-to-field map of index:value lines (make-ipinyou-data's "
        "featindex.txt: `<field>:<value><TAB><index>` lines): one field f<field> per field "
        f"instead of one bag; default: {MAP_FILE} in the input directory or beside the input "
        "file")
    skip_columns: int = Field(0, ge=0, description="plain columns after the label that are not "
                              "features, dropped (1 for iPinYou's .yzx.txt: the winning price)")


class LibsvmRecipe(Recipe):
    """libsvm / libfm / libffm text with any number of features per line (module docstring)."""

    extensions = EXTENSIONS
    # beside make-ipinyou-data's .yzx.txt files: its feature-to-field map and its raw logs
    skip = ("featindex*", "*.log.txt")

    def for_input(self, path: Path) -> LibsvmRecipe:
        """With the field map this input uses, found beside it when not given, as an absolute
        path: what prepare saves, so scoring a file elsewhere reads the same fields."""
        options = self._options
        found = self._map_file(path)
        if found is None or options.field_map == found:
            return self
        return self.configure({"field_map": found})  # type: ignore[return-value]

    @property
    def _options(self) -> LibsvmOptions:
        assert isinstance(self.options, LibsvmOptions)
        return self.options

    def _map_file(self, path: Path) -> Path | None:
        given = self._options.field_map
        if given is not None:
            if not given.is_file():
                raise CtrDistillError(f"options.field_map: {given} is not a file")
            return given.resolve()
        path = Path(path)
        beside = (path if path.is_dir() else path.parent) / MAP_FILE
        return beside.resolve() if beside.is_file() else None

    def _field_map(self, path: Path) -> pl.DataFrame | None:
        file = self._map_file(path)
        return read_field_map(file) if file is not None else None

    def _chunks(self, path: Path, chunk_rows: int) -> Iterator[tuple[Path, int, _Chunk]]:
        """Each data file's parsed chunks, with the 1-based data row before the chunk."""
        field_of = self._field_map(path)
        for file in self.data_files(path):
            first_row = 0
            for lines in read_lines(file, chunk_rows):
                yield file, first_row, _parse(lines, file, first_row, self._options.skip_columns,
                                              field_of)
                first_row += len(lines)

    def default_schema(self, protocol: Protocol | None, path: Path | None = None) -> Schema | None:
        if path is None or not Path(path).exists():
            return None
        longest: dict[str, int] = {}
        forms: set[bool] = set()
        weighted = 0
        for _, _, chunk in self._chunks(path, 1 << 18):
            weighted += chunk.weighted
            if len(chunk.index):
                forms.add(chunk.field is not None)
            for name, (rows, _) in chunk.by_field().items():
                if len(rows):
                    longest[name] = max(longest.get(name, 0), int(np.bincount(rows).max()))
        if len(forms) > 1:
            raise CtrDistillError(f"{self.name}: {path} mixes index:value and field:index:value "
                                  "lines; give a schema or split the files")
        if weighted:
            logger.warning("%s: %d feature values other than 0 and 1 in %s are read as presence "
                           "(values are not kept)", self.name, weighted, path)
        if forms != {True}:
            logger.warning(
                "%s: %s has index:value lines and no field map, so all features form one "
                "mean-pooled bag field %r: field-interaction models (FM, DeepFM, DCN, ...) see "
                "one field. Give the feature-to-field map as options.field_map (iPinYou: its "
                "%s) for one field per field", self.name, path, BAG_FIELD, MAP_FILE)
            return Schema(label="label", fields=[FieldSpec(
                name=BAG_FIELD, kind="sequence", max_length=max(longest.get(BAG_FIELD, 0), 1))])
        return Schema(label="label", fields=[
            FieldSpec(name=name) if count <= 1
            else FieldSpec(name=name, kind="sequence", max_length=count)
            for name, count in sorted(longest.items(), key=lambda i: _field_order(i[0]))])

    def read(self, path: Path, schema: Schema, chunk_rows: int) -> Iterator[pl.DataFrame]:
        specs = {s.column: s for s in schema.fields}
        asked = [c for c in schema.raw_columns() if c != schema.label]
        unknown = [c for c in asked if c != BAG_FIELD and not c.startswith("f")]
        if unknown or schema.label != "label":
            raise CtrDistillError(
                f"recipe '{self.name}' has no column(s) {unknown or [schema.label]} for the "
                f"schema (available: label, {BAG_FIELD} or f<field>)")
        for file, first_row, chunk in self._chunks(path, chunk_rows):
            per_field = chunk.field is not None
            if len(chunk.index) and (BAG_FIELD in asked) == per_field:
                form = ("field:index:value" if chunk.triples
                        else "index:value" + (" with a field map" if per_field else ""))
                given = "f<field> fields" if per_field else f"one field {BAG_FIELD!r}"
                raise CtrDistillError(f"{file}: the schema's fields {asked} do not fit "
                                      f"{form} lines: those give {given}")
            columns = [chunk.label]
            by_field = chunk.by_field()
            for name in asked:
                rows, values = by_field.get(name, (np.zeros(0, np.int64),
                                                   pl.Series([], dtype=pl.String)))
                joined, counts = _joined(chunk.lines, rows, values, specs[name].separator)
                if specs[name].kind != "sequence" and (counts > 1).any():
                    raise CtrDistillError(
                        f"{file}: field '{name}' has several features at data row "
                        f"{first_row + int(np.argmax(counts > 1)) + 1} (1-based); make it a "
                        "sequence field in the schema")
                columns.append(joined.alias(name))
            yield pl.DataFrame(columns)


class LibfmRecipe(Recipe):
    """libfm text with a fixed layout, one row per line: `label idx:value ...` with one feature
    per field in field order; labels -1/1 (or 0/1). Field f<k> holds the index at position k."""

    extensions = (".libfm", ".txt")

    def __init__(self, name: str, description: str, num_fields: int,
                 protocols: dict[str, Protocol]) -> None:
        super().__init__(name, description, protocols)
        self.fields = [f"f{k}" for k in range(num_fields)]

    def default_schema(self, protocol: Protocol | None, path: Path | None = None) -> Schema:
        return Schema(label="label", fields=[FieldSpec(name=f) for f in self.fields])

    def read(self, path: Path, schema: Schema, chunk_rows: int) -> Iterator[pl.DataFrame]:
        available = ["label", *self.fields]
        missing = [c for c in schema.raw_columns() if c not in available]
        if missing:
            raise CtrDistillError(f"recipe '{self.name}' has no column(s) {missing} for the schema "
                                  f"(available: {', '.join(available)})")
        for file in self.data_files(path):
            first_row = 0
            for lines in read_lines(file, chunk_rows):
                frame = tokens(lines)
                counts = frame["features"].list.len()
                bad = counts != len(self.fields)
                if bad.any():
                    index = int(bad.arg_max())
                    raise CtrDistillError(
                        f"{file}: wrong number of columns at data row {first_row + index + 1} "
                        f"(1-based): expected {len(self.fields) + 1}, got {counts[index] + 1}: "
                        f"{lines['line'][index][:80]!r}")
                first_row += len(lines)
                index_of = pl.col("features").list
                yield frame.with_columns(
                    index_of.get(k).str.replace(r":.*$", "").alias(f)
                    for k, f in enumerate(self.fields)).select(schema.raw_columns())
