"""The `libsvm` recipe on LIBSVM (`label idx:val ...`) and libffm (`label field:idx:val ...`)
fixtures with any number of features per line, checked against plain-Python parses."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from conftest import all_rows, prepare_recipe
from ctrdistill.data.encode import PrepareState
from ctrdistill.data.recipes import get_recipe
from ctrdistill.errors import CtrDistillError

RAW = Path(__file__).parent / "fixtures" / "raw"
LIBSVM = RAW / "libsvm" / "train.libsvm"
LIBFFM = RAW / "libffm" / "train.ffm"


def run(tmp_path: Path, input: Path, name: str = "out", **extra):
    return prepare_recipe(tmp_path, "libsvm", input, name, **extra)


def expected_vocab(tokens: list[str]) -> dict[str, int]:
    counts = Counter(tokens)
    return {v: i + 2 for i, v in enumerate(sorted(counts, key=lambda v: (-counts[v], v)))}


def stored_vocab(out: Path, owner: str) -> dict[str, int]:
    frame = pl.read_parquet(out / "vocab" / f"{owner}.parquet")
    return dict(zip(frame["value"], frame["id"], strict=True))


def libsvm_raw() -> tuple[list[float], list[list[str]]]:
    """Labels (-1 -> 0) and each line's present feature indices (value 0 is absent)."""
    labels, features = [], []
    for line in LIBSVM.read_text().splitlines():
        label, *pairs = line.split()
        labels.append(0.0 if label == "-1" else float(label))
        features.append([p.split(":")[0] for p in pairs if float(p.split(":")[1]) != 0])
    return labels, features


def test_fixture_is_libsvm_with_variable_counts_and_awkward_values():
    lines = LIBSVM.read_text().splitlines()
    assert {line.split()[0] for line in lines} == {"+1", "-1"}
    counts = {len(line.split()) - 1 for line in lines}
    assert min(counts) == 3 and max(counts) == 9
    values = {p.split(":")[1] for line in lines for p in line.split()[1:]}
    assert values == {"1", "0.5", "0", "2"}


def test_libsvm_lines_become_one_bag_of_feature_ids(tmp_path, caplog):
    labels, features = libsvm_raw()
    with caplog.at_level("WARNING", logger="ctrdistill.data.libsvm"):
        feature_map, out = run(tmp_path, LIBSVM)
    longest = max(len(f) for f in features)
    assert [(f.name, f.kind, f.max_length) for f in feature_map.fields] == [
        ("features", "sequence", longest)]
    rows = all_rows(out)
    assert rows["label"].to_list() == labels
    train = [f for f, split in zip(features, rows["split"], strict=True) if split == "train"]
    vocab = expected_vocab([t for f in train for t in f])
    assert stored_vocab(out, "features") == vocab
    assert feature_map.fields[0].vocab_size == len(vocab) + 2
    assert rows["features"].to_list() == [
        ([vocab.get(t, 1) for t in f] + [0] * longest)[:longest] for f in features]
    weighted = sum(1 for line in LIBSVM.read_text().splitlines() for p in line.split()[1:]
                   if p.split(":")[1] not in ("0", "1"))
    assert caplog.records[0].getMessage() == (
        f"libsvm: {weighted} feature values other than 0 and 1 in {LIBSVM} are read as "
        "presence (values are not kept)")


def libffm_raw() -> tuple[list[float], list[dict[str, list[str]]]]:
    labels, rows = [], []
    for line in LIBFFM.read_text().splitlines():
        label, *triples = line.split()
        labels.append(float(label))
        fields: dict[str, list[str]] = {}
        for triple in triples:
            field, index, _ = triple.split(":")
            fields.setdefault(f"f{field}", []).append(index)
        rows.append(fields)
    return labels, rows


