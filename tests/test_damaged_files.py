"""Every file ctrdistill reads, damaged: one line naming the file and what rebuilds it, exit 2.

Each case copies a healthy dataset, run, label store or bundle, damages one file in it (cut
short, replaced by text, or missing a key) and runs a command that reads it."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import yaml

from conftest import cli_prepared, cli_trained_lr
from ctrdistill.cli import main
from ctrdistill.errors import CtrDistillError
from ctrdistill.labels.store import LabelStore, write_labels
from ctrdistill.serving.bundle import load_bundle


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A prepared dataset, its raw rows as CSV, a trained run and a label store."""
    root = tmp_path_factory.mktemp("damaged")
    cli_trained_lr(root, cli_prepared(root, rows=2000, max_vocab=50))
    write_labels([root / "runs" / "lr"], root / "prep", root / "store", show_progress=False)
    raw = pl.concat([pl.read_parquet(f) for f in sorted((root / "raw").glob("*.parquet"))])
    raw.write_csv(root / "raw.csv")
    (root / "raw.csv.gz").write_bytes(gzip.compress((root / "raw.csv").read_bytes()))
    return {"root": root, "prep": root / "prep", "run": root / "runs" / "lr",
            "store": root / "store"}


def cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


def junk(path: Path) -> None:
    path.write_text("not what was written {\n")


def without(key: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = json.loads(path.read_text())
        del data[key]
        path.write_text(json.dumps(data))
    return damage


def copy(world: dict[str, Path], what: str, tmp_path: Path) -> Path:
    target = tmp_path / what
    shutil.copytree(world[what], target)
    return target


def one_error_line(capsys, code: int) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# (copied tree, damaged file inside it, damage, what the message tells to do)
DATASET_CASES = [
    ("test/part-00000.parquet", cut),
    ("test/part-00000.parquet", junk),
    ("feature_map.json", junk),
    ("feature_map.json", without("fields")),
]


@pytest.mark.parametrize(("file", "damage"), DATASET_CASES)
def test_a_damaged_prepared_dataset_is_one_line(world, tmp_path: Path, capsys, file: str,
                                                damage: Callable[[Path], None]) -> None:
    data = copy(world, "prep", tmp_path)
    damage(data / file)
    line = one_error_line(capsys, main(["evaluate", str(world["run"]), "--data", str(data)]))
    assert str(data / file) in line and "prepare the data again" in line, line


def test_a_shard_cut_short_stops_training_before_the_first_step(world, tmp_path: Path,
                                                                capsys) -> None:
    data = copy(world, "prep", tmp_path)
    cut(data / "train" / "part-00000.parquet")
    config = yaml.safe_load((world["root"] / "train.yaml").read_text())
    config |= {"data": str(data), "output_dir": str(tmp_path / "runs")}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(config))
    line = one_error_line(capsys, main(["train", str(tmp_path / "t.yaml")]))
    assert "part-00000.parquet is damaged" in line and "prepare the data again" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("file", "damage"), [
    ("prepare/prepare_state.json", junk),
    ("prepare/prepare_state.json", without("schema")),
    ("prepare/vocab/C1.parquet", cut),
    ("checkpoint.pt", cut),
    ("checkpoint.pt", junk),
])
def test_a_damaged_run_is_one_line(world, tmp_path: Path, capsys, file: str,
                                   damage: Callable[[Path], None]) -> None:
    run = copy(world, "run", tmp_path)
    damage(run / file)
    code = main(["predict", str(run), "--input", str(world["root"] / "raw.csv"),
                 "--output", str(tmp_path / "s.parquet")])
    line = one_error_line(capsys, code)
    assert str(run / file) in line and "train the run again" in line, line
    assert not (tmp_path / "s.parquet").exists()


@pytest.mark.parametrize("damage", [cut, junk])
def test_a_damaged_gzip_input_is_one_line(world, tmp_path: Path, capsys,
                                          damage: Callable[[Path], None]) -> None:
    raw = tmp_path / "raw.csv.gz"
    shutil.copyfile(world["root"] / "raw.csv.gz", raw)
    damage(raw)
    code = main(["predict", str(world["run"]), "--input", str(raw),
                 "--output", str(tmp_path / "s.parquet")])
    line = one_error_line(capsys, code)
    assert str(raw) in line and "check the file" in line, line


@pytest.mark.parametrize(("file", "damage"), [
    ("manifest.json", junk),
    ("manifest.json", without("partitions")),
    ("partitions/train-part-00000-day0-v0.parquet", cut),
])
def test_a_damaged_label_store_is_one_line(world, tmp_path: Path, file: str,
                                           damage: Callable[[Path], None]) -> None:
    store = copy(world, "store", tmp_path)
    damage(store / file)
    with pytest.raises(CtrDistillError, match="label the data again") as info:
        LabelStore(store).frame("train")
    assert str(store / file) in str(info.value)


def test_labelling_into_a_damaged_store_is_one_line(world, tmp_path: Path, capsys) -> None:
    store = copy(world, "store", tmp_path)
    junk(store / "manifest.json")
    code = main(["label", str(world["run"]), "--data", str(world["prep"]),
                 "--output", str(store)])
    assert "manifest.json is damaged" in one_error_line(capsys, code)


@pytest.mark.parametrize(("file", "damage"), [
    ("manifest.json", junk),
    ("manifest.json", without("model_file")),
    ("model.onnx", junk),
])
def test_a_damaged_bundle_is_one_line(tmp_path: Path, file: str,
                                      damage: Callable[[Path], None]) -> None:
    pytest.importorskip("onnxruntime")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "onnx",
                                                        "model_file": "model.onnx"}))
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07" * 64)
    damage(tmp_path / file)
    with pytest.raises(CtrDistillError, match="export the bundle again") as info:
        load_bundle(tmp_path)
    assert str(tmp_path / file) in str(info.value)
