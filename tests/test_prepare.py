"""`prepare`: bad input fails with one clear message and leaves nothing behind; the documented
encoding rules (OOV, min count, fill, shared vocabularies, sequences, standardize, day splits,
chunking, overwrite) hold on small hand-made tables."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import ctrdistill.data.prepare as prepare_module
import ctrdistill.data.sources as sources
from conftest import all_rows, read_split
from ctrdistill.config import validate_config
from ctrdistill.data.prepare import SPLITS, PrepareConfig, prepare
from ctrdistill.data.synthetic import SynthConfig, write_synthetic
from ctrdistill.errors import CtrDistillError

RAW = Path(__file__).parent / "fixtures" / "raw"
SCHEMA = {"label": "label", "fields": [{"name": "a"}, {"name": "n", "kind": "numeric"}]}


def config(tmp_path: Path, input: Path, **extra) -> PrepareConfig:
    data = {"recipe": "csv", "input": input, "output": tmp_path / "out", "schema": SCHEMA}
    data.update(extra)
    return validate_config(PrepareConfig, {k: v for k, v in data.items() if v is not None},
                           "prepare")


def run(tmp_path: Path, input: Path, **extra):
    cfg = config(tmp_path, input, **extra)
    return prepare(cfg, show_progress=False), cfg.output


def vocab(out: Path, owner: str) -> dict[str, int]:
    frame = pl.read_parquet(out / "vocab" / f"{owner}.parquet")
    return dict(zip(frame["value"], frame["id"], strict=True))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def leftovers(tmp_path: Path) -> list[str]:
    """Anything prepare may have left in tmp_path: the output or a hidden temporary sibling."""
    return sorted(p.name for p in tmp_path.iterdir()
                  if p.name == "out" or any(m in p.name for m in (".tmp-", ".partial", ".old")))


# ------------------------------------------------------------------------------------ bad input

GOOD = "label,a,n\n1,x,3\n0,y,\n1,x,-2\n0,z,7\n"

BAD_INPUTS = [
    ("empty file", "", {}, r"data\.csv: file is empty"),
    ("header only", "label,a,n\n", {}, r"data\.csv: no rows"),
    ("wrong column count", "label,a,n\n1,x,3\n0,y\n", {},
     r"data\.csv: wrong number of columns at data row 2 \(1-based\): expected 3, got 2: '0,y'"),
    ("text in a numeric field", "label,a,n\n1,x,3\n0,y,abc\n", {},
     r"data\.csv: non-numeric value in a numeric column 'n' at data row 2 \(1-based\): 'abc'"),
    ("missing label", "label,a,n\n1,x,3\n,y,4\n", {},
     r"data\.csv: missing or non-numeric label in column 'label' at data row 2 "
     r"\(1-based\)"),
    ("label outside {0,1}", "label,a,n\n1,x,3\n0,y,4\n2,z,5\n", {},
     r"label outside \{0,1\} in column 'label' at data row 3 \(1-based\): 2\.0"),
    ("missing column", "label,b,n\n1,x,3\n", {}, r"data\.csv: missing column 'a'"),
    ("unknown recipe", GOOD, {"recipe": "critoe"},
     r"unknown recipe 'critoe'; did you mean 'criteo'\?"),
    ("unknown protocol", GOOD, {"recipe": "criteo", "protocol": "x9", "schema": None},
     r"recipe 'criteo' has no protocol 'x9' \(valid: x1, x4\)"),
    ("csv without a schema", GOOD, {"schema": None},
     r"recipe 'csv' needs a schema in the prepare config"),
    ("day split without a day column", GOOD, {"split": {"kind": "day", "test_days": [1]}},
     r"a day split needs a schema with a `day` column"),
    ("no training rows", GOOD, {"split": {"ratios": [0.0, 0.5, 0.5]}},
     r"the split leaves no training rows"),
]


@pytest.mark.parametrize(("text", "extra", "message"), [c[1:] for c in BAD_INPUTS],
                         ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_clear_error_and_leaves_nothing(tmp_path, text, extra, message):
    input = write(tmp_path / "data.csv", text)
    with pytest.raises(CtrDistillError, match=message) as error:
        run(tmp_path, input, **extra)
    assert "\n" not in str(error.value)
    assert leftovers(tmp_path) == []


FORMAT_ERRORS = [
    ("criteo", "1\t2\t3\n", r"train\.txt: wrong number of columns at data row 1 \(1-based\): "
     r"expected 40, got 3"),
    ("criteo", "1" + "\tx" * 13 + "\tab" * 26 + "\n",
     r"non-numeric value in a numeric column 'I1' at data row 1 \(1-based\): 'x'"),
    ("avazu", "id,click,hour\n1,0,14102100\n", r"missing column 'C1' \(and 20 more\)"),
    ("frappe", "1 3:1 4:1\n", r"wrong number of columns at data row 1 \(1-based\): expected 11"),
    ("frappe", "yes" + " 1:1" * 10 + "\n", r"missing or non-numeric label"),
    ("frappe", "-1" + " 1:1" * 10 + "\n2" + " 1:1" * 10 + "\n", r"label outside \{0,1\}"),
    ("movielens", "1\t2\t5\tsoon\n", r"non-integer timestamp at data row 1 \(1-based\)"),
    ("movielens", "1::2::5\n", r"wrong number of columns at data row 1 \(1-based\): expected 4"),
]


@pytest.mark.parametrize(("recipe", "text", "message"), FORMAT_ERRORS)
def test_format_errors_are_one_clear_line(tmp_path, recipe, text, message):
    names = {"criteo": "train.txt", "avazu": "train.csv", "frappe": "data.libfm"}
    name = names.get(recipe, "ratings.dat" if "::" in text else "u.data")
    input = write(tmp_path / name, text)
    with pytest.raises(CtrDistillError, match=message) as error:
        run(tmp_path, input, recipe=recipe, schema=None, protocol="x1")
    assert "\n" not in str(error.value)
    assert leftovers(tmp_path) == []


def test_error_while_encoding_removes_the_temporary_directory(tmp_path, monkeypatch):
    input = write(tmp_path / "data.csv", GOOD)

    def broken(*args, **kwargs):
        raise CtrDistillError("disk full")

    monkeypatch.setattr(prepare_module, "encoded_rows", broken)
    with pytest.raises(CtrDistillError, match="disk full"):
        run(tmp_path, input)
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------- non-finite numeric values

# rows 1-10: inf, -inf, nan, 1e400 (reads as inf), 3, empty, -1e400, 5, NaN, 2
NON_FINITE_CSV = ("label,n,a\n1,inf,x\n0,-inf,y\n1,nan,x\n0,1e400,y\n1,3,x\n0,,y\n1,-1e400,x\n"
                  "0,5,y\n1,NaN,x\n0,2,y\n")
NON_FINITE_ROWS = [0, 1, 2, 3, 6, 8]
PRESENT = {4: 3.0, 7: 5.0, 9: 2.0}  # row index -> finite value


@pytest.mark.parametrize("transform", ["none", "log1p", "bucketize", "standardize"])
def test_non_finite_numerics_are_missing_counted_and_reported(tmp_path, transform, caplog):
    input = write(tmp_path / "data.csv", NON_FINITE_CSV)
    schema = {"label": "label", "fields": [
        {"name": "n", "kind": "numeric", "transform": transform, "fill": 1.5}, {"name": "a"}]}
    with caplog.at_level("WARNING", logger="ctrdistill.data.prepare"):
        feature_map, out = run(tmp_path, input, schema=schema, split={"ratios": [1, 0, 0]})
    report = json.loads((out / "prepare_report.json").read_text())
    assert report == {"rows": 10, "numeric_non_finite": {"n": 6}}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].endswith("treated as missing: n 6")
    values = all_rows(out)["n"].to_list()
    if transform == "bucketize":  # missing and non-finite: the missing token
        ids = vocab(out, "n")
        assert ids == {"": 2, "2": 3, "1": 4}  # 3 -> floor(ln(3)^2) = 1; 5 -> 2; 2 -> 2
        assert values == [2, 2, 2, 2, 4, 2, 2, 3, 2, 3]
        return
    assert all(np.isfinite(values))
    raw = [PRESENT.get(i, 1.5) for i in range(10)]  # fill 1.5 for empty and non-finite
    if transform == "log1p":
        raw = [float(np.log1p(x)) for x in raw]
    if transform == "standardize":  # fitted on the three values present only
        field = feature_map.fields[0]
        assert field.mean == pytest.approx(np.mean([3, 5, 2]))
        assert field.std == pytest.approx(np.std([3, 5, 2]))
        raw = [(x - field.mean) / field.std for x in raw]
    assert values == pytest.approx(raw, rel=1e-6)


def test_non_finite_counts_span_chunks_and_files_and_float32_overflow(tmp_path):
    """Parquet floats: NaN, ±inf and 1e300 (finite in float64, infinite in float32) are missing;
    counts add up over chunks and files; a passthrough column is left as it is."""
    (tmp_path / "pq").mkdir()
    inf = float("inf")
    first = {"label": [0, 1, 0, 1], "n": [1.0, float("nan"), inf, 2.0],
             "m": [1e300, -1e300, 3.0, None], "p": [inf, 0.5, 0.5, 0.5]}
    second = {"label": [1, 0, 1, 0], "n": [-inf, 4.0, 3.4e38, 5.0],
              "m": [1.0, 2.0, 3.0, float("nan")], "p": [0.5] * 4}
    pl.DataFrame(first).write_parquet(tmp_path / "pq" / "a.parquet")
    pl.DataFrame(second).write_parquet(tmp_path / "pq" / "b.parquet")
    schema = {"label": "label", "passthrough": ["p"], "fields": [
        {"name": "n", "kind": "numeric", "transform": "standardize"},
        {"name": "m", "kind": "numeric"}]}
    feature_map, out = run(tmp_path, tmp_path / "pq", recipe="parquet", schema=schema,
                           chunk_rows=3, split={"ratios": [1, 0, 0]})
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["numeric_non_finite"] == {"n": 3, "m": 3}
    rows = all_rows(out)
    assert rows["m"].to_list() == [0.0, 0.0, 3.0, 0.0, 1.0, 2.0, 3.0, 0.0]
    field = feature_map.fields[0]
    assert field.mean == pytest.approx(np.mean([1, 2, 4, 3.4e38, 5]))
    assert all(np.isfinite(rows["n"].to_list()))
    assert rows["p"].to_list()[0] == inf  # not a field: carried as it is


def test_no_non_finite_values_means_no_warning(tmp_path, caplog):
    input = write(tmp_path / "data.csv", GOOD)
    with caplog.at_level("WARNING"):
        _, out = run(tmp_path, input)
    assert json.loads((out / "prepare_report.json").read_text())["numeric_non_finite"] == {"n": 0}
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


# ------------------------------------------------------------- archives and control characters


def tar_of(tmp_path: Path, name: str, member: Path) -> Path:
    mode = "w:gz" if name.endswith(("gz", "tgz")) else "w"
    with tarfile.open(tmp_path / name, mode) as archive:
        archive.add(member, arcname=member.name)
    return tmp_path / name


@pytest.mark.parametrize("name", ["dac.tar.gz", "dac.tgz", "dac.tar"])
def test_a_tar_archive_is_one_clean_line_saying_to_extract_it(tmp_path, name):
    archive = tar_of(tmp_path, name, RAW / "criteo" / "train.txt")
    flag = "-xf" if name == "dac.tar" else "-xzf"
    with pytest.raises(CtrDistillError) as error:
        run(tmp_path, archive, recipe="criteo", protocol="x1", schema=None)
    message = str(error.value)
    assert re.search(rf"{re.escape(name)} is a tar archive \(first member: train\.txt\); extract "
                     rf"it first \(tar {flag} {re.escape(name)}\) and point --input at the data "
                     r"file inside", message), message
    assert message.isprintable()
    assert leftovers(tmp_path) == []


def test_a_zip_archive_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "avazu.zip", "w") as archive:
        archive.write(RAW / "avazu" / "train.csv", "train.csv")
    with pytest.raises(CtrDistillError, match=r"avazu\.zip is a zip archive; extract it first"):
        run(tmp_path, tmp_path / "avazu.zip", recipe="avazu", protocol="x1", schema=None)


CONTROL_INPUTS = [
    ("criteo", "train.txt", b"1\t2\x00\x00\x07\x1b[31m\n"),
    ("csv", "data.csv", b"label,a,n\n1,x\x00y,3\n0,\x01\x02\n"),
    ("csv", "data.csv", b"label,a,n\n1,x,3\n0,y,\x00\x08\n"),
    ("frappe", "data.libfm", b"1 1:1\x00 2:1\n"),
    ("movielens", "ratings.dat", b"1::2::\x00\x1b::3\x00\n"),
]


@pytest.mark.parametrize(("recipe", "name", "data"), CONTROL_INPUTS)
def test_error_messages_never_carry_control_characters(tmp_path, recipe, name, data):
    (tmp_path / name).write_bytes(data)
    extra = {} if recipe == "csv" else {"schema": None, "protocol": "x1"}
    with pytest.raises(CtrDistillError) as error:
        run(tmp_path, tmp_path / name, recipe=recipe, **extra)
    assert str(error.value).isprintable(), repr(str(error.value))


# ------------------------------------------------------------ row numbers from the CSV reader

ROW_ERRORS = [
    ("blank lines do not count", "label,a,n\n1,x,3\n\n0,y,4\n\n1,z\n",
     r"wrong number of columns at data row 3 \(1-based\): expected 3, got 2: '1,z'"),
    ("too many columns", "label,a,n\n1,x,3\n0,y,4,5\n",
     r"wrong number of columns at data row 2 \(1-based\): expected 3, got 4"),
    ("a quoted line break is one row", 'label,a,n\n1,"x\ny",3\n0,y,4\n1,z,four\n',
     r"non-numeric value in a numeric column 'n' at data row 3 \(1-based\): 'four'"),
    ("label column", "label,a,n\n1,x,3\nyes,y,4\n",
     r"non-numeric value in a numeric column 'label' at data row 2 \(1-based\): 'yes'"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in ROW_ERRORS],
                         ids=[c[0] for c in ROW_ERRORS])
def test_csv_reader_errors_name_the_data_row_and_the_field(tmp_path, text, message):
    input = write(tmp_path / "data.csv", text)
    with pytest.raises(CtrDistillError, match=message) as error:
        run(tmp_path, input)
    assert "CSV column #" not in str(error.value)


def test_reader_error_rows_are_counted_over_earlier_blocks(tmp_path, monkeypatch):
    """The bad row sits in a later PyArrow block than the first: its row is still exact."""
    monkeypatch.setattr(sources, "BLOCK_BYTES", 256)
    lines = ["label,a,n", *(f"{i % 2},k{i % 7},{i}" for i in range(400))]
    lines[301] = "1,k3,3.5.1"  # data row 301
    input = write(tmp_path / "data.csv", "\n".join(lines) + "\n")
    with pytest.raises(CtrDistillError, match=r"column 'n' at data row 301 \(1-based\): '3\.5\.1'"):
        run(tmp_path, input)
    lines[301] = "1,k3"
    input = write(tmp_path / "data.csv", "\n".join(lines) + "\n")
    with pytest.raises(CtrDistillError, match=r"columns at data row 301 \(1-based\): expected 3"):
        run(tmp_path, input)


def test_criteo_reader_error_names_the_criteo_column(tmp_path):
    rows = (RAW / "criteo" / "train.txt").read_text().splitlines()[:30]
    fields = rows[19].split("\t")
    fields[5] = "12O"  # I5, a letter O for a zero
    rows[19] = "\t".join(fields)
    write(tmp_path / "train.txt", "\n".join(rows) + "\n")
    with pytest.raises(CtrDistillError, match=r"train\.txt: non-numeric value in a numeric column "
                                              r"'I5' at data row 20 \(1-based\): '12O'"):
        run(tmp_path, tmp_path / "train.txt", recipe="criteo", protocol="x1", schema=None)


# ------------------------------------------------------------------------ documented handling

DAYS_CSV = """label,a,n,day
1,x,1,0
0,x,2,0
1,y,3,0
0,y,,0
1,rare,5,0
0,x,6,1
1,unseen,7,1
0,y,8,2
1,new,,2
0,rare,10,2
"""


def test_unseen_and_rare_categories_become_oov_and_empty_numeric_gets_fill(tmp_path):
    input = write(tmp_path / "data.csv", DAYS_CSV)
    schema = {"label": "label", "day": "day", "min_count": 2,
              "fields": [{"name": "a"}, {"name": "n", "kind": "numeric", "fill": -5}]}
    feature_map, out = run(tmp_path, input, schema=schema,
                           split={"kind": "day", "valid_days": [1], "test_days": [2]})
    assert feature_map.splits == {"train": 5, "valid": 2, "test": 3}
    assert vocab(out, "a") == {"x": 2, "y": 3}  # "rare" seen once in train: below min count 2
    rows = all_rows(out)
    assert rows["a"].to_list() == [2, 2, 3, 3, 1, 2, 1, 3, 1, 1]
    assert rows["n"].to_list() == [1, 2, 3, -5, 5, 6, 7, 8, -5, 10]
    assert rows["day"].to_list() == [0, 0, 0, 0, 0, 1, 1, 2, 2, 2]
    assert rows["split"].to_list() == ["train"] * 5 + ["valid"] * 2 + ["test"] * 3


def test_bucketize_sends_non_finite_values_to_the_missing_token(tmp_path):
    input = write(tmp_path / "data.csv", "label,n\n1,nan\n0,inf\n1,3\n0,-inf\n1,\n0,-2\n")
    schema = {"label": "label", "fields": [{"name": "n", "kind": "numeric",
                                            "transform": "bucketize"}]}
    _, out = run(tmp_path, input, schema=schema, split={"ratios": [1, 0, 0]})
    ids = vocab(out, "n")
    assert ids == {"": 2, "-2": 3, "1": 4}  # floor(ln(3)^2) = 1; nan, ±inf, empty -> ""
    assert all_rows(out)["n"].to_list() == [2, 2, 4, 2, 2, 3]


def test_field_min_count_overrides_the_schema_and_owner_decides_shared(tmp_path):
    input = write(tmp_path / "data.csv", "label,a,b\n1,x,x\n0,y,z\n1,x,y\n0,w,w\n")
    schema = {"label": "label", "min_count": 1, "fields": [
        {"name": "b", "share_vocab_with": "a", "min_count": 1},  # a sharer listed first
        {"name": "a", "min_count": 3}]}
    _, out = run(tmp_path, input, schema=schema, split={"ratios": [1, 0, 0]})
    assert vocab(out, "a") == {"x": 2}  # x 3, y 2, w 2 pooled over both; owner min count 3


def test_shared_vocabulary_gives_the_same_id_to_the_same_token(tmp_path):
    text = "label,home,away\n1,lyon,paris\n0,paris,nice\n1,paris,lyon\n0,nice,paris\n1,lille,x\n"
    input = write(tmp_path / "data.csv", text)
    schema = {"label": "label", "fields": [
        {"name": "home"}, {"name": "away", "share_vocab_with": "home"}]}
    feature_map, out = run(tmp_path, input, schema=schema, split={"ratios": [1, 0, 0]})
    home, away = feature_map.fields
    assert away.vocab == "home" and away.vocab_size == home.vocab_size == 5 + 2
    assert sorted(p.name for p in (out / "vocab").iterdir()) == ["home.parquet"]
    ids = vocab(out, "home")
    assert ids["paris"] == 2 and ids["lyon"] == 3  # counts pooled: paris 4, lyon 2, nice 2
    rows = all_rows(out)
    assert rows["home"].to_list() == [ids[t] for t in ["lyon", "paris", "paris", "nice", "lille"]]
    assert rows["away"].to_list() == [ids[t] for t in ["paris", "nice", "lyon", "paris", "x"]]


def test_sequence_field_is_padded_and_truncated(tmp_path):
    text = "label,tags\n1,a|b|c|d|e\n0,a\n1,\n0,b|a\n1,c|zz|a\n"
    input = write(tmp_path / "data.csv", text)
    schema = {"label": "label", "fields": [{"name": "tags", "kind": "sequence", "max_length": 3}]}
    feature_map, out = run(tmp_path, input, schema=schema, split={"ratios": [1, 0, 0]},
                           min_count=2)
    ids = vocab(out, "tags")
    assert ids == {"a": 2, "b": 3, "c": 4}  # a 4, b 2, c 2; d, e, zz once: below min count
    assert feature_map.fields[0].max_length == 3
    assert all_rows(out)["tags"].to_list() == [[2, 3, 4], [2, 0, 0], [0, 0, 0], [3, 2, 0],
                                               [4, 1, 2]]


def test_standardize_gives_zero_mean_unit_std_on_train(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.normal(40, 7, 300).round(3)
    text = "label,n,a\n" + "".join(f"{i % 2},{v},k{i % 3}\n" for i, v in enumerate(values))
    input = write(tmp_path / "data.csv", text)
    schema = {"label": "label", "fields": [
        {"name": "n", "kind": "numeric", "transform": "standardize"}, {"name": "a"}]}
    feature_map, out = run(tmp_path, input, schema=schema)
    train = read_split(out, "train")["n"].to_numpy().astype(np.float64)
    assert abs(train.mean()) < 1e-5 and abs(train.std() - 1) < 1e-4
    field = feature_map.fields[0]
    assert field.mean == pytest.approx(values[read_split(out, "train")["row_id"]].mean())
    valid = read_split(out, "valid")
    raw = values[valid["row_id"].to_numpy()]
    assert valid["n"].to_numpy() == pytest.approx((raw - field.mean) / field.std, abs=1e-5)


def test_generic_csv_and_parquet_recipes_with_a_schema(tmp_path):
    rng = np.random.default_rng(1)
    frame = pl.DataFrame({
        "label": rng.integers(0, 2, 120), "a": [f"v{i}" for i in rng.integers(0, 9, 120)],
        "n": rng.integers(-3, 50, 120).astype(np.float64), "unused": ["z"] * 120,
        "group_col": [f"u{i % 7}" for i in range(120)]})
    frame.write_csv(tmp_path / "data.csv")
    (tmp_path / "pq").mkdir()
    frame.head(50).write_parquet(tmp_path / "pq" / "part-0.parquet")
    frame.slice(50).write_parquet(tmp_path / "pq" / "part-1.parquet")
    schema = {**SCHEMA, "group": "group_col"}
    fm_csv, out_csv = run(tmp_path, tmp_path / "data.csv", schema=schema)
    shutil.move(out_csv, tmp_path / "from_csv")
    fm_pq, out_pq = run(tmp_path, tmp_path / "pq", recipe="parquet", schema=schema)
    assert fm_csv.fields == fm_pq.fields and fm_csv.splits == fm_pq.splits
    assert fm_pq.has_group and sum(fm_pq.splits.values()) == 120
    for split in SPLITS:
        assert read_split(tmp_path / "from_csv", split).equals(read_split(out_pq, split))
    rows = all_rows(out_pq)
    assert rows["label"].to_list() == frame["label"].cast(pl.Float32).to_list()
    assert rows["n"].to_list() == frame["n"].to_list()  # transform "none": values unchanged
    assert rows["group"].n_unique() == 7


def test_tsv_recipe_splits_on_tabs_without_quoting(tmp_path):
    # a comma inside a TSV value is text, and a tab turns quoting off: '"q' is a token
    text = "label\ta\tn\n1\tx,1\t3\n0\t\"q\t\n1\tx,1\t-2\n0\tz\t7\n"
    input = write(tmp_path / "data.tsv", text)
    feature_map, out = run(tmp_path, input, recipe="tsv", split={"ratios": [1, 0, 0]})
    assert vocab(out, "a") == {"x,1": 2, '"q': 3, "z": 4}
    rows = all_rows(out)
    assert rows["a"].to_list() == [2, 3, 2, 4]
    assert rows["n"].to_list() == [3.0, 0.0, -2.0, 7.0]
    assert rows["label"].to_list() == [1.0, 0.0, 1.0, 0.0]
    assert feature_map.splits == {"train": 4, "valid": 0, "test": 0}
    write(tmp_path / "bad.tsv", "label\ta\tn\n1\tx\t3\n0\ty\n")
    with pytest.raises(CtrDistillError, match=r"bad\.tsv: wrong number of columns"):
        run(tmp_path, tmp_path / "bad.tsv", recipe="tsv", overwrite=True)


def test_parquet_missing_column_is_reported(tmp_path):
    (tmp_path / "pq").mkdir()
    pl.DataFrame({"label": [0, 1], "a": ["x", "y"]}).write_parquet(tmp_path / "pq" / "p.parquet")
    with pytest.raises(CtrDistillError, match=r"missing columns \['n'\]"):
        run(tmp_path, tmp_path / "pq", recipe="parquet")
    assert leftovers(tmp_path) == []


PARQUET_ERRORS = [
    ("text in a numeric field", {"n": ["3", "", "4.5", "abc"]}, {},
     r"p1\.parquet: non-numeric value in a numeric column 'n' at data row 4 \(1-based\): 'abc'"),
    ("text in the day column", {"day": ["1", "2", "x", "2"]},
     {"schema": {**SCHEMA, "day": "day"}, "split": {"kind": "day", "test_days": [2]}},
     r"non-numeric value in a numeric column 'day' at data row 3 \(1-based\): 'x'"),
    ("a list in a numeric field", {"n": [[1.0], [2.0], [3.0], [4.0]]}, {},
     r"p1\.parquet: column 'n' holds List\(Float64\), not numbers"),
    ("label outside {0,1}", {"label": [0, 1, 1, 3]}, {},
     r"pq: label outside \{0,1\} in column 'label' at data row 8 \(1-based\): 3\.0"),
]


@pytest.mark.parametrize(("columns", "extra", "message"), [c[1:] for c in PARQUET_ERRORS],
                         ids=[c[0] for c in PARQUET_ERRORS])
def test_parquet_bad_values_are_one_clear_error(tmp_path, columns, extra, message):
    """The second file is the bad one: rows are counted within the file for its columns, over
    the whole input for the label."""
    (tmp_path / "pq").mkdir()
    good = {"label": [0, 1, 1, 0], "a": ["x", "y", "x", "z"], "n": [1.0, None, 2.0, 3.0],
            "day": [1, 1, 2, 2]}
    pl.DataFrame(good).write_parquet(tmp_path / "pq" / "p0.parquet")
    pl.DataFrame(good | columns).write_parquet(tmp_path / "pq" / "p1.parquet")
    with pytest.raises(CtrDistillError, match=message) as error:
        run(tmp_path, tmp_path / "pq", recipe="parquet", **extra)
    assert "\n" not in str(error.value)
    assert leftovers(tmp_path) == []


def test_parquet_numbers_as_text_or_integers_are_read(tmp_path):
    """Numeric text is parsed, empty text is missing (the field's fill), integers are widened."""
    frame = pl.DataFrame({"label": [1, 0, 1], "a": ["x", "y", "x"], "n": ["2.5", "", "-1"]})
    frame.write_parquet(tmp_path / "text.parquet")
    _, out = run(tmp_path, tmp_path / "text.parquet", recipe="parquet",
                 split={"ratios": [1, 0, 0]})
    assert all_rows(out)["n"].to_list() == [2.5, 0.0, -1.0]
    frame.with_columns(pl.Series("n", [2, None, -1])).write_parquet(tmp_path / "ints.parquet")
    _, out = run(tmp_path, tmp_path / "ints.parquet", recipe="parquet", overwrite=True,
                 split={"ratios": [1, 0, 0]})
    assert all_rows(out)["n"].to_list() == [2.0, 0.0, -1.0]


def test_day_split_puts_each_day_in_its_split(tmp_path):
    text = "label,a,day\n" + "".join(f"{i % 2},k{i % 5},{i % 6}\n" for i in range(60))
    input = write(tmp_path / "data.csv", text)
    schema = {"label": "label", "day": "day", "fields": [{"name": "a"}]}
    feature_map, out = run(tmp_path, input, schema=schema,
                           split={"kind": "day", "valid_days": [3], "test_days": [5, 4]})
    for split, days in (("train", {0, 1, 2}), ("valid", {3}), ("test", {4, 5})):
        assert set(read_split(out, split)["day"].to_list()) == days
    assert feature_map.splits == {"train": 30, "valid": 10, "test": 20}
    assert feature_map.has_day


DAY_SPLIT_ERRORS = [
    ("unlisted day after the test day", {"valid_days": [2], "test_days": [3]},
     r"day split: day 4 is in no list and after the first valid/test day 2, so it would be "
     r"trained on; list split\.train_days"),
    ("unlisted day between valid days", {"valid_days": [1, 3], "test_days": [4, 5]},
     r"day 2 is in no list and after the first valid/test day 1"),
    ("valid after test", {"valid_days": [5], "test_days": [4]},
     r"prepare: split: Value error, valid day 5 comes after test day 4; .* list train_days"),
    ("a day in two lists", {"valid_days": [4], "test_days": [4, 5]},
     r"day\(s\) \[4\] in both valid_days and test_days"),
    ("a training day also tested", {"train_days": [0, 5], "valid_days": [4], "test_days": [5]},
     r"day\(s\) \[5\] in both train_days and test_days"),
    ("days on a random split", {"kind": "random", "test_days": [5]},
     r"test_days need kind: day"),
]


@pytest.mark.parametrize(("split", "message"), [c[1:] for c in DAY_SPLIT_ERRORS],
                         ids=[c[0] for c in DAY_SPLIT_ERRORS])
def test_day_split_refuses_leaking_or_ambiguous_days(tmp_path, split, message):
    text = "label,a,day\n" + "".join(f"{i % 2},k{i % 5},{i % 6}\n" for i in range(60))
    input = write(tmp_path / "data.csv", text)
    schema = {"label": "label", "day": "day", "fields": [{"name": "a"}]}
    with pytest.raises(CtrDistillError, match=message) as error:
        run(tmp_path, input, schema=schema, split={"kind": "day", **split})
    assert "\n" not in str(error.value)
    assert leftovers(tmp_path) == []


def test_day_split_with_explicit_train_days_leaves_other_days_out(tmp_path):
    text = "label,a,day\n" + "".join(f"{i % 2},k{i % 5},{i % 6}\n" for i in range(60))
    input = write(tmp_path / "data.csv", text)
    schema = {"label": "label", "day": "day", "fields": [{"name": "a"}]}
    # the user's choice: train on days after the test day (e.g. backtesting); 0 and 1 unused
    feature_map, out = run(tmp_path, input, schema=schema, split={
        "kind": "day", "train_days": [5, 4], "valid_days": [3], "test_days": [2]})
    for split, days in (("train", {4, 5}), ("valid", {3}), ("test", {2})):
        assert set(read_split(out, split)["day"].to_list()) == days
    assert feature_map.splits == {"train": 20, "valid": 10, "test": 10}


def test_day_split_needs_a_day_on_every_row(tmp_path):
    input = write(tmp_path / "data.csv", "label,a,day\n1,x,0\n0,y,1\n1,z,\n")
    schema = {"label": "label", "day": "day", "fields": [{"name": "a"}]}
    with pytest.raises(CtrDistillError, match=r"day column 'day' is missing at data row 3 "):
        run(tmp_path, input, schema=schema, split={"kind": "day", "test_days": [1]})


def write_wide_csv(path: Path, rows: int) -> Path:
    rng = np.random.default_rng(3)
    lines = ["label,a,n,junk"]
    for i in range(rows):
        junk = "" if i < rows // 2 else "text"  # empty in the first blocks, text later
        n = "" if i % 11 == 0 else str(int(rng.integers(-2, 300)))
        lines.append(f"{int(rng.random() < 0.3)},c{int(rng.zipf(1.5)) % 40},{n},{junk}")
    return write(path, "\n".join(lines) + "\n")


def test_bigger_than_chunk_input_gives_identical_output(tmp_path, monkeypatch):
    input = write_wide_csv(tmp_path / "data.csv", 500)
    schema = {"label": "label", "fields": [
        {"name": "a"}, {"name": "n", "kind": "numeric", "transform": "bucketize"}]}
    fm_one, one = run(tmp_path, input, schema=schema, output=tmp_path / "one")
    monkeypatch.setattr(sources, "BLOCK_BYTES", 512)  # several PyArrow blocks, too
    seen: list[int] = []
    original = prepare_module.encoded_rows

    def spy(frame, *args):
        seen.append(len(frame))
        return original(frame, *args)

    monkeypatch.setattr(prepare_module, "encoded_rows", spy)
    fm_many, many = run(tmp_path, input, schema=schema, output=tmp_path / "many",
                        chunk_rows=7, shard_rows=40)
    assert max(seen) <= 7 and sum(seen) == 500
    assert fm_one == fm_many
    for split in SPLITS:
        assert read_split(one, split).equals(read_split(many, split))
        assert len(list((one / split).glob("*.parquet"))) == 1
    train_shards = sorted((many / "train").glob("*.parquet"))
    assert len(train_shards) == -(-fm_many.splits["train"] // 40) > 1
    assert all(len(pl.read_parquet(f)) == 40 for f in train_shards[:-1])
    assert vocab(one, "a") == vocab(many, "a")


def test_bigger_than_chunk_criteo_gives_identical_output(tmp_path):
    _, one = run(tmp_path, RAW / "criteo", recipe="criteo", protocol="x4", schema=None,
                 output=tmp_path / "one")
    _, many = run(tmp_path, RAW / "criteo", recipe="criteo", protocol="x4", schema=None,
                  output=tmp_path / "many", chunk_rows=9, shard_rows=16)
    for split in SPLITS:
        assert read_split(one, split).equals(read_split(many, split))
    assert len(list((many / "train").glob("*.parquet"))) > 5


def test_overwrite_semantics(tmp_path, monkeypatch):
    input = write(tmp_path / "data.csv", GOOD)
    _, out = run(tmp_path, input)
    before = (out / "feature_map.json").read_text()

    def no_fit(*args, **kwargs):
        raise AssertionError("an existing output must be refused before the fitting pass")

    with monkeypatch.context() as patch:
        patch.setattr(prepare_module, "_fit", no_fit)
        with pytest.raises(CtrDistillError, match=r"output already exists: .*out"):
            run(tmp_path, input)
    assert (out / "feature_map.json").read_text() == before

    (out / "stale.txt").write_text("left from an older run")
    feature_map, out = run(tmp_path, input, overwrite=True, min_count=2)
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "schema.json").read_text())["min_count"] == 2
    assert set(vocab(out, "a")) <= {"x"}  # the only value seen twice
    assert feature_map.fields[0].vocab_size == len(vocab(out, "a")) + 2

    def broken(*args, **kwargs):
        raise CtrDistillError("disk full")

    monkeypatch.setattr(prepare_module, "encoded_rows", broken)
    with pytest.raises(CtrDistillError, match="disk full"):
        run(tmp_path, input, overwrite=True)
    assert json.loads((out / "schema.json").read_text())["min_count"] == 2  # old output kept
    assert [p.name for p in tmp_path.iterdir()
            if any(m in p.name for m in (".tmp-", ".partial", ".old"))] == []