def test_libffm_lines_become_one_field_per_field_id(tmp_path):
    labels, raw = libffm_raw()
    feature_map, out = run(tmp_path, LIBFFM, split={"ratios": [0.7, 0.2, 0.1]}, min_count=2)
    names = [f"f{k}" for k in range(12)]  # f2 before f10: field ids in numeric order
    assert [f.name for f in feature_map.fields] == names
    assert [f.kind for f in feature_map.fields] == ["categorical"] * 11 + ["sequence"]
    assert feature_map.fields[11].max_length == 3
    rows = all_rows(out)
    assert rows["label"].to_list() == labels
    train = rows["split"] == "train"
    for name in names[:11]:
        tokens = [r.get(name, [""])[0] for r in raw]  # f7 is absent on some lines: missing
        counts = Counter(t for t, is_train in zip(tokens, train, strict=True) if is_train)
        vocab = expected_vocab([t for t, c in counts.items() for _ in range(c) if c >= 2])
        assert stored_vocab(out, name) == vocab, name
        assert rows[name].to_list() == [vocab.get(t, 1) for t in tokens], name
    assert "" in stored_vocab(out, "f7")
    tags = stored_vocab(out, "f11")
    assert rows["f11"].to_list() == [
        ([tags.get(t, 1) for t in r.get("f11", [])] + [0, 0, 0])[:3] for r in raw]


def test_chunking_and_spacing_do_not_change_the_output(tmp_path):
    spaced = tmp_path / "spaced.ffm"
    spaced.write_text("".join(line.replace(" ", " \t ", 2) + "  \n"
                              for line in LIBFFM.read_text().splitlines()))
    _, one = run(tmp_path, LIBFFM, name="one")
    _, many = run(tmp_path, spaced, name="many", chunk_rows=7)
    assert all_rows(one).drop("split").equals(all_rows(many).drop("split"))


def test_a_directory_of_libsvm_files_is_read_in_name_order(tmp_path):
    lines = LIBSVM.read_text().splitlines(keepends=True)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "part-0.libsvm").write_text("".join(lines[:30]))
    (tmp_path / "raw" / "part-1.txt").write_text("".join(lines[30:]))
    _, parts = run(tmp_path, tmp_path / "raw", name="parts")
    _, whole = run(tmp_path, LIBSVM, name="whole")
    assert all_rows(parts).equals(all_rows(whole))


def test_frappe_is_the_fixed_layout_case(tmp_path):
    """frappe lines parse the same way: the index at position k is field f<k>."""
    recipe = get_recipe("frappe")
    frame = pl.concat(list(recipe.read(RAW / "frappe", recipe.default_schema(None), 50)))
    first = (RAW / "frappe" / "frappe.test.libfm").read_text().splitlines()[0].split()
    assert frame.row(0) == (0.0 if first[0] == "-1" else 1.0,
                            *(t.split(":")[0] for t in first[1:]))


LINE_ERRORS = [
    ("1 3:1 4\n", r"bad\.libsvm: bad feature '4' at data row 1 \(1-based\): expected index:value"),
    ("1 3:1\n0 :1\n", r"bad feature ':1' at data row 2 \(1-based\)"),
    ("1 3:1 4:x\n", r"non-numeric feature value in '4:x' at data row 1 \(1-based\)"),
    ("1 0:3:1 1:4:1\n0 2:1\n", r"bad feature '2:1' at data row 2 \(1-based\): expected "
                               r"field:index:value"),
    ("2 3:1\n", r"label outside \{0,1\} in column 'label' at data row 1 \(1-based\): 2\.0"),
    ("yes 3:1\n", r"missing or non-numeric label in column 'label' at data row 1"),
]


@pytest.mark.parametrize(("text", "message"), LINE_ERRORS)
def test_malformed_lines_are_one_clear_error(tmp_path, text, message):
    (tmp_path / "bad.libsvm").write_text(text)
    with pytest.raises(CtrDistillError, match=message) as error:
        run(tmp_path, tmp_path / "bad.libsvm")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_files_mixing_pairs_and_triples_are_refused(tmp_path):
    (tmp_path / "raw").mkdir()
    shutil.copy(LIBSVM, tmp_path / "raw" / "a.libsvm")
    shutil.copy(LIBFFM, tmp_path / "raw" / "b.ffm")
    with pytest.raises(CtrDistillError, match=r"mixes index:value and field:index:value lines"):
        run(tmp_path, tmp_path / "raw")


