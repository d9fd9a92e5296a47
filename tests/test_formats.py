"""The official raw-format recipes (criteo, avazu, frappe, movielens) on fixtures in the exact raw
formats, checked against expectations computed from the fixture text with plain Python."""

from __future__ import annotations

import csv
import gzip
import math
import shutil
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from conftest import all_rows, read_split
from ctrdistill.data.prepare import SPLITS, PrepareConfig, prepare
from ctrdistill.data.recipes import get_recipe, recipe_names
from ctrdistill.errors import CtrDistillError

RAW = Path(__file__).parent / "fixtures" / "raw"


# ------------------------------------------------------------------------------------- helpers


def run(tmp_path: Path, recipe: str, input: Path, protocol: str | None = None,
        name: str = "out", **extra):
    out = tmp_path / name
    feature_map = prepare(PrepareConfig.model_validate(
        {"recipe": recipe, "input": input, "output": out, "protocol": protocol, **extra}),
        show_progress=False)
    return feature_map, out


def expected_vocab(tokens: list[str], min_count: int) -> dict[str, int]:
    """value -> id: 2.. by descending count, ties by value; rarer than min_count dropped."""
    counts = Counter(tokens)
    kept = sorted((v for v, c in counts.items() if c >= min_count), key=lambda v: (-counts[v], v))
    return {v: i + 2 for i, v in enumerate(kept)}


def check_rows_and_labels(out: Path, feature_map, labels: list[float],
                          ratios: tuple[float, float, float]) -> pl.DataFrame:
    rows = all_rows(out)
    n = len(labels)
    assert rows["row_id"].to_list() == list(range(n))  # every row exactly once across splits
    assert rows["label"].to_list() == labels
    assert set(rows["label"].unique().to_list()) <= {0.0, 1.0}
    counts = Counter(rows["split"].to_list())
    assert feature_map.splits == {s: counts.get(s, 0) for s in SPLITS}
    for split, ratio in zip(SPLITS, ratios, strict=True):
        assert abs(counts.get(split, 0) / n - ratio) < 0.1, (split, counts)
    return rows


def check_id_field(out: Path, feature_map, rows: pl.DataFrame, name: str, tokens: list[str],
                   min_count: int) -> dict[str, int]:
    """The field's vocabulary (fitted on training rows only) and every row's id."""
    train = rows["split"] == "train"
    vocab = expected_vocab([t for t, is_train in zip(tokens, train, strict=True) if is_train],
                           min_count)
    stored = pl.read_parquet(out / "vocab" / f"{name}.parquet")
    assert dict(zip(stored["value"], stored["id"], strict=True)) == vocab, name
    field = next(f for f in feature_map.fields if f.name == name)
    assert field.vocab_size == len(vocab) + 2
    assert rows[name].to_list() == [vocab.get(t, 1) for t in tokens], name
    return vocab


def check_sequence_field(out: Path, feature_map, rows: pl.DataFrame, name: str,
                         tokens: list[list[str]], max_length: int) -> None:
    train = rows["split"] == "train"
    vocab = expected_vocab(
        [t for ts, is_train in zip(tokens, train, strict=True) if is_train for t in ts], 1)
    stored = pl.read_parquet(out / "vocab" / f"{name}.parquet")
    assert dict(zip(stored["value"], stored["id"], strict=True)) == vocab
    field = next(f for f in feature_map.fields if f.name == name)
    assert (field.kind, field.vocab_size, field.max_length) == ("sequence", len(vocab) + 2,
                                                                 max_length)
    expected = [([vocab.get(t, 1) for t in ts] + [0] * max_length)[:max_length] for ts in tokens]
    assert rows[name].to_list() == expected


# -------------------------------------------------------------------------------- registration


def test_official_recipes_are_registered_with_their_protocols():
    assert {"criteo", "avazu", "frappe", "movielens"} <= set(recipe_names())
    criteo = get_recipe("criteo").protocols
    assert (criteo["x1"].ratios, criteo["x1"].min_count, criteo["x1"].bucketize) == (
        (0.7, 0.2, 0.1), 1, False)
    assert (criteo["x4"].ratios, criteo["x4"].min_count, criteo["x4"].bucketize) == (
        (0.8, 0.1, 0.1), 10, True)
    avazu = get_recipe("avazu").protocols
    assert (avazu["x1"].ratios, avazu["x1"].min_count) == ((0.7, 0.1, 0.2), 1)
    assert (avazu["x4"].ratios, avazu["x4"].min_count) == ((0.8, 0.1, 0.1), 2)
    assert get_recipe("frappe").protocols["x1"].ratios == (0.7, 0.2, 0.1)
    assert get_recipe("movielens").protocols["x1"].ratios == (0.7, 0.2, 0.1)


