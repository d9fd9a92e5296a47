"""Export bundles: every zoo model, both ensemble kinds and a distilled student export to ONNX
with logits within 1e-4 of PyTorch's, and raw rows -> ids in a bundle are prepare's own.

The models are freshly initialised (parity needs no training), saved as run directories the
way the run writer saves them: a checkpoint and the dataset's fitted preprocessing."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

import ctrdistill as cd
from ctrdistill.data.encode import PrepareState, copy_state
from ctrdistill.data.prepare import PrepareConfig, prepare
from ctrdistill.data.schema import FeatureMap
from ctrdistill.data.synthetic import SynthConfig, write_synthetic
from ctrdistill.errors import CtrDistillError
from ctrdistill.models import build_model, model_names
from ctrdistill.models.base import CTRModel
from ctrdistill.models.ensembles import KDEFModel, PeerEnsemble
from ctrdistill.pipelines.export import PARITY_TOLERANCE, sample_blocks
from ctrdistill.pipelines.load import load_run
from ctrdistill.rundir import RunDirectory
from ctrdistill.serving import load_bundle
from ctrdistill.training.checkpoint import save_checkpoint

# Every encoding prepare has: ids with OOV (min count 2) and a shared vocabulary, a sequence,
# and numerics log1p'd, standardised, bucketised and left as they are.
SCHEMA = {
    "label": "label", "min_count": 2,
    "fields": [
        {"name": "I1", "kind": "numeric", "transform": "log1p"},
        {"name": "I2", "kind": "numeric", "transform": "standardize"},
        {"name": "I3", "kind": "numeric", "transform": "bucketize"},
        {"name": "I4", "kind": "numeric"},
        *({"name": f"C{i}"} for i in range(1, 6)),
        {"name": "C6", "share_vocab_with": "C5"},
        {"name": "tags", "kind": "sequence", "max_length": 3},
    ],
}


def write_raw(root: Path, rows: int, seed: int) -> Path:
    """Synthetic raw rows as gzip CSV with a `|`-separated sequence column."""
    write_synthetic(SynthConfig(rows=rows, numeric_fields=4, categorical_fields=6,
                                max_vocab=300, seed=seed), root / "synth", show_progress=False)
    frame = pl.read_parquet(root / "synth" / "*.parquet").with_columns(
        pl.concat_str([pl.col("C1"), pl.col("C2"), pl.col("C3")], separator="|").alias("tags"))
    path = root / "logs.csv.gz"
    with gzip.open(path, "wb") as handle:
        frame.drop("p_true", "day").write_csv(handle)
    return path


def make_dataset(root: Path) -> tuple[Path, Path]:
    """(raw logs, prepared dataset)."""
    raw = write_raw(root, 3000, 11)
    prepare(PrepareConfig(recipe="csv", input=raw, output=root / "prep", schema=SCHEMA,
                          shard_rows=1000, chunk_rows=700), show_progress=False)
    return raw, root / "prep"


def save_run(directory: Path, model: CTRModel, feature_map: FeatureMap, dataset: Path) -> Path:
    """A run directory as the run writer leaves it, for what export and predict read."""
    directory.mkdir(parents=True)
    save_checkpoint(RunDirectory(directory).checkpoint(), model, feature_map)
    copy_state(dataset, directory)
    return directory


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    return make_dataset(tmp_path_factory.mktemp("export"))


def tiny(name: str, feature_map: FeatureMap) -> CTRModel:
    torch.manual_seed(0)
    return build_model({"name": name} | ({} if name == "lr" else {"embedding_dim": 4}),
                       feature_map)


def test_raw_rows_encode_to_prepares_ids(data: tuple[Path, Path]) -> None:
    raw, prep = data
    state = PrepareState.load(prep)
    encoded = pl.concat([frame.with_columns(keys) for frame, keys in state.read(raw, 500)])
    shards = pl.concat([pl.read_parquet(prep / split / "*.parquet") for split in
                        ("train", "valid", "test")]).sort("row_id")
    assert len(encoded) == len(shards) == 3000
    names = [f.name for f in state.feature_map.fields]
    assert encoded.select("row_id", *names).equals(shards.select("row_id", *names))
    # unseen ids and rare ones are OOV (1), and the sequence is padded with 0
    assert (shards["C5"] == 1).any() and (shards["tags"].list.get(2) >= 0).all()


@pytest.mark.parametrize("kind", ["zoo", "peer_ensemble", "kdef_ensemble"])
def test_export_matches_pytorch_on_every_model(data, tmp_path: Path, kind: str) -> None:
    raw, prep = data
    feature_map = FeatureMap.load(prep / "feature_map.json")
    if kind == "zoo":
        models = {name: tiny(name, feature_map) for name in model_names()}
    elif kind == "peer_ensemble":
        models = {kind: PeerEnsemble.of(feature_map, [tiny("dnn", feature_map),
                                                      tiny("deepfm", feature_map)])}
    else:
        models = {kind: KDEFModel.build({"name": "dnn", "embedding_dim": 4}, feature_map, 3)}
    state = PrepareState.load(prep)
    blocks = state.encoder.blocks(next(state.read(raw, 200))[0])
    worst = {}
    for name, model in models.items():
        run = save_run(tmp_path / name, model, feature_map, prep)
        result = cd.export(run=run, output=tmp_path / f"{name}.bundle", inputs="ids")
        exported, probability = load_bundle(result.path, threads=1).score(blocks)
        expected = load_run(run, "cpu").score_blocks(blocks)
        worst[name] = float(np.abs(exported - expected).max())
        np.testing.assert_allclose(probability, 1 / (1 + np.exp(-exported)), atol=1e-6)
    assert max(worst.values()) <= PARITY_TOLERANCE, worst


def test_bundle_is_self_contained(data, tmp_path: Path) -> None:
    _, prep = data
    feature_map = FeatureMap.load(prep / "feature_map.json")
    run = save_run(tmp_path / "run", tiny("dnn", feature_map), feature_map, prep)
    bundle = cd.export(run=run, output=tmp_path / "bundle").path
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["exporter"] in ("dynamo", "torchscript") and manifest["opset"] >= 20
    assert manifest["graph"] == "raw" and manifest["max_batch"] == 4096
    assert [i["name"] for i in manifest["inputs"]] == [f["name"] for f in SCHEMA["fields"]]
    assert manifest["checkpoint_sha256"] and manifest["versions"]["torch"]
    # the run may go: the bundle alone scores, and loading it imports neither torch nor polars
    RunDirectory(run).checkpoint().unlink()
    script = ("import sys, numpy as np, ctrdistill.serving as s; "
              f"b = s.load_bundle({str(bundle)!r}); "
              "b.score({i['name']: np.array([['' if i['dtype'] == 'string' else np.nan]], "
              "dtype=object if i['dtype'] == 'string' else np.float64) for i in b.inputs}); "
              "print(sorted(m for m in ('torch', 'polars', 'ctrdistill.models') "
              "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(Path(cd.__file__).parents[1])})
    assert out.stdout.strip() == "[]"
    with pytest.raises(CtrDistillError, match="already exists"):
        cd.export(run=run, output=bundle)
    with pytest.raises(CtrDistillError, match="checkpoint not found"):
        cd.export(run=run, output=tmp_path / "again")


def test_torchscript_bundle(data, tmp_path: Path) -> None:
    _, prep = data
    feature_map = FeatureMap.load(prep / "feature_map.json")
    model = tiny("fibinet", feature_map)
    run = save_run(tmp_path / "run", model, feature_map, prep)
    bundle = cd.export(run=run, output=tmp_path / "bundle", format="torchscript").path
    blocks = sample_blocks(feature_map, 32)
    traced = torch.jit.load(str(bundle / "model.pt"))
    inputs = [torch.from_numpy(blocks[n]) for n in ("categorical", "numeric", "sequence")]
    with torch.no_grad():
        np.testing.assert_allclose(traced(*inputs)[0].numpy(),
                                   load_run(run, "cpu").score_blocks(blocks), atol=1e-5)
    with pytest.raises(CtrDistillError, match="serving needs an ONNX one"):
        load_bundle(bundle)