# ------------------------------------------------------------------------------------ synthetic


def test_synthetic_end_to_end_is_deterministic(tmp_path):
    synth = SynthConfig(rows=600, days=3, numeric_fields=3, categorical_fields=4, max_vocab=200,
                        chunk_rows=250, seed=11)
    write_synthetic(synth, tmp_path / "raw_a", show_progress=False)
    write_synthetic(synth, tmp_path / "raw_b", show_progress=False)
    for part in sorted((tmp_path / "raw_a").glob("*.parquet")):
        assert pl.read_parquet(part).equals(pl.read_parquet(tmp_path / "raw_b" / part.name))
    outputs = []
    for name, raw, chunk in (("a", "raw_a", 500_000), ("b", "raw_b", 500_000), ("c", "raw_a", 64)):
        feature_map, out = run(tmp_path, tmp_path / raw, recipe="synthetic", protocol="x4",
                               schema=None, output=tmp_path / name, chunk_rows=chunk)
        outputs.append((feature_map.model_dump(exclude={"source"}), out))
    (first, out_a), *others = outputs
    assert [f["name"] for f in first["fields"]] == ["I1", "I2", "I3", "C1", "C2", "C3", "C4"]
    assert first["passthrough"] == ["p_true"] and first["has_day"]
    for feature_map, out in others:
        assert feature_map == first
        for split in SPLITS:
            assert read_split(out_a, split).equals(read_split(out, split))