# -------------------------------------------------------------------------------------- criteo


def criteo_raw() -> list[list[str]]:
    lines = (RAW / "criteo" / "train.txt").read_text().splitlines()
    rows = [line.split("\t") for line in lines]
    assert all(len(r) == 40 for r in rows)
    return rows


def test_fixture_has_the_awkward_criteo_values():
    rows = criteo_raw()
    ints = [v for r in rows for v in r[1:14]]
    cats = [v for r in rows for v in r[14:]]
    assert "" in ints and any(v.startswith("-") for v in ints)
    assert "" in cats and all(len(v) == 8 for v in cats if v)


def test_criteo_x1_log1p_numerics_and_vocabularies(tmp_path):
    raw = criteo_raw()
    feature_map, out = run(tmp_path, "criteo", RAW / "criteo", "x1")
    assert [f.name for f in feature_map.fields] == [
        *(f"I{i}" for i in range(1, 14)), *(f"C{i}" for i in range(1, 27))]
    assert all(f.kind == "numeric" and f.transform == "log1p" for f in feature_map.fields[:13])
    rows = check_rows_and_labels(out, feature_map, [float(r[0]) for r in raw], (0.7, 0.2, 0.1))
    for j in range(13):
        expected = [math.log1p(max(float(r[1 + j] or 0), 0)) for r in raw]
        assert rows[f"I{j + 1}"].to_list() == pytest.approx(expected, rel=1e-6)
    with_missing = 0
    for j in range(26):
        vocab = check_id_field(out, feature_map, rows, f"C{j + 1}", [r[14 + j] for r in raw], 1)
        with_missing += "" in vocab  # a missing category is a token like any other
    assert with_missing > 0


def criteo_bucket(text: str) -> str:
    if text == "":
        return ""
    x = int(text)
    return str(math.floor(math.log(x) ** 2)) if x > 2 else str(x)


def test_criteo_x4_bucketised_numerics_with_min_count_10(tmp_path):
    raw = criteo_raw()
    feature_map, out = run(tmp_path, "criteo", RAW / "criteo" / "train.txt", "x4")
    assert all(f.kind == "categorical" and f.transform == "bucketize"
               for f in feature_map.fields[:13])
    rows = check_rows_and_labels(out, feature_map, [float(r[0]) for r in raw], (0.8, 0.1, 0.1))
    oov = 0
    for j in range(13):
        check_id_field(out, feature_map, rows, f"I{j + 1}", [criteo_bucket(r[1 + j]) for r in raw],
                       10)
    for j in range(26):
        check_id_field(out, feature_map, rows, f"C{j + 1}", [r[14 + j] for r in raw], 10)
        oov += int((rows[f"C{j + 1}"] == 1).sum())
    assert oov > 0  # min count 10 really sends rare values to OOV on this fixture
    assert "-1" in pl.read_parquet(out / "vocab" / "I2.parquet")["value"].to_list()


def test_criteo_split_is_deterministic_per_seed(tmp_path):
    _, a = run(tmp_path, "criteo", RAW / "criteo", "x1", name="a", split={"seed": 7})
    _, b = run(tmp_path, "criteo", RAW / "criteo", "x1", name="b", split={"seed": 7})
    _, c = run(tmp_path, "criteo", RAW / "criteo", "x1", name="c", split={"seed": 8})
    for split in SPLITS:
        assert read_split(a, split).equals(read_split(b, split))
    assert read_split(a, "train")["row_id"].to_list() != read_split(c, "train")["row_id"].to_list()


# ------------------------------------------------------------------------- directory inputs


