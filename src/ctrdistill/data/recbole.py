"""RecBole atomic files: `<name>.inter` (required), optional `<name>.user` and `<name>.item`.

Each is tab-separated (no quoting) with a header line of `name:type` columns, types `token`,
`token_seq` (space-separated tokens), `float` and `float_seq`. The input is the dataset
directory (`ml-100k/` holding `ml-100k.inter` ...; other files in it are listed in a warning) or
an `.inter` file (the side files are found beside it by name).

- A dataset's interactions may be split over several files, RecBole's benchmark files
  `<name>.<suffix>.inter` (`benchmark_filename: [train, valid, test]`); every one joins the same
  `<name>.user`/`<name>.item` and has the same columns. These are the recipe's data files: a
  files split (`ctrdistill.data.split_files`) gives each its split, a random one pools them in
  name order.

- User and item features are joined onto the interactions by the user and item id columns
  (options `user_id_field`, `item_id_field`; default `user_id`, `item_id`); an id missing from
  the side file gets missing features.
- The label is the `label_field` column (default `label`) where the `.inter` file has one, else
  `rating_field >= rating_threshold` (default `rating >= 4`, the usual CTR reading of ratings).
  The rating column is then no feature: it is the label.
- Default schema: every other column is a field: token -> categorical, token_seq -> sequence
  (separator " ", max_length 20), float -> numeric (as it is). float_seq columns are not used
  (one warning names them). The `time_field` (default `timestamp`, seconds) becomes `day` (days
  since 1970-01-01 UTC) for day splits, and the user id is the gAUC group.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import polars as pl
import pyarrow as pa
from pydantic import Field

from ctrdistill.config import StrictConfig
from ctrdistill.data.recipes import Protocol, Recipe, file_types
from ctrdistill.data.schema import FieldSpec, Schema
from ctrdistill.data.sources import printable, read_delimited, report_unused
from ctrdistill.errors import CtrDistillError

logger = logging.getLogger(__name__)

ARROW_TYPES = {"token": pa.string(), "token_seq": pa.string(), "float": pa.float64(),
               "float_seq": pa.string()}
HEADER_BYTES = 1 << 20


class RecboleOptions(StrictConfig):
    """Which RecBole columns play which part (RecBole's USER_ID_FIELD, LABEL_FIELD, ...)."""

    user_id_field: str = "user_id"
    item_id_field: str = "item_id"
    label_field: str = Field("label", description="the label column, where .inter has one")
    rating_field: str = Field("rating", description="otherwise the label is this column ...")
    rating_threshold: float = Field(4.0, description="... at or above this value")
    time_field: str | None = Field("timestamp", description="seconds since 1970 -> `day`")


@dataclass(frozen=True)
class _Atomic:
    """One atomic file and its header."""

    path: Path
    types: dict[str, str]  # column -> RecBole type, in file order

    @property
    def names(self) -> list[str]:
        return list(self.types)


def _atomic(path: Path) -> _Atomic:
    with pa.input_stream(str(path)) as stream:
        head = stream.read(HEADER_BYTES)
    if b"\n" not in head and len(head) == HEADER_BYTES:
        raise CtrDistillError(f"{path}: no header line in the first {HEADER_BYTES} bytes")
    try:
        line = head.split(b"\n", 1)[0].decode("utf8").rstrip("\r")
    except UnicodeDecodeError:
        raise CtrDistillError(f"{path}: the header line is not UTF-8 text") from None
    types: dict[str, str] = {}
    for cell in line.split("\t"):
        name, _, kind = cell.rpartition(":")
        if not name:
            raise CtrDistillError(
                f"{path}: header column {printable(cell, 40)!r} is not name:type (a RecBole "
                "atomic file starts with a line like 'user_id:token<TAB>item_id:token')")
        if kind not in ARROW_TYPES:
            raise CtrDistillError(f"{path}: column '{name}' has type {printable(kind, 20)!r}; "
                                  f"RecBole types are {', '.join(sorted(ARROW_TYPES))}")
        if name in types:
            raise CtrDistillError(f"{path}: column '{name}' appears twice in the header")
        types[name] = kind
    return _Atomic(path, types)


@dataclass(frozen=True)
class _Dataset:
    inters: list[_Atomic]  # in name order, all with the same columns
    user: _Atomic | None
    item: _Atomic | None

    @property
    def inter(self) -> _Atomic:
        """The first .inter file: its columns are every one's."""
        return self.inters[0]

    def files(self) -> list[Path]:
        return [a.path for a in (*self.inters, self.user, self.item) if a is not None]


def _names(inter: Path) -> list[str]:
    """The dataset names an .inter file may belong to: `x.inter`'s own, and for `n.s.inter`
    (RecBole's benchmark file of dataset `n`, split `s`) `n`."""
    stem = inter.name.removesuffix(".inter")
    return [stem, *([stem.rsplit(".", 1)[0]] if "." in stem else [])]


def _side_name(inters: list[Path]) -> str:
    """The name of the .user/.item files the .inter files join: the one name they all belong to;
    a lone file's own name where side files of that name exist."""
    if len(inters) == 1:
        names = _names(inters[0])
        folder = inters[0].parent
        return next((n for n in names if any((folder / f"{n}.{s}").is_file()
                                              for s in ("user", "item"))), names[0])
    shared = set.intersection(*(set(_names(p)) for p in inters))
    if not shared:
        raise CtrDistillError(
            f"recbole: several .inter files in {inters[0].parent} "
            f"({', '.join(p.name for p in inters)}) that are not one dataset's <name>.inter or "
            "<name>.<suffix>.inter; point --input at one")
    return shared.pop()


def _dataset(path: Path) -> _Dataset:
    path = Path(path)
    if path.is_dir():
        inters = sorted(p for p in path.glob("*.inter") if p.is_file())
        if not inters:
            raise CtrDistillError(f"recbole: no .inter file in {path}")
    elif path.is_file():
        if path.suffix != ".inter":
            raise CtrDistillError(f"recbole: {path} is not a .inter file (the input is the "
                                  "dataset directory or its .inter file)")
        inters = [path]
    else:
        raise CtrDistillError(f"input not found: {path}")
    name = _side_name(inters)
    atomics = [_atomic(p) for p in inters]
    for other in atomics[1:]:
        if other.types != atomics[0].types:
            raise CtrDistillError(f"recbole: {other.path.name} and {atomics[0].path.name} have "
                                  "different columns (a dataset's .inter files share a header)")
    side = [inters[0].with_name(f"{name}.{s}") for s in ("user", "item")]
    return _Dataset(atomics, *(_atomic(p) if p.is_file() else None for p in side))


class RecboleRecipe(Recipe):
    """RecBole atomic files (module docstring)."""

    def _options(self) -> RecboleOptions:
        assert isinstance(self.options, RecboleOptions)
        return self.options

    @property
    def file_splits(self) -> bool:
        return True

    def data_files(self, path: Path) -> list[Path]:
        """The .inter files; a files split gives each its split."""
        return [a.path for a in _dataset(path).inters]

    def announce_input(self, path: Path) -> None:
        if Path(path).is_dir():
            report_unused(Path(path), _dataset(path).files(), self.name)

    def _layout(self, data: _Dataset) -> tuple[str, dict[str, tuple[_Atomic, str]]]:
        """The label column and every other usable column -> (its file, its RecBole type);
        fails on a dataset whose columns clash or whose label cannot be found."""
        options = self._options()
        inter = data.inter.types
        if options.label_field in inter:
            label = options.label_field
        elif options.rating_field in inter:
            label = "label"
            if "label" in inter:
                raise CtrDistillError(f"recbole: {data.inter.path} has a 'label' column but "
                                      f"label_field is '{options.label_field}'")
        else:
            raise CtrDistillError(
                f"recbole: {data.inter.path} has neither a '{options.label_field}' column nor a "
                f"'{options.rating_field}' column to threshold (columns: {', '.join(inter)}; "
                "set options.label_field or options.rating_field)")
        skip = {options.label_field, options.rating_field, options.time_field}
        columns = {c: (data.inter, t) for c, t in inter.items() if c not in skip}
        for atomic, key in ((data.user, options.user_id_field),
                            (data.item, options.item_id_field)):
            if atomic is None:
                continue
            if atomic.types.get(key) != "token" or key not in inter:
                raise CtrDistillError(f"recbole: {atomic.path} and {data.inter.path} need a "
                                      f"'{key}:token' column to join on (set options."
                                      f"{'user' if atomic is data.user else 'item'}_id_field)")
            for column, kind in atomic.types.items():
                if column == key:
                    continue
                if column in columns or column in inter:
                    other = columns[column][0].path if column in columns else data.inter.path
                    raise CtrDistillError(f"recbole: column '{column}' is in both {other} and "
                                          f"{atomic.path}")
                columns[column] = (atomic, kind)
        return label, columns

    def default_schema(self, protocol: Protocol | None, path: Path | None = None) -> Schema | None:
        if path is None:
            return None
        options = self._options()
        data = _dataset(path)
        label, columns = self._layout(data)
        unused = [c for c, (_, kind) in columns.items() if kind == "float_seq"]
        if unused:
            logger.warning("recbole: float_seq columns are not used: %s", ", ".join(unused))
        kinds = {"token": "categorical", "token_seq": "sequence", "float": "numeric"}
        fields = [FieldSpec(name=c, kind=kinds[kind], separator=" ")
                  if kind == "token_seq" else FieldSpec(name=c, kind=kinds[kind])
                  for c, (_, kind) in columns.items() if kind != "float_seq"]
        return Schema(label=label, fields=fields,
                      group=options.user_id_field if options.user_id_field in columns else None,
                      day="day" if options.time_field in data.inter.types else None)

    def read(self, path: Path, schema: Schema, chunk_rows: int) -> Iterator[pl.DataFrame]:
        options = self._options()
        data = _dataset(path)
        label, columns = self._layout(data)
        wanted = schema.raw_columns()
        derived = options.label_field not in data.inter.types  # thresholded rating
        has_time = options.time_field is not None and options.time_field in data.inter.types
        available = [label, *columns, *(["day"] if has_time else [])]
        missing = [c for c in wanted if c not in available]
        if missing:
            raise CtrDistillError(f"recipe 'recbole' has no column(s) {missing} for the schema "
                                  f"(available: {', '.join(available)})")
        sides = []
        for atomic, key in ((data.user, options.user_id_field),
                            (data.item, options.item_id_field)):
            asked = [c for c in wanted if c in columns and columns[c][0] is atomic]
            if atomic is not None and asked:
                sides.append((self._side(atomic, key, asked, schema), key))
        keys = [k for _, k in sides]
        needed = [c for c in data.inter.names
                  if c in wanted or c in keys or (derived and c == options.rating_field)
                  or ("day" in wanted and c == options.time_field)]
        frames = chain.from_iterable(read_delimited(
            inter.path, "\t", inter.names, self._types(inter, schema), skip_rows=1,
            max_rows=chunk_rows, include_columns=needed, quote_char=None) for inter in data.inters)
        for frame in frames:
            if derived:
                frame = frame.with_columns(
                    (pl.col(options.rating_field) >= options.rating_threshold).cast(pl.Float64)
                    .alias("label"))
            if "day" in wanted:
                frame = frame.with_columns(
                    (pl.col(options.time_field) // 86_400).cast(pl.Int32, strict=False)
                    .alias("day"))
            for side, key in sides:
                frame = frame.join(side, on=key, how="left", maintain_order="left")
            yield frame.select(wanted)

    @staticmethod
    def _types(atomic: _Atomic, schema: Schema) -> dict[str, pa.DataType]:
        base = {c: ARROW_TYPES[t] for c, t in atomic.types.items()}
        return file_types(base, schema)

    def _side(self, atomic: _Atomic, key: str, asked: list[str], schema: Schema) -> pl.DataFrame:
        """A .user/.item table: one row per id (the first), the key and the asked columns."""
        types = self._types(atomic, schema) | {key: pa.string()}
        frames = list(read_delimited(atomic.path, "\t", atomic.names, types, skip_rows=1,
                                     include_columns=[key, *asked], quote_char=None))
        if not frames:  # a header without rows: no id has features
            raise CtrDistillError(f"{atomic.path}: no rows below the header")
        return pl.concat(frames).unique(key, keep="first", maintain_order=True).select(
            key, *asked)
