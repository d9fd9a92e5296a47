"""Streaming readers of raw tables: delimited text in blocks of whole rows, each parsed by PyArrow's
CSV parser, Parquet by row groups. Each yields Polars frames of bounded size; reader errors become
one clear line that names the file, the 1-based data row (header and comment lines not counted)
and the column, and never carries control characters from the data.

Directory inputs, one rule for every recipe:

- A single-table recipe (criteo, avazu, frappe, libsvm, csv, tsv, parquet, synthetic) reads a
  directory as every file directly inside it whose name ends with one of the recipe's data
  extensions, optionally followed by `.gz`, in name order. Names starting with `.` or `_`
  (`.DS_Store`, Spark's `_SUCCESS`, Hadoop's `.part-0.crc`) and the recipe's companion files
  (synthetic: `synth.json`) are skipped silently; every other file is skipped too and named in
  one warning: another extension, or a data extension on a name that says it is not data
  (README, LICENSE; avazu: `sampleSubmission*`; libsvm: `featindex*`, a feature-to-field map,
  and `*.log.txt`, iPinYou's raw logs). A subfolder is an error naming it (it is not
  searched); a directory without a data file is an error.
- A multi-table recipe (movielens, recbole) reads a directory as one dataset whose files it
  knows by name (movielens: `u.data` or `ratings.dat` with their side files; recbole: its
  `*.inter` files, one or RecBole's benchmark files `<name>.<suffix>.inter`, with the
  `<name>.user`/`.item` they all join); the other files in it are listed in one warning.
- A file input is read as it is, whatever its extension, unless its name says it is not data
  (the patterns above): then it is an error. Tar and zip archives are refused with a hint to
  extract them first.
"""

from __future__ import annotations

import codecs
import fnmatch
import logging
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ctrdistill.errors import CtrDistillError
from ctrdistill.files import REPLACE, reading

logger = logging.getLogger(__name__)

BLOCK_BYTES = 16 << 20
# PyArrow's default null spellings minus those of NaN, which it then reads as the float NaN:
# prepare counts a NaN as a non-finite value, where a null would pass as an ordinary missing one
NULL_VALUES = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN", "N/A",
               "NA", "NULL", "n/a", "null"]
HIDDEN_PREFIXES = (".", "_")


def printable(text: str, limit: int = 120) -> str:
    """`text` safe for a one-line message: control characters escaped, long text cut."""
    safe = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return safe + ("..." if len(text) > limit else "")


def _matches(name: str, extensions: tuple[str, ...]) -> bool:
    return any(name.endswith(ext) or name.endswith(ext + ".gz") for ext in extensions)


def _pattern(extensions: tuple[str, ...]) -> str:
    return ", ".join(f"*{e}" + ("" if e == ".gz" else f", *{e}.gz") for e in extensions)


# beside data files in any recipe's directory, whatever their extension
NOT_DATA = ("readme*", "license*", "*.md", "*.crc")


def not_data(name: str, patterns: tuple[str, ...] = ()) -> bool:
    """Whether a file's name says it is not data (case-insensitive glob patterns)."""
    lower = name.lower()
    return any(fnmatch.fnmatchcase(lower, p) for p in (*NOT_DATA, *patterns))


def _scan(path: Path, recipe: str, extensions: tuple[str, ...], companions: tuple[str, ...],
          skip: tuple[str, ...]) -> tuple[list[Path], list[str]]:
    """A directory's data files, and the names skipped as not data (hidden ones left out)."""
    files, skipped = [], []
    for entry in sorted(path.iterdir()):
        name = entry.name
        if name.startswith(HIDDEN_PREFIXES) or name in companions:
            continue
        if entry.is_dir():
            raise CtrDistillError(f"{path}: subfolder {name!r} in the input directory "
                                  "(directories are not searched recursively)")
        if _matches(name, extensions) and not not_data(name, skip):
            files.append(entry)
        else:
            skipped.append(name)
    if not files:
        raise CtrDistillError(f"{path}: no data files of recipe '{recipe}' "
                              f"({_pattern(extensions)})" + (
                                  f"; not data: {', '.join(skipped)}" if skipped else ""))
    return files, skipped