def test_criteo_directory_reads_every_data_file_in_name_order(tmp_path):
    """Any *.txt / *.txt.gz name, sorted; hidden and underscore names are skipped."""
    lines = (RAW / "criteo" / "train.txt").read_bytes().splitlines(keepends=True)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "day_0.txt").write_bytes(b"".join(lines[:120]))
    (tmp_path / "raw" / "day_1.txt.gz").write_bytes(gzip.compress(b"".join(lines[120:])))
    (tmp_path / "raw" / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / "raw" / "_SUCCESS").write_text("")
    _, parts = run(tmp_path, "criteo", tmp_path / "raw", "x1", name="parts")
    _, whole = run(tmp_path, "criteo", RAW / "criteo", "x1", name="whole")
    for split in SPLITS:
        assert read_split(parts, split).equals(read_split(whole, split))


def test_files_that_are_not_data_are_skipped_and_named_once(tmp_path, caplog):
    """Notes, archives, map files and checksums beside the data are skipped, listed in one
    warning; hidden and companion files silently."""
    folder = tmp_path / "raw"
    folder.mkdir()
    shutil.copy(RAW / "criteo" / "train.txt", folder / "train.txt")
    for name in ("README.txt", "notes.md", "train.txt.crc", "sample.zip", "_SUCCESS", ".x.txt",
                 "LICENSE", "LICENSE.txt"):
        (folder / name).write_text("not data\n")
    with caplog.at_level("WARNING", logger="ctrdistill.data.sources"):
        _, parts = run(tmp_path, "criteo", folder, "x1", name="parts")
    assert [r.getMessage() for r in caplog.records] == [
        f"criteo: reading 1 data file(s) from {folder}; skipped, not data: LICENSE, LICENSE.txt, "
        "README.txt, notes.md, sample.zip, train.txt.crc"]
    _, whole = run(tmp_path, "criteo", RAW / "criteo", "x1", name="whole")
    assert all_rows(parts).equals(all_rows(whole))


DIRECTORY_ERRORS = [
    ("criteo", {"train.txt": "criteo", "old/": ""},
     r"raw: subfolder 'old' in the input directory \(directories are not searched recursively\)"),
    ("criteo", {"readme.md": ""}, r"raw: no data files of recipe 'criteo' \(\*\.txt, \*\.txt\.gz, "
     r"\*\.tsv, \*\.tsv\.gz\); not data: readme\.md$"),
    ("criteo", {}, r"raw: no data files of recipe 'criteo' \(\*\.txt, \*\.txt\.gz, \*\.tsv"),
    ("parquet", {".hidden.parquet": ""}, r"raw: no data files of recipe 'parquet' \(\*\.parquet"),
]


@pytest.mark.parametrize(("recipe", "files", "message"), DIRECTORY_ERRORS)
def test_directory_input_with_a_subfolder_or_no_data_is_an_error(tmp_path, recipe, files,
                                                                 message):
    folder = tmp_path / "raw"
    folder.mkdir()
    for name, source in files.items():
        if name.endswith("/"):
            (folder / name).mkdir()
        elif source:
            shutil.copy(next(p for p in sorted((RAW / source).iterdir())), folder / name)
        else:
            (folder / name).write_text("x\n")
    schema = {"label": "label", "fields": [{"name": "a"}]} if recipe == "parquet" else None
    with pytest.raises(CtrDistillError, match=message):
        run(tmp_path, recipe, folder, None if recipe == "parquet" else "x1", schema=schema)
    assert not (tmp_path / "out").exists()


def test_kaggles_avazu_sample_submission_is_not_data(tmp_path):
    for name in ("train.gz", "sampleSubmission.gz"):
        (tmp_path / name).write_bytes(gzip.compress(b"x\n"))
    assert get_recipe("avazu").data_files(tmp_path) == [tmp_path / "train.gz"]


def test_a_file_given_by_name_that_is_not_data_is_an_error(tmp_path):
    (tmp_path / "README.txt").write_text("1\t2\n")
    with pytest.raises(CtrDistillError, match=r"README\.txt is not a data file of recipe 'criteo' "
                       r"\(by its name\)"):
        run(tmp_path, "criteo", tmp_path / "README.txt", "x1")


def test_avazu_directory_reads_every_csv_with_its_header(tmp_path):
    text = (RAW / "avazu" / "train.csv").read_text().splitlines()
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.csv").write_text("\n".join(text[:100]) + "\n")
    (tmp_path / "raw" / "b.csv").write_text("\n".join([text[0], *text[100:]]) + "\n")
    _, parts = run(tmp_path, "avazu", tmp_path / "raw", "x4", name="parts")
    _, whole = run(tmp_path, "avazu", RAW / "avazu", "x4", name="whole")
    for split in SPLITS:
        assert read_split(parts, split).equals(read_split(whole, split))


