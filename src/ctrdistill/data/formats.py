"""Recipes for the official raw formats of the public CTR datasets.

Each recipe streams its format in bounded chunks with vectorised Polars expressions (never a
Python loop per row) and yields frames with exactly the schema's raw columns, label numeric 0/1:

- `criteo`: Kaggle `train.txt`: tab-separated, no header, label, I1-I13 (integers, may be empty or
  negative), C1-C26 (hex strings, may be empty).
- `avazu`: `train.csv` (or Kaggle's gzipped `train.gz`) with its header; `id` is not a field.
  Protocol x1 keeps `hour` (YYMMDDHH) as one categorical field (22 fields); x4 (and no protocol)
  replaces it with `hour_of_day`, `weekday` (Monday 0) and `is_weekend` (24 fields). Both get a
  `day` column (days since 2014-10-21, Avazu's first day, so any file or chunk of the dataset
  gets the same day numbers) for day splits.
- `frappe`: libfm text `label idx:1 ... idx:1` (labels -1/1), ten one-hot fields f0..f9.
- `libsvm`: libsvm/libfm `label idx:val ...` or libffm `label field:idx:val ...` lines with any
  number of features (see `ctrdistill.data.libsvm`).
- `recbole`: RecBole atomic files `.inter` with optional `.user`/`.item` (see
  `ctrdistill.data.recbole`).
- `movielens`: ml-100k `u.data` or ml-1m `ratings.dat`; click = rating >= 4; user and item
  features from the side files (`u.user`/`u.item`, `users.dat`/`movies.dat`) where they exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa

from ctrdistill.data.libsvm import LibfmRecipe, LibsvmOptions, LibsvmRecipe
from ctrdistill.data.recbole import RecboleOptions, RecboleRecipe
from ctrdistill.data.recipes import Protocol, Recipe, file_types, register_recipe
from ctrdistill.data.schema import FieldSpec, Schema
from ctrdistill.data.sources import read_delimited, read_lines, report_unused
from ctrdistill.errors import CtrDistillError

# ------------------------------------------------------------------------------------- helpers


def _check_columns(schema: Schema, available: list[str], recipe: str) -> None:
    """Fail before reading if the schema asks for a column this format cannot produce."""
    missing = [c for c in schema.raw_columns() if c not in available]
    if missing:
        raise CtrDistillError(f"recipe '{recipe}' has no column(s) {missing} for the schema "
                              f"(available: {', '.join(available)})")


def _split_lines(frame: pl.DataFrame, separator: str, names: list[str], file: Path,
                 first_row: int, regex_space: bool = False) -> pl.DataFrame:
    """Split each line into exactly len(names) string columns; one clear error otherwise."""
    line = pl.col("line")
    if regex_space:
        line = line.str.strip_chars().str.replace_all(r"\s+", " ")
    parts = frame.select(line.str.split(separator).alias("parts"))
    counts = parts["parts"].list.len()
    bad = counts != len(names)
    if bad.any():
        index = int(bad.arg_max())
        raise CtrDistillError(
            f"{file}: wrong number of columns at data row {first_row + index + 1} (1-based): "
            f"expected {len(names)}, got {counts[index]}: {frame['line'][index][:80]!r}")
    return parts.select(pl.col("parts").list.get(i).alias(n) for i, n in enumerate(names))


# -------------------------------------------------------------------------------------- criteo

CRITEO_NUMERIC = [f"I{i}" for i in range(1, 14)]
CRITEO_CATEGORICAL = [f"C{i}" for i in range(1, 27)]
CRITEO_COLUMNS = ["label", *CRITEO_NUMERIC, *CRITEO_CATEGORICAL]


def criteo_schema(bucketize: bool) -> Schema:
    transform = "bucketize" if bucketize else "log1p"
    return Schema(label="label", fields=[
        *(FieldSpec(name=c, kind="numeric", transform=transform) for c in CRITEO_NUMERIC),
        *(FieldSpec(name=c) for c in CRITEO_CATEGORICAL)])


class CriteoRecipe(Recipe):
    extensions = (".txt", ".tsv")

    def default_schema(self, protocol: Protocol | None, path: Path | None = None) -> Schema:
        return criteo_schema(bucketize=protocol is None or protocol.bucketize)

    def read(self, path: Path, schema: Schema, chunk_rows: int) -> Iterator[pl.DataFrame]:
        _check_columns(schema, CRITEO_COLUMNS, self.name)
        base = {"label": pa.float64(), **dict.fromkeys(CRITEO_NUMERIC, pa.float64()),
                **dict.fromkeys(CRITEO_CATEGORICAL, pa.string())}
        for file in self.data_files(path):
            yield from read_delimited(file, "\t", CRITEO_COLUMNS, file_types(base, schema),
                                      max_rows=chunk_rows, include_columns=schema.raw_columns(),
                                      quote_char=None)


# --------------------------------------------------------------------------------------- avazu

AVAZU_ID_COLUMNS = [
    "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id", "app_domain",
    "app_category", "device_id", "device_ip", "device_model", "device_type", "device_conn_type",
    *(f"C{i}" for i in range(14, 22))]
AVAZU_COLUMNS = ["id", "click", "hour", *AVAZU_ID_COLUMNS]
AVAZU_TIME_FIELDS = ["hour_of_day", "weekday", "is_weekend"]
AVAZU_FIRST_DAY = date(2014, 10, 21)


def avazu_schema(derive_time: bool) -> Schema:
    """BARS Avazu_x4 derives time fields from `hour`; Avazu_x1 keeps `hour` as it is."""
    columns = ([*AVAZU_ID_COLUMNS, *AVAZU_TIME_FIELDS] if derive_time
               else ["hour", *AVAZU_ID_COLUMNS])
    return Schema(label="click", day="day", fields=[FieldSpec(name=c) for c in columns])


class AvazuRecipe(Recipe):
    extensions = (".csv", ".gz")  # Kaggle's is train.gz
    skip = ("samplesubmission*",)  # beside it in Kaggle's download

    def default_schema(self, protocol: Protocol | None, path: Path | None = None) -> Schema:
        return avazu_schema(derive_time=protocol is None or protocol.derive_time)

    def read(self, path: Path, schema: Schema, chunk_rows: int) -> Iterator[pl.DataFrame]:
        derived = [*AVAZU_TIME_FIELDS, "day"]
        _check_columns(schema, [*AVAZU_COLUMNS, *derived], self.name)
        wanted = schema.raw_columns()
        needs_time = any(c in derived for c in wanted)
        columns = [c for c in AVAZU_COLUMNS if c in wanted or (c == "hour" and needs_time)]
        base = {c: pa.string() for c in AVAZU_COLUMNS} | {"click": pa.float64()}
        for file in self.data_files(path):
            for frame in read_delimited(file, ",", None, file_types(base, schema),
                                        max_rows=chunk_rows, include_columns=columns):
                if needs_time:
                    frame = self._time_columns(frame, file)
                yield frame.select(wanted)

    @staticmethod
    def _time_columns(frame: pl.DataFrame, file: Path) -> pl.DataFrame:
        hour = pl.col("hour").cast(pl.String)
        stamp = pl.when(hour.str.contains(r"^\d{8}$")).then(
            (hour + "00").str.to_datetime("%y%m%d%H%M", strict=False))
        out = frame.with_columns(stamp.alias("__time"))
        bad = out["__time"].is_null()
        if bad.any():
            value = frame["hour"][int(bad.arg_max())]
            raise CtrDistillError(f"{file}: invalid hour {value!r} (expected YYMMDDHH)")
        weekday = pl.col("__time").dt.weekday().cast(pl.Int32) - 1  # Monday 0, like Python
        return out.with_columns(
            pl.col("__time").dt.hour().cast(pl.Int32).alias("hour_of_day"),
            weekday.alias("weekday"),
            (weekday >= 5).cast(pl.Int32).alias("is_weekend"),
            (pl.col("__time").dt.date() - pl.lit(AVAZU_FIRST_DAY)).dt.total_days()
            .cast(pl.Int32).alias("day"),
        ).drop("__time")


# ----------------------------------------------------------------------------------- movielens

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western"]
MOVIELENS_USER_COLUMNS = ["age", "gender", "occupation", "zip"]
MOVIELENS_ITEM_COLUMNS = ["genres"]
MOVIELENS_COLUMNS = ["label", "user_id", "item_id", "rating", "timestamp", "day"]


@dataclass(frozen=True)
class _MovielensFiles:
    variant: str  # "ml-100k" or "ml-1m"
    ratings: Path
    users: Path | None
    items: Path | None


def _movielens_files(path: Path) -> _MovielensFiles:
    """Which MovieLens release: by file name (u.data, ratings.dat), else by the first line."""
    path = Path(path)
    if path.is_dir():
        found = [path / n for n in ("ratings.dat", "u.data") if (path / n).is_file()]
        if not found:
            raise CtrDistillError(f"movielens: none of ratings.dat, u.data in {path}")
        ratings = found[0]
    elif path.is_file():
        ratings = path
    else:
        raise CtrDistillError(f"input not found: {path}")
    if ratings.name == "ratings.dat":
        variant = "ml-1m"
    elif ratings.name == "u.data":
        variant = "ml-100k"
    else:
        with ratings.open("rb") as handle:
            head = handle.readline(4096)
        variant = "ml-1m" if b"::" in head else "ml-100k"
    users, items = ("users.dat", "movies.dat") if variant == "ml-1m" else ("u.user", "u.item")
    folder = ratings.parent
    return _MovielensFiles(variant, ratings,
                           folder / users if (folder / users).is_file() else None,
                           folder / items if (folder / items).is_file() else None)


class MovielensRecipe(Recipe):
    """MovieLens ml-100k / ml-1m ratings as clicks (rating >= 4), grouped by user for gAUC.
    `day` is days since 1970-01-01 (UTC) of the rating's timestamp."""

    def announce_input(self, path: Path) -> None:
        if Path(path).is_dir():
            files = _movielens_files(path)
            report_unused(Path(path), [p for p in (files.ratings, files.users, files.items) if p],
                          self.name)

    def default_schema(self, protocol: Protocol | None, path: Path | None = None) -> Schema:
        fields = [FieldSpec(name="user_id"), FieldSpec(name="item_id")]
        if path is not None and Path(path).exists():
            files = _movielens_files(path)
            if files.users:
                fields += [FieldSpec(name=c) for c in MOVIELENS_USER_COLUMNS]
            if files.items:
                fields.append(FieldSpec(name="genres", kind="sequence", max_length=6))
        return Schema(label="label", fields=fields, group="user_id", day="day")

    def read(self, path: Path, schema: Schema, chunk_rows: int) -> Iterator[pl.DataFrame]:
        files = _movielens_files(path)
        wanted = schema.raw_columns()
        available = list(MOVIELENS_COLUMNS)
        if files.users:
            available += MOVIELENS_USER_COLUMNS
        if files.items:
            available += MOVIELENS_ITEM_COLUMNS
        if any(c in wanted for c in [*MOVIELENS_USER_COLUMNS, *MOVIELENS_ITEM_COLUMNS]) and not (
                set(wanted) <= set(available)):
            side = "users.dat/movies.dat" if files.variant == "ml-1m" else "u.user/u.item"
            raise CtrDistillError(f"movielens: the schema asks for user/item features but "
                                  f"{side} is missing next to {files.ratings}")
        _check_columns(schema, available, self.name)
        users = self._users(files) if any(c in wanted for c in MOVIELENS_USER_COLUMNS) else None
        items = self._items(files) if "genres" in wanted else None
        for frame in self._ratings(files, chunk_rows):
            if users is not None:
                frame = frame.join(users, on="user_id", how="left", maintain_order="left")
            if items is not None:
                frame = frame.join(items, on="item_id", how="left", maintain_order="left")
            yield frame.select(wanted)

    def _ratings(self, files: _MovielensFiles, chunk_rows: int) -> Iterator[pl.DataFrame]:
        names = ["user_id", "item_id", "rating", "timestamp"]
        if files.variant == "ml-100k":
            types = {"user_id": pa.string(), "item_id": pa.string(), "rating": pa.float64(),
                     "timestamp": pa.string()}
            frames = read_delimited(files.ratings, "\t", names, types, max_rows=chunk_rows)
        else:
            frames = self._split_file(files.ratings, names, chunk_rows)
        first_row = 0
        for frame in frames:
            frame = frame.with_columns(
                pl.col("rating").cast(pl.Float64, strict=False),
                pl.col("timestamp").cast(pl.String).str.strip_chars()
                .cast(pl.Int64, strict=False))
            bad = frame["timestamp"].is_null()
            if bad.any():
                raise CtrDistillError(f"{files.ratings}: missing or non-integer timestamp at data "
                                      f"row {first_row + int(bad.arg_max()) + 1} (1-based)")
            first_row += len(frame)
            yield frame.with_columns(
                (pl.col("rating") >= 4).cast(pl.Float64).alias("label"),
                (pl.col("timestamp") // 86_400).cast(pl.Int32).alias("day"))

    @staticmethod
    def _split_file(file: Path, names: list[str], chunk_rows: int,
                    encoding: str = "utf8") -> Iterator[pl.DataFrame]:
        """A `::`-separated ml-1m file, streamed."""
        first_row = 0
        for lines in read_lines(file, chunk_rows, encoding):
            yield _split_lines(lines, "::", names, file, first_row)
            first_row += len(lines)

    @staticmethod
    def _unique(frame: pl.DataFrame, key: str) -> pl.DataFrame:
        """One row per id (the first), so a join never duplicates ratings."""
        return frame.with_columns(pl.col(key).str.strip_chars()).unique(
            key, keep="first", maintain_order=True)

    def _users(self, files: _MovielensFiles) -> pl.DataFrame:
        assert files.users is not None
        if files.variant == "ml-100k":  # id|age|gender|occupation|zip
            names = ["user_id", "age", "gender", "occupation", "zip"]
            frames = read_delimited(files.users, "|", names, dict.fromkeys(names, pa.string()),
                                    encoding="latin-1")
        else:  # id::gender::age::occupation::zip
            names = ["user_id", "gender", "age", "occupation", "zip"]
            frames = self._split_file(files.users, names, 1 << 20, "latin-1")
        return self._unique(pl.concat(list(frames)), "user_id").select(
            "user_id", *MOVIELENS_USER_COLUMNS)

    def _items(self, files: _MovielensFiles) -> pl.DataFrame:
        assert files.items is not None
        if files.variant == "ml-100k":  # id|title|release|video release|url|19 genre flags
            names = ["item_id", "title", "release", "video_release", "url", *ML100K_GENRES]
            lines = pl.concat(list(read_lines(files.items, 1 << 20, "latin-1")))
            flags = _split_lines(lines, "|", names, files.items, 0)
            genres = pl.concat_str(
                [pl.when(pl.col(g).str.strip_chars() == "1").then(pl.lit(g))
                 for g in ML100K_GENRES], separator="|", ignore_nulls=True)
            frame = flags.select("item_id", genres.alias("genres"))
        else:  # id::title::Genre|Genre
            frame = pl.concat(list(self._split_file(
                files.items, ["item_id", "title", "genres"], 1 << 20, "latin-1")))
        return self._unique(frame, "item_id").select("item_id", "genres")


# -------------------------------------------------------------------------------- registration

register_recipe(CriteoRecipe(
    "criteo", "Criteo Kaggle train.txt (tab-separated, no header, label I1-I13 C1-C26)",
    {"x1": Protocol((0.7, 0.2, 0.1), 1, False, "7:2:1, min count 1, log1p numerics"),
     "x4": Protocol((0.8, 0.1, 0.1), 10, True, "8:1:1, min count 10, bucketised numerics")}))
register_recipe(AvazuRecipe(
    "avazu", "Avazu train.csv (header; id dropped; x4: hour -> hour_of_day, weekday, is_weekend)",
    {"x1": Protocol((0.7, 0.1, 0.2), 1, False, "7:1:2, min count 1, 22 fields, hour as is"),
     "x4": Protocol((0.8, 0.1, 0.1), 2, False, "8:1:1, min count 2, hour -> hour_of_day, "
                    "weekday, is_weekend", derive_time=True)}))
register_recipe(LibfmRecipe(
    "frappe", "Frappe libfm text (labels -1/1, 10 one-hot fields f0..f9)", 10,
    {"x1": Protocol((0.7, 0.2, 0.1), 1, False, "7:2:1, min count 1")}))
register_recipe(LibsvmRecipe(
    "libsvm", "libsvm/libfm `label idx:val ...` or libffm `label field:idx:val ...` text, any "
    "number of features per line; labels 0/1 or -1/+1", options=LibsvmOptions()))
register_recipe(RecboleRecipe(
    "recbole", "RecBole atomic files: <name>.inter, or benchmark files <name>.train.inter, "
    "<name>.valid.inter, <name>.test.inter, with optional .user/.item (tab-separated, name:type "
    "header); label from label or rating >= 4", options=RecboleOptions()))
register_recipe(MovielensRecipe(
    "movielens", "MovieLens ml-100k u.data or ml-1m ratings.dat; click = rating >= 4",
    {"x1": Protocol((0.7, 0.2, 0.1), 1, False, "7:2:1, min count 1")}))
