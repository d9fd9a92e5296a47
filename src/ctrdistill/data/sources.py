"""Streaming readers of raw tables: CSV/TSV through PyArrow's incremental reader, Parquet by row
groups. Each yields Polars frames of bounded size; reader errors become one clear line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ctrdistill.errors import CtrDistillError

BLOCK_BYTES = 16 << 20


def raw_files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """A file, or the files of a directory with one of the suffixes, sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in suffixes)
        if files:
            return files
        raise CtrDistillError(f"no {'/'.join(suffixes)} files in {path}")
    raise CtrDistillError(f"input not found: {path}")


def read_delimited(
    path: Path,
    delimiter: str,
    column_names: list[str] | None,
    column_types: dict[str, pa.DataType],
    skip_rows: int = 0,
    max_rows: int | None = None,
    include_columns: list[str] | None = None,
    encoding: str = "utf8",
) -> Iterator[pl.DataFrame]:
    """Stream a delimited text file. `column_names` None means the first line is a header.

    Frames have at most `max_rows` rows; `include_columns` (default all) are the only columns
    converted, so an unused column can never fail type inference; `encoding` is the file's.
    """
    if path.stat().st_size == 0:
        raise CtrDistillError(f"{path}: file is empty")
    read_options = pacsv.ReadOptions(column_names=column_names, block_size=BLOCK_BYTES,
                                     skip_rows=skip_rows, encoding=encoding)
    parse_options = pacsv.ParseOptions(delimiter=delimiter, quote_char=False if delimiter == "\t"
                                       else '"')
    convert_options = pacsv.ConvertOptions(column_types=column_types, strings_can_be_null=True,
                                           quoted_strings_can_be_null=True,
                                           include_columns=include_columns or [])
    try:
        reader = pacsv.open_csv(path, read_options, parse_options, convert_options)
        for batch in reader:
            if batch.num_rows:
                frame = pl.from_arrow(pa.Table.from_batches([batch]))
                assert isinstance(frame, pl.DataFrame)
                if max_rows is None or len(frame) <= max_rows:
                    yield frame
                else:
                    yield from frame.iter_slices(max_rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowKeyError) as error:
        raise CtrDistillError(f"{path}: {_arrow_message(error)}") from None


def read_parquet(path: Path, columns: list[str] | None, batch_rows: int) -> Iterator[pl.DataFrame]:
    try:
        file = pq.ParquetFile(path)
        missing = sorted(set(columns or []) - set(file.schema_arrow.names))
        if missing:
            raise CtrDistillError(f"{path}: missing columns {missing}")
        for batch in file.iter_batches(batch_size=batch_rows, columns=columns):
            yield pl.from_arrow(pa.Table.from_batches([batch]))  # type: ignore[misc]
    except pa.ArrowInvalid as error:
        raise CtrDistillError(f"{path}: {_arrow_message(error)}") from None


def _arrow_message(error: Exception) -> str:
    text = str(error).strip().splitlines()[0]
    if "in include_columns does not exist" in text:
        return f"missing column {text.split()[1]}"
    if "Empty CSV file" in text:
        return "file is empty"
    if "Expected" in text and "columns" in text:
        return f"wrong number of columns: {text}"
    if "conversion error" in text:
        return f"non-numeric value in a numeric column: {text}"
    return text