def test_movielens_directory_names_the_files_it_does_not_read(tmp_path, caplog):
    shutil.copytree(RAW / "ml-100k", tmp_path / "ml-100k")
    for name in ("README", "u1.base", "u.genre"):
        (tmp_path / "ml-100k" / name).write_text("x\n")
    with caplog.at_level("WARNING", logger="ctrdistill.data.sources"):
        feature_map, _ = run(tmp_path, "movielens", tmp_path / "ml-100k", "x1")
    assert len(feature_map.fields) == 7
    assert [r.getMessage().split("; ")[1] for r in caplog.records] == [
        "not used: README, u.genre, u1.base"]


# --------------------------------------------------------------------------------------- avazu

AVAZU_IDS = ["C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id",
             "app_domain", "app_category", "device_id", "device_ip", "device_model",
             "device_type", "device_conn_type", *(f"C{i}" for i in range(14, 22))]


def avazu_raw() -> list[dict[str, str]]:
    with (RAW / "avazu" / "train.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_avazu_x4_drops_id_and_derives_time_fields(tmp_path):
    raw = avazu_raw()
    feature_map, out = run(tmp_path, "avazu", RAW / "avazu", "x4")
    names = [f.name for f in feature_map.fields]
    assert names == [*AVAZU_IDS, "hour_of_day", "weekday", "is_weekend"]
    assert "id" not in names and "hour" not in names and feature_map.has_day
    rows = check_rows_and_labels(out, feature_map, [float(r["click"]) for r in raw],
                                 (0.8, 0.1, 0.1))
    for column in AVAZU_IDS:
        check_id_field(out, feature_map, rows, column, [r[column] for r in raw], 2)
    stamps = [datetime.strptime(r["hour"], "%y%m%d%H") for r in raw]
    check_id_field(out, feature_map, rows, "hour_of_day", [str(t.hour) for t in stamps], 2)
    check_id_field(out, feature_map, rows, "weekday", [str(t.weekday()) for t in stamps], 2)
    check_id_field(out, feature_map, rows, "is_weekend",
                   [str(int(t.weekday() >= 5)) for t in stamps], 2)
    assert rows["day"].to_list() == [(t.date() - date(2014, 10, 21)).days for t in stamps]


def test_avazu_x1_keeps_hour_as_one_of_22_fields(tmp_path):
    """BARS Avazu_x1: every raw column but id and click, hour as it is, min count 1."""
    raw = avazu_raw()
    feature_map, out = run(tmp_path, "avazu", RAW / "avazu", "x1")
    names = [f.name for f in feature_map.fields]
    assert names == ["hour", *AVAZU_IDS] and len(names) == 22
    rows = check_rows_and_labels(out, feature_map, [float(r["click"]) for r in raw],
                                 (0.7, 0.1, 0.2))
    for column in ["hour", *AVAZU_IDS]:
        check_id_field(out, feature_map, rows, column, [r[column] for r in raw], 1)
    stamps = [datetime.strptime(r["hour"], "%y%m%d%H") for r in raw]
    assert rows["day"].to_list() == [(t.date() - date(2014, 10, 21)).days for t in stamps]


def test_avazu_hour_decomposition_matches_datetime():
    recipe = get_recipe("avazu")
    schema = recipe.default_schema(recipe.protocols["x4"])
    frame = pl.concat(list(recipe.read(RAW / "avazu", schema, 50)))
    assert frame.columns == schema.raw_columns()
    raw = avazu_raw()
    for index in (0, 1, 57, 130, len(raw) - 1):
        stamp = datetime.strptime(raw[index]["hour"], "%y%m%d%H")
        row = frame.row(index, named=True)
        assert row["hour_of_day"] == stamp.hour
        assert row["weekday"] == stamp.weekday()
        assert row["is_weekend"] == int(stamp.weekday() >= 5)
        assert row["day"] == (stamp.date() - date(2014, 10, 21)).days
        assert row["site_id"] == raw[index]["site_id"]  # ids stay strings
    assert frame["is_weekend"].sum() > 0  # the fixture spans a weekend
    assert frame.schema["C1"] == pl.String and frame.schema["click"] == pl.Float64


def test_avazu_day_split_by_days(tmp_path):
    raw = avazu_raw()
    days = [(datetime.strptime(r["hour"], "%y%m%d%H").date() - date(2014, 10, 21)).days
            for r in raw]
    feature_map, out = run(tmp_path, "avazu", RAW / "avazu", "x4",
                           split={"kind": "day", "valid_days": [8], "test_days": [9]})
    rows = all_rows(out)
    expected = ["valid" if d == 8 else "test" if d == 9 else "train" for d in days]
    assert rows["split"].to_list() == expected
    assert feature_map.splits["test"] == days.count(9) > 0


def test_avazu_invalid_hour_is_one_clear_error(tmp_path):
    text = (RAW / "avazu" / "train.csv").read_text().splitlines()
    fields = text[5].split(",")
    fields[2] = "14103299"
    text[5] = ",".join(fields)
    (tmp_path / "train.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(CtrDistillError, match=r"invalid hour '14103299' \(expected YYMMDDHH\)"):
        run(tmp_path, "avazu", tmp_path / "train.csv", "x4")
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------------------- frappe


FRAPPE_FILES = [RAW / "frappe" / "frappe.train.libfm", RAW / "frappe" / "frappe.test.libfm"]


def frappe_raw(files: list[Path] = FRAPPE_FILES) -> list[list[str]]:
    rows = []
    for file in files:  # a files split numbers the train file's rows first
        rows += [line.split() for line in file.read_text().splitlines()]
    assert all(len(r) == 11 for r in rows) and {r[0] for r in rows} == {"-1", "1"}
    return rows


def test_frappe_libfm_labels_and_one_hot_fields(tmp_path):
    """The fixture folder holds Frappe's train and test files: their split is kept; valid rows
    are drawn from the train file (no validation file) by the protocol's 7:2 proportion."""
    raw = frappe_raw()
    feature_map, out = run(tmp_path, "frappe", RAW / "frappe", "x1")
    assert [f.name for f in feature_map.fields] == [f"f{k}" for k in range(10)]
    rows = all_rows(out)
    assert rows["row_id"].to_list() == list(range(len(raw)))
    assert rows["label"].to_list() == [1.0 if r[0] == "1" else 0.0 for r in raw]
    train_lines = len(FRAPPE_FILES[0].read_text().splitlines())
    split = rows["split"].to_list()
    assert set(split[train_lines:]) == {"test"}
    assert abs(split[:train_lines].count("valid") / train_lines - 2 / 9) < 0.08
    assert feature_map.splits == {s: split.count(s) for s in SPLITS}
    for k in range(10):
        check_id_field(out, feature_map, rows, f"f{k}", [r[1 + k].split(":")[0] for r in raw], 1)


def test_frappe_tolerates_extra_spaces_and_rejects_a_short_line(tmp_path):
    lines = (RAW / "frappe" / "frappe.test.libfm").read_text().splitlines()[:20]
    spaced = tmp_path / "spaced.libfm"
    spaced.write_text("\n".join(line.replace(" ", "  ") + " " for line in lines) + "\n")
    feature_map, _ = run(tmp_path, "frappe", spaced, "x1")
    assert sum(feature_map.splits.values()) == 20
    short = tmp_path / "short.libfm"
    short.write_text("\n".join([*lines[:3], lines[3].rsplit(" ", 1)[0], *lines[4:]]) + "\n")
    with pytest.raises(CtrDistillError, match=r"wrong number of columns at data row 4 "
                                              r"\(1-based\): expected 11, got 10"):
        run(tmp_path, "frappe", short, "x1", name="out2")


# ----------------------------------------------------------------------------------- movielens

ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def movielens_expected(variant: str):
    """ratings rows, users dict (age, gender, occupation, zip) and item genres, parsed simply."""
    folder = RAW / variant
    if variant == "ml-100k":
        ratings = [line.split("\t") for line in (folder / "u.data").read_text().splitlines()]
        users = {}
        for line in (folder / "u.user").read_text().splitlines():
            uid, age, gender, occupation, zipcode = line.split("|")
            users[uid] = [age, gender, occupation, zipcode]
        genres = {}
        for line in (folder / "u.item").read_bytes().decode("latin-1").splitlines():
            parts = line.split("|")
            genres[parts[0]] = [g for g, flag in zip(ML100K_GENRES, parts[5:], strict=True)
                                if flag == "1"]
    else:
        ratings = [line.split("::") for line in (folder / "ratings.dat").read_text().splitlines()]
        users = {}
        for line in (folder / "users.dat").read_text().splitlines():
            uid, gender, age, occupation, zipcode = line.split("::")
            users[uid] = [age, gender, occupation, zipcode]
        genres = {}
        for line in (folder / "movies.dat").read_bytes().decode("latin-1").splitlines():
            item, _, names = line.split("::")
            genres[item] = names.split("|")
    return ratings, users, genres


@pytest.mark.parametrize("variant", ["ml-100k", "ml-1m"])
def test_movielens_with_user_and_item_features(tmp_path, variant):
    ratings, users, genres = movielens_expected(variant)
    input = RAW / variant if variant == "ml-100k" else RAW / variant / "ratings.dat"
    feature_map, out = run(tmp_path, "movielens", input, "x1")
    assert [f.name for f in feature_map.fields] == [
        "user_id", "item_id", "age", "gender", "occupation", "zip", "genres"]
    assert feature_map.has_group and feature_map.has_day
    labels = [float(float(r[2]) >= 4) for r in ratings]
    assert 0 < sum(labels) < len(labels)
    rows = check_rows_and_labels(out, feature_map, labels, (0.7, 0.2, 0.1))
    check_id_field(out, feature_map, rows, "user_id", [r[0] for r in ratings], 1)
    check_id_field(out, feature_map, rows, "item_id", [r[1] for r in ratings], 1)
    for k, name in enumerate(["age", "gender", "occupation", "zip"]):
        tokens = [users.get(r[0], ["", "", "", ""])[k] for r in ratings]
        check_id_field(out, feature_map, rows, name, tokens, 1)
    check_sequence_field(out, feature_map, rows, "genres", [genres[r[1]] for r in ratings], 6)
    assert rows["day"].to_list() == [int(r[3]) // 86_400 for r in ratings]
    # group (for gAUC) is one value per user
    pairs = set(zip(rows["group"].to_list(), [r[0] for r in ratings], strict=True))
    assert len(pairs) == len({r[0] for r in ratings}) == len({g for g, _ in pairs})


def test_movielens_100k_user_without_profile_gets_the_missing_token(tmp_path):
    ratings, users, _ = movielens_expected("ml-100k")
    assert "13" not in users and any(r[0] == "13" for r in ratings)
    recipe = get_recipe("movielens")
    schema = recipe.default_schema(None, RAW / "ml-100k")
    frame = pl.concat(list(recipe.read(RAW / "ml-100k", schema, 64)))
    assert frame.filter(pl.col("user_id") == "13")["gender"].null_count() > 0
    assert frame.filter(pl.col("user_id") != "13")["gender"].null_count() == 0
    assert frame.filter(pl.col("item_id") == "40")["genres"].unique().to_list() == ["unknown"]
    assert frame["genres"].null_count() == 0  # every item found in u.item (latin-1 titles)


@pytest.mark.parametrize(("source", "renamed"), [("ml-100k/u.data", "ratings.tsv"),
                                                 ("ml-1m/ratings.dat", "ratings.txt")])
def test_movielens_variant_detected_from_content_without_side_files(tmp_path, source, renamed):
    folder = tmp_path / "raw"
    folder.mkdir()
    shutil.copy(RAW / source, folder / renamed)
    feature_map, _ = run(tmp_path, "movielens", folder / renamed, "x1")
    assert [f.name for f in feature_map.fields] == ["user_id", "item_id"]
    assert sum(feature_map.splits.values()) == len((RAW / source).read_text().splitlines())


def test_movielens_schema_asking_for_missing_side_files_is_an_error(tmp_path):
    shutil.copy(RAW / "ml-1m" / "ratings.dat", tmp_path / "ratings.dat")
    schema = get_recipe("movielens").default_schema(None, RAW / "ml-1m")
    with pytest.raises(CtrDistillError, match=r"users\.dat/movies\.dat is missing"):
        run(tmp_path, "movielens", tmp_path / "ratings.dat", schema=schema.model_dump())
    assert not (tmp_path / "out").exists()
