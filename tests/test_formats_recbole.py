"""The `recbole` recipe on RecBole's atomic files (MovieLens-100K layout), checked against a
plain-Python parse of the fixture."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from conftest import all_rows, prepare_recipe
from ctrdistill.errors import CtrDistillError

ML100K = Path(__file__).parent / "fixtures" / "raw" / "recbole" / "ml-100k"


def run(tmp_path: Path, input: Path, name: str = "out", **extra):
    return prepare_recipe(tmp_path, "recbole", input, name, **extra)


def vocab(out: Path, owner: str) -> dict[str, int]:
    frame = pl.read_parquet(out / "vocab" / f"{owner}.parquet")
    return dict(zip(frame["value"], frame["id"], strict=True))


def expected_vocab(tokens: list[str]) -> dict[str, int]:
    counts = Counter(tokens)
    return {v: i + 2 for i, v in enumerate(sorted(counts, key=lambda v: (-counts[v], v)))}


def atomic(name: str) -> list[dict[str, str]]:
    header, *lines = (ML100K / f"ml-100k.{name}").read_text().splitlines()
    names = [cell.split(":")[0] for cell in header.split("\t")]
    return [dict(zip(names, line.split("\t"), strict=True)) for line in lines]


def copy_dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-100k"
    shutil.copytree(ML100K, folder)
    return folder


def test_fixture_is_in_recbole_atomic_format():
    heads = {n: (ML100K / f"ml-100k.{n}").read_text().splitlines()[0] for n in
             ("inter", "user", "item")}
    assert heads == {
        "inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float",
        "user": "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token",
        "item": "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"}
    users = {u["user_id"] for u in atomic("user")}
    assert "31" not in users and any(r["user_id"] == "31" for r in atomic("inter"))


def test_ml100k_directory_joins_users_and_items_and_thresholds_ratings(tmp_path):
    inter, users, items = atomic("inter"), atomic("user"), atomic("item")
    feature_map, out = run(tmp_path, ML100K, split={"ratios": [1, 0, 0]})
    assert [(f.name, f.kind) for f in feature_map.fields] == [
        ("user_id", "categorical"), ("item_id", "categorical"), ("age", "categorical"),
        ("gender", "categorical"), ("occupation", "categorical"), ("zip_code", "categorical"),
        ("movie_title", "sequence"), ("release_year", "categorical"), ("class", "sequence")]
    assert feature_map.has_group and feature_map.has_day
    sizes = {f.name: f.vocab_size for f in feature_map.fields}
    assert sizes["user_id"] == len({r["user_id"] for r in inter}) + 2
    assert sizes["item_id"] == len({r["item_id"] for r in inter}) + 2
    rows = all_rows(out)
    assert rows["label"].to_list() == [float(float(r["rating"]) >= 4) for r in inter]
    assert rows["day"].to_list() == [int(float(r["timestamp"])) // 86_400 for r in inter]
    by_user = {u["user_id"]: u for u in users}
    occupations = [by_user.get(r["user_id"], {}).get("occupation", "") for r in inter]
    ids = vocab(out, "occupation")
    assert ids == expected_vocab(occupations) and "" in ids  # user 31 has no .user line
    assert rows["occupation"].to_list() == [ids[o] for o in occupations]
    by_item = {i["item_id"]: i for i in items}
    titles = [by_item[r["item_id"]]["movie_title"].split(" ") for r in inter]
    words = vocab(out, "movie_title")
    assert words == expected_vocab([w for t in titles for w in t])
    assert rows["movie_title"].to_list() == [([words[w] for w in t] + [0] * 20)[:20]
                                             for t in titles]
    genres = vocab(out, "class")
    first = by_item[inter[0]["item_id"]]["class"].split(" ")
    assert rows["class"][0].to_list()[:len(first) + 1] == [genres[g] for g in first] + [0]


def test_the_inter_file_as_input_finds_its_side_files(tmp_path):
    _, a = run(tmp_path, ML100K, name="a")
    _, b = run(tmp_path, ML100K / "ml-100k.inter", name="b")
    assert all_rows(a).equals(all_rows(b))


def test_a_label_column_is_the_label_and_options_pick_columns(tmp_path):
    folder = tmp_path / "clicks"
    folder.mkdir()
    (folder / "clicks.inter").write_text(
        "uid:token\titem_id:token\tlabel:float\trating:float\tprice:float\temb:float_seq\n"
        "u1\ti1\t1\t2\t3.5\t0.1 0.2\nu2\ti1\t0\t5\t\t0.3 0.4\nu1\ti2\t1\t1\t1.5\t0.5 0.6\n")
    (folder / "clicks.user").write_text("uid:token\tcity:token\nu1\tparis\nu2\tlyon\n")
    feature_map, out = run(tmp_path, folder, options={"user_id_field": "uid", "time_field": None},
                           split={"ratios": [1, 0, 0]})
    assert [(f.name, f.kind) for f in feature_map.fields] == [
        ("uid", "categorical"), ("item_id", "categorical"), ("price", "numeric"),
        ("city", "categorical")]  # rating is no feature; float_seq is not used
    rows = all_rows(out)
    assert rows["label"].to_list() == [1.0, 0.0, 1.0]
    assert rows["price"].to_list() == [3.5, 0.0, 1.5]
    assert rows["city"].to_list() == [vocab(out, "city")[c] for c in ["paris", "lyon", "paris"]]
    assert not feature_map.has_day


def test_rating_threshold_option(tmp_path):
    inter = atomic("inter")
    _, out = run(tmp_path, ML100K, options={"rating_threshold": 3})
    assert all_rows(out)["label"].to_list() == [float(float(r["rating"]) >= 3) for r in inter]


def test_other_files_in_the_dataset_directory_are_named(tmp_path, caplog):
    folder = copy_dataset(tmp_path)
    (folder / "ml-100k.kg").write_text("head_id:token\trelation_id:token\ttail_id:token\n")
    (folder / "README.md").write_text("x\n")
    with caplog.at_level("WARNING", logger="ctrdistill.data.sources"):
        run(tmp_path, folder)
    assert [r.getMessage().split("; ")[1] for r in caplog.records] == [
        "not used: README.md, ml-100k.kg"]


def replace_line(path: Path, index: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[index] = text
    path.write_text("\n".join(lines) + "\n")


ERRORS = [
    ("ml-100k.inter", 0, "user_id\titem_id:token\trating:float\ttimestamp:float",
     r"ml-100k\.inter: header column 'user_id' is not name:type"),
    ("ml-100k.inter", 0, "user_id:token\titem_id:token\trating:int\ttimestamp:float",
     r"column 'rating' has type 'int'; RecBole types are float, float_seq, token, token_seq"),
    ("ml-100k.inter", 0, "user_id:token\titem_id:token\tscore:float\ttimestamp:float",
     r"has neither a 'label' column nor a 'rating' column to threshold"),
    ("ml-100k.inter", 3, "7\t3\t4",
     r"ml-100k\.inter: wrong number of columns at data row 3 \(1-based\): expected 4, got 3"),
    ("ml-100k.inter", 5, "7\t3\tfour\t881250949",
     r"non-numeric value in a numeric column 'rating' at data row 5 \(1-based\): 'four'"),
    ("ml-100k.user", 0, "uid:token\tage:token\tgender:token\toccupation:token\tzip_code:token",
     r"ml-100k\.user and .*ml-100k\.inter need a 'user_id:token' column to join on \(set "
     r"options\.user_id_field\)"),
    ("ml-100k.item", 0, "item_id:token\tage:token\trelease_year:token\tclass:token_seq",
     r"column 'age' is in both .*ml-100k\.user and .*ml-100k\.item"),
]


@pytest.mark.parametrize(("name", "index", "text", "message"), ERRORS)
def test_bad_atomic_files_are_one_clear_error(tmp_path, name, index, text, message):
    folder = copy_dataset(tmp_path)
    replace_line(folder / name, index, text)
    with pytest.raises(CtrDistillError, match=message) as error:
        run(tmp_path, folder)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_inputs_that_are_not_one_recbole_dataset(tmp_path):
    folder = copy_dataset(tmp_path)
    shutil.copy(folder / "ml-100k.inter", folder / "other.inter")
    with pytest.raises(CtrDistillError, match=r"several \.inter files in .*ml-100k \(ml-100k"
                                              r"\.inter, other\.inter\) that are not one "
                                              r"dataset's .*; point --input at one"):
        run(tmp_path, folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CtrDistillError, match=r"recbole: no \.inter file in .*empty"):
        run(tmp_path, tmp_path / "empty")
    with pytest.raises(CtrDistillError, match=r"ml-100k\.user is not a \.inter file"):
        run(tmp_path, folder / "ml-100k.user")
    with pytest.raises(CtrDistillError, match=r"recipe 'recbole' options: unknown key "
                                              r"'threshold'; did you mean 'rating_threshold'\?"):
        run(tmp_path, ML100K, options={"threshold": 3})