SCHEMA_ERRORS = [
    (LIBFFM, [{"name": "f11"}], r"field 'f11' has several features at data row 2 \(1-based\); "
                                r"make it a sequence field in the schema"),
    (LIBSVM, [{"name": "f1"}], r"the schema's fields \['f1'\] do not fit index:value lines"),
    (LIBFFM, [{"name": "features", "kind": "sequence"}],
     r"fields \['features'\] do not fit field:index:value lines: those give f<field> fields"),
    (LIBSVM, [{"name": "user"}], r"recipe 'libsvm' has no column\(s\) \['user'\]"),
]


@pytest.mark.parametrize(("input", "fields", "message"), SCHEMA_ERRORS)
def test_a_schema_that_does_not_fit_the_lines_is_an_error(tmp_path, input, fields, message):
    with pytest.raises(CtrDistillError, match=message):
        run(tmp_path, input, schema={"label": "label", "fields": fields})


def test_a_user_schema_may_pick_and_cap_fields(tmp_path):
    _, raw = libffm_raw()
    schema = {"label": "label", "fields": [
        {"name": "f3"}, {"name": "f11", "kind": "sequence", "max_length": 1}]}
    feature_map, out = run(tmp_path, LIBFFM, schema=schema, split={"ratios": [1, 0, 0]})
    assert [f.name for f in feature_map.fields] == ["f3", "f11"]
    rows = all_rows(out)
    f3 = stored_vocab(out, "f3")
    assert rows["f3"].to_list() == [f3[r["f3"][0]] for r in raw]
    f11 = stored_vocab(out, "f11")
    assert rows["f11"].to_list() == [[f11[r["f11"][0]]] if "f11" in r else [0] for r in raw]


# ------------------------------------------------- iPinYou: index:value lines with a field map

IPINYOU = RAW / "ipinyou"


def ipinyou_raw(files: list[Path]) -> tuple[list[float], list[dict[str, list[str]]]]:
    """Labels and each line's feature indices by field, from featindex.txt with plain Python:
    `truncate` (no field) is dropped, the price column after the label is not a feature."""
    field_of = {}
    for line in (IPINYOU / "featindex.txt").read_text().splitlines():
        key, index = line.split("\t")
        if ":" in key:
            field_of[index] = "f" + key.split(":")[0]
    labels, rows = [], []
    for file in files:
        for line in file.read_text().splitlines():
            label, _price, *pairs = line.split()
            labels.append(float(label))
            fields: dict[str, list[str]] = {}
            for pair in pairs:
                index = pair.split(":")[0]
                if index in field_of:
                    fields.setdefault(field_of[index], []).append(index)
            rows.append(fields)
    return labels, rows


def test_ipinyou_folder_reads_one_field_per_featindex_field(tmp_path, caplog):
    """The featindex.txt beside the .yzx.txt files is found, skipped as data and used: one field
    per log column (user tags a sequence), not one bag."""
    labels, raw = ipinyou_raw([IPINYOU / "test.yzx.txt", IPINYOU / "train.yzx.txt"])
    with caplog.at_level("WARNING"):
        feature_map, out = run(tmp_path, IPINYOU, options={"skip_columns": 1},
                               split={"kind": "random", "ratios": [1, 0, 0]})
    names = ["f1", "f2", "f7", "f9", "f11", "f16", "f26"]
    assert [f.name for f in feature_map.fields] == names
    assert [f.kind for f in feature_map.fields] == ["categorical"] * 6 + ["sequence"]
    assert feature_map.fields[-1].max_length == 3
    assert [r.getMessage() for r in caplog.records] == [
        f"libsvm: reading 2 data file(s) from {IPINYOU}; skipped, not data: featindex.txt, "
        "make_fixture.py"]
    rows = all_rows(out)
    assert rows["label"].to_list() == labels
    for name in names[:-1]:
        vocab = expected_vocab([r[name][0] for r in raw])
        assert stored_vocab(out, name) == vocab, name
        assert rows[name].to_list() == [vocab[r[name][0]] for r in raw], name
    tags = expected_vocab([t for r in raw for t in r["f26"]])
    assert rows["f26"].to_list() == [([tags[t] for t in r["f26"]] + [0] * 3)[:3] for r in raw]
    state = json.loads((out / "prepare_state.json").read_text())
    assert state["options"]["field_map"] == str((IPINYOU / "featindex.txt").resolve())
    # scoring a copy elsewhere (no map beside it) reads the same fields through the saved path
    shutil.copy(IPINYOU / "test.yzx.txt", tmp_path / "test.yzx.txt")
    (encoded, _), = PrepareState.load(out).read(tmp_path / "test.yzx.txt", 100)
    assert encoded.equals(rows.head(len(encoded)).select(names))


