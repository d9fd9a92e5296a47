"""Pre-split inputs keep their split: Frappe's train/validation/test libfm files and BARS-style
train/valid/test CSV or Parquet files, found by name or listed in split.files; vocabularies are
fitted on the train files only; row ids number train, valid, then test rows."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from conftest import all_rows, prepare_recipe
from ctrdistill.cli import main
from ctrdistill.config import validate_config
from ctrdistill.data.prepare import SplitConfig
from ctrdistill.data.split_files import split_of_name
from ctrdistill.errors import CtrDistillError

RAW = Path(__file__).parent / "fixtures" / "raw"
SCHEMA = {"label": "label", "fields": [{"name": "a"}, {"name": "n", "kind": "numeric"}]}


def frappe_folder(root: Path) -> tuple[Path, dict[str, list[str]]]:
    """Frappe's three files as its release names them, cut from the fixture's lines."""
    lines = [*(RAW / "frappe" / "frappe.train.libfm").read_text().splitlines(),
             *(RAW / "frappe" / "frappe.test.libfm").read_text().splitlines()]
    parts = {"train": lines[:120], "validation": lines[120:160], "test": lines[160:]}
    folder = root / "frappe"
    folder.mkdir()
    for name, part in parts.items():
        (folder / f"frappe.{name}.libfm").write_text("\n".join(part) + "\n")
    return folder, parts


def test_frappe_files_keep_their_split_and_ids_number_train_valid_test(tmp_path):
    folder, parts = frappe_folder(tmp_path)
    feature_map, out = prepare_recipe(tmp_path, "frappe", folder, protocol="x1")
    rows = all_rows(out)
    sizes = [len(parts[n]) for n in ("train", "validation", "test")]
    assert feature_map.splits == dict(zip(("train", "valid", "test"), sizes, strict=True))
    assert rows["split"].to_list() == (["train"] * sizes[0] + ["valid"] * sizes[1]
                                       + ["test"] * sizes[2])
    lines = parts["train"] + parts["validation"] + parts["test"]
    assert rows["label"].to_list() == [1.0 if line.split()[0] == "1" else 0.0 for line in lines]
    # vocabularies from the train file only: an id first seen in valid/test is out-of-vocabulary
    seen = {line.split()[1].split(":")[0] for line in parts["train"]}
    f0 = [line.split()[1].split(":")[0] for line in lines]
    assert set(pl.read_parquet(out / "vocab" / "f0.parquet")["value"]) == seen
    unseen = [i for i, t in enumerate(f0) if t not in seen]
    assert unseen and all(rows["f0"][i] == 1 for i in unseen)
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["split_files"] == {"train": ["frappe.train.libfm"],
                                     "valid": ["frappe.validation.libfm"],
                                     "test": ["frappe.test.libfm"]}


def csv_table(rows: range) -> str:
    return "label,a,n\n" + "".join(f"{i % 2},v{i % 7},{i}\n" for i in rows)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_bars_style_train_valid_test_files_keep_their_split(tmp_path, suffix):
    folder = tmp_path / "bars"
    folder.mkdir()
    for name, rows in (("train", range(0, 30)), ("valid", range(30, 40)),
                       ("test", range(40, 52))):
        if suffix == ".csv":
            (folder / f"{name}.csv").write_text(csv_table(rows))
        else:
            pl.read_csv(csv_table(rows).encode()).write_parquet(folder / f"{name}.parquet")
    feature_map, out = prepare_recipe(tmp_path, suffix[1:], folder, schema=SCHEMA)
    assert feature_map.splits == {"train": 30, "valid": 10, "test": 12}
    rows = all_rows(out)
    assert rows["row_id"].to_list() == list(range(52))
    assert rows["split"].to_list() == ["train"] * 30 + ["valid"] * 10 + ["test"] * 12


def test_split_files_name_the_files_and_a_split_without_files_is_drawn_from_train(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "a.csv").write_text(csv_table(range(0, 200)))
    (folder / "b.csv").write_text(csv_table(range(200, 230)))
    (folder / "c.csv").write_text(csv_table(range(230, 240)))
    feature_map, out = prepare_recipe(
        tmp_path, "csv", folder, schema=SCHEMA,
        split={"files": {"train": "a.csv", "test": ["b.csv"]}, "ratios": [0.5, 0.5, 0]})
    rows = all_rows(out)
    split = rows["split"].to_list()
    assert split[200:] == ["test"] * 30  # c.csv is in no split: left out
    assert len(rows) == 230 and 70 < split[:200].count("valid") < 130
    assert feature_map.splits["test"] == 30


def test_a_random_split_pools_the_files_when_asked(tmp_path):
    folder, _ = frappe_folder(tmp_path)
    feature_map, _ = prepare_recipe(tmp_path, "frappe", folder, protocol="x1",
                                    split={"kind": "random"})
    assert abs(feature_map.splits["test"] - 21) < 15 and feature_map.splits["valid"] > 15


def test_names_that_split_only_some_files_are_pooled_with_a_warning(tmp_path, caplog):
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "train.csv").write_text(csv_table(range(0, 20)))
    (folder / "extra.csv").write_text(csv_table(range(20, 40)))
    with caplog.at_level("WARNING", logger="ctrdistill.data.split_files"):
        feature_map, _ = prepare_recipe(tmp_path, "csv", folder, schema=SCHEMA)
    assert sum(feature_map.splits.values()) == 40 and feature_map.splits["test"] > 0
    assert [r.getMessage() for r in caplog.records] == [
        f"{folder}: some file names name a split (train, valid, test) but not all do, so all "
        "files are pooled and split at random; set split.kind: files and split.files to keep a "
        "given split"]


def test_split_files_from_the_command_line(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "x.csv").write_text(csv_table(range(0, 20)))
    (folder / "y.csv").write_text(csv_table(range(20, 25)))
    (tmp_path / "prep.yaml").write_text(f"schema: {json.dumps(SCHEMA)}\n")
    assert main(["prepare", "--config", str(tmp_path / "prep.yaml"), "--recipe", "csv",
                 "--input", str(folder), "--output", str(tmp_path / "out"), "--quiet",
                 "--set", "split.files.train=x.csv", "--set", "split.files.valid=[y.csv]",
                 "--set", "split.ratios=[1,0,0]"]) == 0  # no test rows drawn from train
    rows = all_rows(tmp_path / "out")
    assert rows["split"].to_list() == ["train"] * 20 + ["valid"] * 5


@pytest.mark.parametrize(("name", "split"), [
    ("frappe.train.libfm", 0), ("train.csv", 0), ("day2_training.parquet", 0),
    ("frappe.validation.libfm", 1), ("valid.csv", 1), ("x_val.csv", 1), ("dev.tsv", 1),
    ("test.yzx.txt", 2), ("Test.csv", 2), ("train_test.csv", None), ("contest.csv", None),
    ("part-0.csv", None)])
def test_which_split_a_file_name_names(name, split):
    assert split_of_name(name) == split


ERRORS = [
    ({"split": {"kind": "files"}}, "plain",
     r"raw: the file names do not give each file a split .*list them in split\.files"),
    ({"split": {"files": {"train": ["a.csv"], "test": ["nope.csv"]}}}, "plain",
     r"split\.files\.test: no file 'nope\.csv' in "),
    ({"split": {"files": {"valid": ["a.csv"]}}}, "plain", r"split\.files names no train file"),
    ({"split": {"files": {"train": ["a.csv"], "test": ["a.csv"]}}}, "plain",
     r"split\.files: 'a\.csv' is listed twice"),
    ({"split": {"kind": "files"}}, "file", r"split\.kind files needs a directory input"),
]


def test_split_files_with_another_kind_is_refused():
    with pytest.raises(CtrDistillError, match=r"files needs kind: files \(or no kind\), not day"):
        validate_config(SplitConfig, {"kind": "day", "files": {"train": "a.csv"},
                                      "test_days": [1]}, "split")


def test_a_recipe_that_reads_one_dataset_has_no_split_files(tmp_path):
    with pytest.raises(CtrDistillError, match=r"recipe 'movielens' reads its input as one "
                                              r"dataset, so it has no split files"):
        prepare_recipe(tmp_path, "movielens", RAW / "ml-100k", split={"kind": "files"})


@pytest.mark.parametrize(("extra", "input", "message"), ERRORS)
def test_split_file_mistakes_are_one_line(tmp_path, extra, input, message):
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "a.csv").write_text(csv_table(range(0, 10)))
    (folder / "b.csv").write_text(csv_table(range(10, 20)))
    path = folder if input == "plain" else folder / "a.csv"
    with pytest.raises(CtrDistillError, match=message):
        prepare_recipe(tmp_path, "csv", path, schema=SCHEMA, **extra)
    assert not (tmp_path / "out").exists()