def data_files(path: Path, recipe: str, extensions: tuple[str, ...],
               companions: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> list[Path]:
    """A file input as it is, or a directory's data files by the rule of the module docstring;
    `skip`: the recipe's own patterns of files that are not data."""
    path = Path(path)
    if path.is_file():
        if not_data(path.name, skip):
            raise CtrDistillError(f"{path} is not a data file of recipe '{recipe}' (by its name); "
                                  "point --input at the data file or its directory")
        return [path]
    if not path.is_dir():
        raise CtrDistillError(f"input not found: {path}")
    return _scan(path, recipe, extensions, companions, skip)[0]


def report_skipped(path: Path, recipe: str, extensions: tuple[str, ...],
                   companions: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> None:
    """One warning naming the files of a directory input that are skipped as not data."""
    path = Path(path)
    if path.is_dir():
        files, skipped = _scan(path, recipe, extensions, companions, skip)
        if skipped:
            logger.warning("%s: reading %d data file(s) from %s; skipped, not data: %s", recipe,
                           len(files), path, ", ".join(skipped))


def report_unused(folder: Path, used: list[Path], recipe: str) -> None:
    """One warning naming the files of a multi-table dataset directory that are not read."""
    used_names = {p.name for p in used}
    unused = sorted(p.name for p in folder.iterdir() if p.name not in used_names
                    and not p.name.startswith(HIDDEN_PREFIXES))
    if unused:
        logger.warning("%s: reading %s from %s; not used: %s", recipe,
                       ", ".join(sorted(used_names)), folder, ", ".join(unused))


def check_data_file(path: Path) -> None:
    """Fail early, in one line, on an input no reader could make sense of."""
    if not path.is_file():
        raise CtrDistillError(f"input not found: {path}")
    if path.stat().st_size == 0:
        raise CtrDistillError(f"{path}: file is empty")
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            first = archive.next()
        inside = f" (first member: {printable(first.name)})" if first is not None else ""
        flag = "-xzf" if path.name.endswith((".gz", ".tgz")) else "-xf"
        raise CtrDistillError(
            f"{path} is a tar archive{inside}; extract it first (tar {flag} {path.name}) and point "
            "--input at the data file inside (for Criteo's dac.tar.gz: train.txt)")
    with path.open("rb") as handle:
        if handle.read(4) == b"PK\x03\x04":
            raise CtrDistillError(f"{path} is a zip archive; extract it first (unzip {path.name}) "
                                  "and point --input at the data file inside")


def _blocks(path: Path, quote_char: str | None, comment: str | None,
            encoding: str) -> Iterator[bytes]:
    """The file, decompressed by its extension, as UTF-8 blocks of whole rows: each block ends at
    a line end outside quotes, lines starting with `comment` are removed (by one regular
    expression a block). The bytes are read here, by PyArrow's own file reader: a Python stream
    handed to PyArrow's CSV reader can abort the process at exit after a read error."""
    comment_line = (re.compile(rb"^" + re.escape(comment.encode(encoding)) + rb"[^\n]*\n?",
                               re.MULTILINE) if comment else None)
    quote = quote_char.encode() if quote_char else None
    utf8 = codecs.lookup(encoding).name == "utf-8"
    carry = b""
    with reading(path, REPLACE), pa.input_stream(str(path), compression="detect") as source:
        while True:
            block = source.read(BLOCK_BYTES)
            text = carry + block
            end = text.rfind(b"\n") + 1 if block else len(text)
            rows = text[:end]
            if comment_line is not None:
                rows = comment_line.sub(b"", rows)
            cut = len(rows)
            if quote and block and len(carry) < 4 * BLOCK_BYTES:  # else: PyArrow reports it
                open_quotes = rows.count(quote) % 2
                while open_quotes and cut:  # inside a quoted value: cut at an earlier line end
                    previous = rows.rfind(b"\n", 0, cut - 1) + 1
                    open_quotes ^= rows.count(quote, previous, cut) % 2
                    cut = previous
            carry = rows[cut:] + text[end:]
            if cut:
                yield rows[:cut] if utf8 else rows[:cut].decode(encoding).encode()
            if not block:
                return


def read_delimited(
    path: Path,
    delimiter: str,
    column_names: list[str] | None,
    column_types: dict[str, pa.DataType],
    skip_rows: int = 0,
    max_rows: int | None = None,
    include_columns: list[str] | None = None,
    encoding: str = "utf8",
    quote_char: str | None = '"',
    comment: str | None = None,
) -> Iterator[pl.DataFrame]:
    """Stream a delimited text file. `column_names` None means the first line is a header.

    Frames have at most `max_rows` rows; `include_columns` (default all) are the only columns
    converted, so an unused column can never fail type inference; `encoding` is the file's;
    `quote_char` None turns quoting off; lines starting with `comment` are skipped. Each block
    is parsed on its own, so an error is located by parsing that block again on one thread.
    """
    check_data_file(path)
    parse_options = pacsv.ParseOptions(delimiter=delimiter,
                                       quote_char=False if quote_char is None else quote_char)
    convert_options = pacsv.ConvertOptions(
        column_types=column_types, null_values=NULL_VALUES, strings_can_be_null=True,
        quoted_strings_can_be_null=True, include_columns=include_columns or [])
    names = column_names
    rows_before = 0
    message = None
    for index, block in enumerate(_blocks(path, quote_char, comment, encoding)):
        first = index == 0  # skipped rows and the header are in the first block
        read_options = pacsv.ReadOptions(column_names=names, skip_rows=skip_rows if first else 0,
                                         block_size=1 << 22)
        try:
            if names is None:
                names = _header(block, read_options, parse_options)
                twice = sorted({n for n in names if names.count(n) > 1
                                and (include_columns is None or n in include_columns)})
                if twice:  # PyArrow would silently read the first of them
                    message = (f"the header names column '{printable(twice[0])}' "
                               f"{names.count(twice[0])} times; which one is meant is unclear: "
                               "rename the others")
                    break
            if first and (missing := [c for c in include_columns or [] if c not in names]):
                # Checked here, not left to read_csv: a threaded read that fails can leave
                # Arrow's pool busy at exit, which aborts the interpreter (apache/arrow#34314).
                message = f"missing column '{missing[0]}'" + (
                    f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                break
            table = pacsv.read_csv(pa.BufferReader(block), read_options, parse_options,
                                   convert_options)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowKeyError) as error:
            message = _arrow_message(
                str(error), block, read_options, parse_options, convert_options, names or [],
                rows_before - (skip_rows + (column_names is None) if first else 0))
            break
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        rows_before += len(frame)
        if len(frame):
            yield from frame.iter_slices(max_rows) if max_rows else [frame]
    if message is not None:  # raised outside the handler: PyArrow's error is released
        raise CtrDistillError(f"{path}: {message}")


def _header(block: bytes, read_options: pacsv.ReadOptions,
            parse_options: pacsv.ParseOptions) -> list[str]:
    """The column names of the block's header line, read without converting any value."""
    options = pacsv.ReadOptions(skip_rows=read_options.skip_rows, block_size=1 << 22)
    convert = pacsv.ConvertOptions(column_types={}, check_utf8=False,
                                   include_columns=[], null_values=NULL_VALUES)
    with pacsv.open_csv(pa.BufferReader(block), options, parse_options, convert) as reader:
        return reader.schema.names


def read_lines(file: Path, chunk_rows: int, encoding: str = "utf8") -> Iterator[pl.DataFrame]:
    """Whole lines (blank lines skipped) as one string column `line`, for formats whose separator
    PyArrow's CSV reader cannot take (libsvm's variable spacing, MovieLens' `::`)."""
    # ASCII's unit separator never occurs in these text formats; quoting is off
    yield from read_delimited(file, "\x1f", ["line"], {"line": pa.string()}, max_rows=chunk_rows,
                              encoding=encoding, quote_char=None)


_PARSE_ERROR = re.compile(r"Row #(\d+): Expected (\d+) columns, got (\d+): (.*)", re.DOTALL)
_CONVERSION_ERROR = re.compile(
    r"In CSV column #(\d+): Row #(\d+): CSV conversion error to (\w+): (.*)", re.DOTALL)


def _arrow_message(text: str, block: bytes, read_options: pacsv.ReadOptions,
                   parse_options: pacsv.ParseOptions, convert_options: pacsv.ConvertOptions,
                   names: list[str], offset: int) -> str:
    """PyArrow's error as one line with the 1-based data row (the block's row number on one
    thread, where PyArrow's errors carry it, plus `offset`) and the column's name."""
    text = text.strip()
    first = text.splitlines()[0] if text else "unreadable file"
    if "in include_columns does not exist" in first:
        return f"missing column {first.split()[1]}"
    if "Empty CSV file" in first:
        return "file is empty"
    if not ("Expected" in first and "columns" in first) and "conversion error" not in first:
        return printable(text)
    located = ""
    try:
        one_thread = pacsv.ReadOptions(column_names=read_options.column_names,
                                       skip_rows=read_options.skip_rows,
                                       block_size=read_options.block_size, use_threads=False)
        pacsv.read_csv(pa.BufferReader(block), one_thread, parse_options, convert_options)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowKeyError) as error:
        located = str(error)
    parse = _PARSE_ERROR.search(located)
    if parse:
        row, expected, got, snippet = parse.groups()
        return (f"wrong number of columns at data row {int(row) + offset} (1-based): "
                f"expected {expected}, got {got}: {snippet[:80]!r}")
    conversion = _CONVERSION_ERROR.search(located)
    if conversion:
        index, row, target, detail = conversion.groups()
        name = names[int(index)] if int(index) < len(names) else f"#{int(index) + 1}"
        where = f"column '{name}' at data row {int(row) + offset} (1-based)"
        if target == "string":
            return f"text not valid in the file's encoding in {where}"
        value = printable(detail.removeprefix("invalid value "), 80)
        return f"non-numeric value in a numeric {where}: {value}"
    return printable(text)  # the second read did not fail the same way: PyArrow's own words


def read_parquet(path: Path, columns: list[str] | None, batch_rows: int) -> Iterator[pl.DataFrame]:
    check_data_file(path)
    with reading(path, REPLACE):
        file = pq.ParquetFile(path)
        missing = sorted(set(columns or []) - set(file.schema_arrow.names))
        if missing:
            raise CtrDistillError(f"{path}: missing columns {missing}")
        # Polars' own reader: 4x less CPU than PyArrow batches converted to Polars
        scan = pl.scan_parquet(path)
        if columns is not None:
            scan = scan.select(columns)
        for start in range(0, file.metadata.num_rows, batch_rows):
            yield scan.slice(start, batch_rows).collect()
