"""RecBole's benchmark files `<name>.train.inter`/`.valid.inter`/`.test.inter` keep their split,
found by name or listed in split.files, each joined to the dataset's `.user`/`.item`; the
vocabularies are fitted on the train file only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from conftest import all_rows, prepare_recipe
from ctrdistill.errors import CtrDistillError

SPLIT = Path(__file__).parent / "fixtures" / "raw" / "recbole" / "ml-100k-split"
PARTS = ("train", "valid", "test")


def atomic(path: Path) -> list[dict[str, str]]:
    header, *lines = path.read_text().splitlines()
    names = [cell.split(":")[0] for cell in header.split("\t")]
    return [dict(zip(names, line.split("\t"), strict=True)) for line in lines]


def inters() -> dict[str, list[dict[str, str]]]:
    return {part: atomic(SPLIT / f"ml-100k.{part}.inter") for part in PARTS}


def vocab(out: Path, owner: str) -> dict[str, int]:
    frame = pl.read_parquet(out / "vocab" / f"{owner}.parquet")
    return dict(zip(frame["value"], frame["id"], strict=True))


def renamed(tmp_path: Path, names: dict[str, str]) -> Path:
    """The split fixture with its .inter files renamed (old -> new suffix), others dropped."""
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    for side in ("user", "item"):
        shutil.copy(SPLIT / f"ml-100k.{side}", folder)
    for old, new in names.items():
        shutil.copy(SPLIT / f"ml-100k.{old}.inter", folder / f"ml-100k.{new}.inter")
    return folder


def test_fixture_is_in_recbole_benchmark_format():
    assert sorted(p.name for p in SPLIT.iterdir()) == [
        "ml-100k.item", "ml-100k.test.inter", "ml-100k.train.inter", "ml-100k.user",
        "ml-100k.valid.inter"]
    heads = {(SPLIT / f"ml-100k.{p}.inter").read_text().splitlines()[0] for p in PARTS}
    assert heads == {"user_id:token\titem_id:token\trating:float\ttimestamp:float"}


def test_benchmark_files_keep_their_split_and_join_the_side_files_in_each(tmp_path):
    parts = inters()
    rows_in = [r for p in PARTS for r in parts[p]]
    feature_map, out = prepare_recipe(tmp_path, "recbole", SPLIT)
    sizes = [len(parts[p]) for p in PARTS]
    assert feature_map.splits == dict(zip(PARTS, sizes, strict=True)) and sizes == [60, 15, 15]
    rows = all_rows(out)
    assert rows["row_id"].to_list() == list(range(90))  # train rows, then valid, then test
    assert rows["split"].to_list() == [p for p in PARTS for _ in parts[p]]
    assert rows["label"].to_list() == [float(float(r["rating"]) >= 4) for r in rows_in]
    # vocabularies from the train file only: an id first seen in valid/test is out-of-vocabulary
    users = vocab(out, "user_id")
    assert set(users) == {r["user_id"] for r in parts["train"]}
    unseen = [i for i, r in enumerate(rows_in) if r["user_id"] not in users]
    assert unseen and all(rows["user_id"][i] == 1 for i in unseen)
    # the .user and .item features are joined in every split
    by_user = {u["user_id"]: u for u in atomic(SPLIT / "ml-100k.user")}
    occupations = vocab(out, "occupation")
    expected = [occupations.get(by_user.get(r["user_id"], {}).get("occupation", ""), 1)
                for r in rows_in]
    assert rows["occupation"].to_list() == expected and min(expected[60:75]) >= 2
    by_item = {i["item_id"]: i for i in atomic(SPLIT / "ml-100k.item")}
    genres = vocab(out, "class")
    assert [g[0] for g in rows["class"].to_list()] == [
        genres.get(by_item[r["item_id"]]["class"].split(" ")[0], 1) for r in rows_in]
    assert (rows["release_year"] >= 2).all()  # every item has a .item line
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["split_files"] == {p: [f"ml-100k.{p}.inter"] for p in PARTS}


def test_split_files_name_benchmark_files_whose_names_name_no_split(tmp_path):
    _, expected = prepare_recipe(tmp_path, "recbole", SPLIT, "expected")
    folder = renamed(tmp_path, {"train": "a", "valid": "b", "test": "c"})
    files = {p: [f"ml-100k.{n}.inter"] for p, n in zip(PARTS, "abc", strict=True)}
    feature_map, out = prepare_recipe(tmp_path, "recbole", folder, split={"files": files})
    assert feature_map.splits == {"train": 60, "valid": 15, "test": 15}
    assert all_rows(out).equals(all_rows(expected))
    # without the mapping the files are pooled, in name order, and split at random
    feature_map, out = prepare_recipe(tmp_path, "recbole", folder, "pooled")
    assert sum(feature_map.splits.values()) == 90 and feature_map.splits["train"] != 60
    assert "split_files" not in json.loads((out / "prepare_report.json").read_text())
    assert all_rows(out)["label"].to_list() == all_rows(expected)["label"].to_list()


def test_a_split_without_a_file_is_drawn_from_train(tmp_path):
    folder = renamed(tmp_path, {"train": "train", "test": "test"})
    feature_map, out = prepare_recipe(tmp_path, "recbole", folder)
    splits = feature_map.splits
    assert splits["test"] == 15 and splits["train"] + splits["valid"] == 60 and splits["valid"]
    assert all_rows(out)["split"].to_list()[60:] == ["test"] * 15


def test_one_benchmark_file_as_input_joins_the_dataset_side_files(tmp_path):
    """As predict reads it: `ml-100k.test.inter` joins `ml-100k.user`, not `.test.user`."""
    feature_map, out = prepare_recipe(tmp_path, "recbole", SPLIT / "ml-100k.test.inter",
                                      split={"ratios": [1, 0, 0]})
    assert {"occupation", "class"} <= {f.name for f in feature_map.fields}
    by_user = {u["user_id"]: u for u in atomic(SPLIT / "ml-100k.user")}
    occupations = [by_user.get(r["user_id"], {}).get("occupation", "")
                   for r in atomic(SPLIT / "ml-100k.test.inter")]
    ids = vocab(out, "occupation")
    assert all_rows(out)["occupation"].to_list() == [ids[o] for o in occupations]
    assert set(occupations) - {""}


def test_benchmark_file_mistakes_are_one_line(tmp_path):
    folder = renamed(tmp_path, {p: p for p in PARTS})
    test = folder / "ml-100k.test.inter"
    test.write_text(test.read_text().replace("rating:float", "score:float", 1))
    with pytest.raises(CtrDistillError, match=r"recbole: ml-100k\.train\.inter and "
                                              r"ml-100k\.test\.inter have different columns"):
        prepare_recipe(tmp_path, "recbole", folder)
    shutil.copy(SPLIT / "ml-100k.test.inter", test)
    with pytest.raises(CtrDistillError, match=r"ml-100k\.user is not a \.inter file"):
        prepare_recipe(tmp_path, "recbole", folder, split={"files": {
            "train": ["ml-100k.train.inter"], "test": ["ml-100k.user"]}})
    assert not (tmp_path / "out").exists()
