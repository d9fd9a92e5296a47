"""The generic csv/tsv recipes' layout options (delimiter, header, columns, quote_char, comment),
checked against Python's csv module on a pipe-delimited export without a header."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl
import pytest

import ctrdistill.data.sources as sources
from ctrdistill.data.prepare import SPLITS, PrepareConfig, prepare
from ctrdistill.errors import CtrDistillError

EVENTS = Path(__file__).parent / "fixtures" / "raw" / "csv" / "events.txt"
COLUMNS = ["click", "ad", "title", "price", "tags"]
OPTIONS = {"delimiter": "|", "header": False, "columns": COLUMNS, "quote_char": "'",
           "comment": "#"}
SCHEMA = {"label": "click", "fields": [
    {"name": "ad"}, {"name": "title"}, {"name": "price", "kind": "numeric", "fill": -1},
    {"name": "tags", "kind": "sequence", "separator": ";", "max_length": 2}]}


def run(tmp_path: Path, input: Path, options: dict, schema: dict = SCHEMA, name: str = "out",
        recipe: str = "csv"):
    config = PrepareConfig.model_validate({
        "recipe": recipe, "input": input, "output": tmp_path / name, "schema": schema,
        "options": options, "split": {"ratios": [1, 0, 0]}})
    return prepare(config, show_progress=False), tmp_path / name


def rows_of(out: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(f) for s in SPLITS
                      for f in sorted((out / s).glob("*.parquet"))]).sort("row_id")


def vocab(out: Path, owner: str) -> dict[str, int]:
    frame = pl.read_parquet(out / "vocab" / f"{owner}.parquet")
    return dict(zip(frame["value"], frame["id"], strict=True))


def expected_rows() -> list[list[str]]:
    text = "".join(line for line in EVENTS.read_text().splitlines(keepends=True)
                   if not line.startswith("#"))
    return list(csv.reader(io.StringIO(text), delimiter="|", quotechar="'"))


def test_fixture_has_quoted_delimiters_doubled_quotes_comments_and_blanks():
    raw = EVENTS.read_text()
    rows = expected_rows()
    assert raw.count("\n#") >= 2 and raw.startswith("#")
    assert {"shoes|red", "it's new"} <= {r[2] for r in rows}
    assert "" in {r[3] for r in rows} and "" in {r[4] for r in rows}


def test_pipe_delimited_without_header_with_quotes_and_comments(tmp_path):
    rows = expected_rows()
    feature_map, out = run(tmp_path, EVENTS, OPTIONS)
    assert [(f.name, f.kind) for f in feature_map.fields] == [
        ("ad", "categorical"), ("title", "categorical"), ("price", "numeric"),
        ("tags", "sequence")]
    titles = {r[2] for r in rows}
    assert feature_map.fields[1].vocab_size == len(titles) + 2
    assert feature_map.fields[3].vocab_size == len({t for r in rows for t in r[4].split(";")
                                                    if t}) + 2
    encoded = rows_of(out)
    assert len(encoded) == len(rows) == 36  # comment lines are not rows
    assert encoded["label"].to_list() == [float(r[0]) for r in rows]
    ids = vocab(out, "title")
    assert encoded["title"].to_list() == [ids[r[2]] for r in rows]
    assert encoded["price"].to_list() == pytest.approx([float(r[3] or -1) for r in rows])
    tags = vocab(out, "tags")
    for index in (0, 1, 2):
        expected = [tags[t] for t in rows[index][4].split(";") if t]
        assert encoded["tags"][index].to_list() == [*expected, 0, 0][:2]


def test_header_after_comments_and_columns_replacing_a_header(tmp_path):
    body = [line for line in EVENTS.read_text().splitlines() if not line.startswith("#")]
    with_header = tmp_path / "with_header.csv"
    with_header.write_text("\n".join(["# exported", "click|ad|title|price|tags", *body]) + "\n")
    options = {"delimiter": "|", "quote_char": "'", "comment": "#"}
    _, a = run(tmp_path, with_header, options, name="a")
    renamed = tmp_path / "renamed.csv"
    renamed.write_text("\n".join(["c0|c1|c2|c3|c4", *body]) + "\n")
    _, b = run(tmp_path, renamed, {**options, "columns": COLUMNS}, name="b")
    _, c = run(tmp_path, EVENTS, OPTIONS, name="c")
    assert rows_of(a).equals(rows_of(c)) and rows_of(b).equals(rows_of(c))


def test_quoting_off_keeps_quotes_as_text(tmp_path):
    input = tmp_path / "q.tsv"
    input.write_text("label\ta\n1\t'x\n0\t\"y\"\n")
    schema = {"label": "label", "fields": [{"name": "a"}]}
    _, out = run(tmp_path, input, {}, schema, recipe="tsv")
    assert set(vocab(out, "a")) == {"'x", '"y"'}  # tsv: quoting off by default
    _, out = run(tmp_path, input, {"quote_char": '"'}, schema, recipe="tsv", name="quoted")
    assert set(vocab(out, "a")) == {"'x", "y"}


def test_errors_count_data_rows_not_comment_lines(tmp_path):
    lines = EVENTS.read_text().splitlines()
    lines[14] = "1|ad1|plain|cheap|"  # the 12th data row: two comment lines and one more above
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(CtrDistillError, match=r"bad\.txt: non-numeric value in a numeric column "
                                              r"'price' at data row 12 \(1-based\): 'cheap'"):
        run(tmp_path, bad, OPTIONS)


OPTION_ERRORS = [
    ({"delimeter": ";"}, r"recipe 'csv' options: unknown key 'delimeter'; did you mean "
     r"'delimiter'\? \(valid: columns, comment, delimiter, header, quote_char\)"),
    ({"header": False}, r"columns are required when header is false"),
    ({"delimiter": "||"}, r"options: delimiter: String should have at most 1 character"),
    ({"quote_char": "|", "delimiter": "|"}, r"quote_char and delimiter must differ"),
    ({"columns": ["a", "a"], "header": False}, r"duplicate column names: \['a'\]"),
]


@pytest.mark.parametrize(("options", "message"), OPTION_ERRORS)
def test_option_mistakes_are_one_clear_error(tmp_path, options, message):
    with pytest.raises(CtrDistillError, match=message):
        run(tmp_path, EVENTS, options)
    assert not (tmp_path / "out").exists()


def test_a_recipe_without_options_refuses_them(tmp_path):
    config = PrepareConfig.model_validate({
        "recipe": "criteo", "input": EVENTS, "output": tmp_path / "out", "options": {"x": 1}})
    with pytest.raises(CtrDistillError, match=r"recipe 'criteo' takes no options \(given: x\)"):
        prepare(config, show_progress=False)


def test_missing_column_names_the_column(tmp_path):
    options = {**OPTIONS, "columns": ["click", "ad", "title", "cost", "tags"]}
    with pytest.raises(CtrDistillError, match=r"events\.txt: missing column 'price'"):
        run(tmp_path, EVENTS, options)


def test_blocks_end_outside_quoted_line_breaks_and_drop_comments(tmp_path, monkeypatch):
    """Files are parsed block by block: a block never ends inside a quoted value, whatever the
    block size, and comment lines are dropped in every block."""
    lines = ["label,note,n"]
    for i in range(60):
        note = f'"line one\nline ""{i % 4}"", two"' if i % 3 == 0 else f"plain{i % 5}"
        lines.append(f"{i % 2},{note},{i}")
        if i % 7 == 0:
            lines.append("# a comment, with \"a quote")
    input = tmp_path / "notes.csv"
    input.write_text("\n".join(lines) + "\n")
    schema = {"label": "label", "fields": [{"name": "note"}, {"name": "n", "kind": "numeric"}]}
    _, whole = run(tmp_path, input, {"comment": "#"}, schema, name="whole")
    monkeypatch.setattr(sources, "BLOCK_BYTES", 48)
    _, small = run(tmp_path, input, {"comment": "#"}, schema, name="small")
    assert rows_of(whole).equals(rows_of(small))
    text = "".join(line + "\n" for line in lines if not line.startswith("#"))
    expected = list(csv.reader(io.StringIO(text)))[1:]
    notes = vocab(small, "note")
    assert rows_of(small)["note"].to_list() == [notes[r[1]] for r in expected]
    assert rows_of(small)["n"].to_list() == [float(r[2]) for r in expected]


def test_an_unbalanced_quote_is_an_error_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "BLOCK_BYTES", 64)
    input = tmp_path / "open.csv"
    input.write_text("label,a,n\n1,\"x,3\n" + "".join(f"0,y{i},{i}\n" for i in range(300)))
    schema = {"label": "label", "fields": [{"name": "a"}, {"name": "n", "kind": "numeric"}]}
    with pytest.raises(CtrDistillError, match=r"open\.csv: "):
        run(tmp_path, input, {}, schema)