def test_a_field_map_given_as_an_option_reads_a_file_anywhere(tmp_path):
    shutil.copy(IPINYOU / "train.yzx.txt", tmp_path / "train.yzx.txt")
    feature_map, out = run(tmp_path, tmp_path / "train.yzx.txt", options={
        "skip_columns": 1, "field_map": str(IPINYOU / "featindex.txt")})
    assert len(feature_map.fields) == 7
    _, raw = ipinyou_raw([IPINYOU / "train.yzx.txt"])
    f9 = stored_vocab(out, "f9")
    rows = all_rows(out)
    assert [f9.get(r["f9"][0], 1) for r in raw] == rows["f9"].to_list()


def test_libsvm_without_a_field_map_warns_that_fm_models_see_one_field(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="ctrdistill.data.libsvm"):
        feature_map, _ = run(tmp_path, LIBSVM)
    assert [f.name for f in feature_map.fields] == ["features"]
    message = caplog.records[-1].getMessage()
    assert message.startswith(f"libsvm: {LIBSVM} has index:value lines and no field map, so all "
                              "features form one mean-pooled bag field 'features'")
    assert "options.field_map" in message


FIELD_MAP_ERRORS = [
    ({}, r"train\.yzx\.txt: bad feature '\d+' at data row 1 \(1-based\): expected index:value, "
         r".*dropped by options\.skip_columns: 1$"),
    ({"skip_columns": 2}, r"data row 1 \(1-based\) lacks the 2 plain column\(s\) after the label"),
    ({"skip_columns": 1, "field_map": "nowhere.txt"},
     r"options\.field_map: nowhere\.txt is not a file"),
]


@pytest.mark.parametrize(("options", "message"), FIELD_MAP_ERRORS)
def test_field_map_and_column_mistakes_are_one_line(tmp_path, options, message):
    with pytest.raises(CtrDistillError, match=message):
        run(tmp_path, IPINYOU / "train.yzx.txt", options=options)


def test_an_index_missing_from_the_map_or_a_bad_map_line_is_an_error(tmp_path):
    folder = tmp_path / "camp"
    folder.mkdir()
    (folder / "train.yzx.txt").write_text("1 30 0:1 1:1 5:1\n0 20 0:1 9:1 5:1\n")
    (folder / "featindex.txt").write_text("truncate\t0\n1:other\t1\n1:Mon\t5\n")
    with pytest.raises(CtrDistillError, match=r"feature index '9' at data row 2 \(1-based\) is "
                       r"not in the field map"):
        run(tmp_path, folder, options={"skip_columns": 1})
    (folder / "featindex.txt").write_text("truncate\t0\n1:other 1\n")
    with pytest.raises(CtrDistillError, match=r"featindex\.txt: line 2 is not "
                       r"`<field>:<value><TAB><index>`: '1:other 1'"):
        run(tmp_path, folder, options={"skip_columns": 1})


def test_the_map_file_itself_is_not_an_input(tmp_path):
    with pytest.raises(CtrDistillError, match=r"featindex\.txt is not a data file of recipe "
                       r"'libsvm'"):
        run(tmp_path, IPINYOU / "featindex.txt")
