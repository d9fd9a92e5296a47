"""The exported graph of raw inputs: raw values -> ids as prepare encodes them, and -> the same
probabilities as `ctrdistill predict --input`, for the synthetic, criteo and avazu recipes and a
csv schema with every numeric transform and a sequence field. The raw rows are the recipe's own
plus rows of unseen ids, missing values, empty strings, negative, huge and non-finite numbers
(and, for Avazu, dates across the week and both centuries of YY).

The models are freshly initialised: parity needs no training. The same tests check parity at
any size: `CTRDISTILL_PARITY_ROWS=100000 python -m pytest tests/test_raw_graph.py` makes every
recipe's raw input that many rows (a fifth of them awkward; BENCHMARKS.md §7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import polars as pl
import pytest

import ctrdistill as cd
from ctrdistill.data.encode import PrepareState
from ctrdistill.data.formats import CRITEO_COLUMNS
from ctrdistill.data.prepare import PrepareConfig, prepare
from ctrdistill.data.schema import FeatureMap
from ctrdistill.data.synthetic import SynthConfig, write_synthetic
from ctrdistill.serving import load_bundle
from ctrdistill.serving.graph import preprocessing_model, raw_inputs
from test_export import SCHEMA, save_run, tiny, write_raw

FIXTURES = Path(__file__).parent / "fixtures" / "raw"
SIZE = int(os.environ.get("CTRDISTILL_PARITY_ROWS", "0"))  # 0: the small default of each case
EDGES = SIZE // 5 or 300  # awkward rows per case


def sized(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` resampled to SIZE - EDGES rows when a size is asked for."""
    return frame.sample(SIZE - EDGES, with_replacement=True, seed=0) if SIZE else frame
NUMBERS = [None, float("nan"), float("inf"), -float("inf"), -5.0, -1.5, 0.0, 1.0, 2.0, 2.5, 7.0,
           1e6, -1e30, 1e30, 1e300, -1e300, 1e19, -1e19, 3.4e38, 3.5e38]
TEXTS = [None, "", "zz-unseen", "NA", "0", "-1"]
SEQUENCES = [None, "", "|", "zz|", "||a", "x|y|z|w|v"]


def edge_rows(frame: pl.DataFrame, numeric: list[str], sequence: list[str], n: int,
              seed: int) -> pl.DataFrame:
    """`n` rows of `frame` with values replaced by the awkward ones, column by column."""
    rng = np.random.default_rng(seed)
    rows = frame.sample(n, with_replacement=True, seed=seed)
    changed = []
    for column in frame.columns:
        values = rows[column].to_list()
        pool = (NUMBERS if column in numeric else
                [*SEQUENCES, *(f"{v}|{v}" for v in values[:3])] if column in sequence
                else TEXTS)
        for index in np.flatnonzero(rng.random(n) < 0.5):
            values[index] = pool[rng.integers(len(pool))]
            if values[index] == "zz-unseen":  # one of a kind: unseen where not trained on
                values[index] += str(index)
        dtype = pl.Float64 if column in numeric else pl.String
        changed.append(pl.Series(column, values, dtype=dtype, strict=False))
    return pl.DataFrame(changed)


def as_text(frame: pl.DataFrame, numeric: list[str]) -> pl.DataFrame:
    return frame.with_columns(pl.col(c).cast(pl.Float64) for c in numeric)


def csv_case(root: Path) -> tuple[Path, dict]:
    raw = write_raw(root, SIZE - EDGES if SIZE else 1500, 5)
    frame = pl.read_csv(raw, infer_schema=False)
    numeric = ["I1", "I2", "I3", "I4"]
    frame = as_text(frame, numeric)
    edges = edge_rows(frame.drop("label"), numeric, ["tags"], EDGES, 1)
    frame = pl.concat([frame, edges.with_columns(pl.lit("0").alias("label"))
                       .select(frame.columns)])
    path = root / "logs.csv"
    frame.write_csv(path)
    return path, {"recipe": "csv", "schema": SCHEMA}


def criteo_case(root: Path) -> tuple[Path, dict]:
    frame = pl.read_csv(FIXTURES / "criteo" / "train.txt", separator="\t", has_header=False,
                        new_columns=CRITEO_COLUMNS, infer_schema=False)
    numeric = [c for c in CRITEO_COLUMNS if c.startswith("I")]
    frame = sized(as_text(frame, numeric))
    frame = pl.concat([frame, edge_rows(frame.drop("label"), numeric, [], EDGES, 2)
                       .with_columns(pl.lit("0").alias("label")).select(CRITEO_COLUMNS)])
    path = root / "train.txt"
    frame.write_csv(path, separator="\t", include_header=False, quote_style="never")
    return path, {"recipe": "criteo"}


def avazu_case(root: Path) -> tuple[Path, dict]:
    frame = sized(pl.read_csv(FIXTURES / "avazu" / "train.csv", infer_schema=False))
    edges = edge_rows(frame.drop("id", "click", "hour"), [], [], EDGES, 3)
    rng = np.random.default_rng(4)  # every weekday, leap days, YY 00-69 (20YY) and 70-99 (19YY)
    days = rng.integers(-20_000, 25_000, len(edges)).astype("datetime64[D]")
    stamps = pl.Series(days).dt.strftime("%y%m%d") + pl.Series(
        rng.integers(0, 24, len(edges))).cast(pl.String).str.zfill(2)
    edges = edges.with_columns(stamps.alias("hour"), pl.lit("0").alias("click"),
                               pl.int_range(len(edges)).cast(pl.String).alias("id"))
    path = root / "train.csv"
    pl.concat([frame, edges.select(frame.columns)]).write_csv(path)
    return path, {"recipe": "avazu"}


def synthetic_case(root: Path) -> tuple[Path, dict]:
    write_synthetic(SynthConfig(rows=SIZE - EDGES if SIZE else 1500, seed=3), root / "synth",
                    show_progress=False)
    frame = pl.read_parquet(root / "synth" / "*.parquet")
    numeric = [c for c in frame.columns if c.startswith("I")]
    features = [c for c in frame.columns if c.startswith(("I", "C"))]
    edges = edge_rows(frame.select(features).with_columns(pl.col(numeric).cast(pl.Float64)),
                      numeric, [], EDGES, 5)
    rest = frame.drop(features).head(len(edges))
    frame = pl.concat([frame.with_columns(pl.col(numeric).cast(pl.Float64)),
                       pl.concat([edges, rest], how="horizontal").select(frame.columns)])
    path = root / "raw"
    path.mkdir()
    frame.write_parquet(path / "part-00000.parquet")
    (path / "synth.json").write_text((root / "synth" / "synth.json").read_text())
    return path, {"recipe": "synthetic", "protocol": "x4"}


CASES = {"csv": csv_case, "criteo": criteo_case, "avazu": avazu_case,
         "synthetic": synthetic_case}


def raw_feeds(path: Path, state: PrepareState) -> dict[str, np.ndarray]:
    """The raw file's columns as the graph takes them: text (null -> ""), double (null ->
    NaN), each (rows, 1)."""
    files = [path] if path.is_file() else sorted(path.glob("*.parquet"))
    if files[0].suffix == ".parquet":
        frame = pl.concat([pl.read_parquet(f) for f in files])
    elif files[0].name == "train.txt":
        frame = pl.read_csv(files[0], separator="\t", has_header=False,
                            new_columns=CRITEO_COLUMNS, infer_schema=False)
    else:
        frame = pl.read_csv(files[0], infer_schema=False)
    feeds = {}
    for spec in raw_inputs(state):
        column = frame[spec.name]
        if spec.dtype == "string":
            feeds[spec.name] = column.cast(pl.String).fill_null("").to_numpy().astype(object)
        else:
            feeds[spec.name] = column.cast(pl.Float64).fill_null(np.nan).to_numpy()
        feeds[spec.name] = feeds[spec.name].reshape(-1, 1)
    return feeds


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp(request.param)
    raw, options = CASES[request.param](root)
    prepare(PrepareConfig.model_validate({"input": raw, "output": root / "prep", **options}),
            show_progress=False)
    feature_map = FeatureMap.load(root / "prep" / "feature_map.json")
    run = save_run(root / "run", tiny("deepfm", feature_map), feature_map, root / "prep")
    cd.predict(run=run, input=raw, output=root / "scores.parquet", progress=False)
    return {"name": request.param, "raw": raw, "run": run, "root": root,
            "bundle": cd.export(run=run, output=root / "bundle").path,
            "state": PrepareState.load(root / "prep"),
            "expected": pl.read_parquet(root / "scores.parquet").sort("row_id")}


def test_ids_in_the_graph_are_prepares(case) -> None:
    state = case["state"]
    session = ort.InferenceSession(preprocessing_model(state, 20).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    feeds = raw_feeds(case["raw"], state)
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds),
                   strict=True))
    encoder = state.encoder
    expected = encoder.blocks(pl.concat([frame for frame, _ in state.read(case["raw"], 700)]))
    assert out.keys() == expected.keys()
    for kind, block in expected.items():
        assert out[kind].dtype == block.dtype and out[kind].shape == block.shape
        np.testing.assert_array_equal(out[kind], block, err_msg=kind)
    # the awkward rows do reach OOV and the missing token, not only common ids
    assert (expected["categorical"] == 1).any()


def test_probabilities_match_predict(case) -> None:
    expected = case["expected"]
    bundle = load_bundle(case["bundle"], threads=1)
    logit, probability = bundle.score(raw_feeds(case["raw"], case["state"]))
    assert bundle.raw and len(probability) == len(expected)
    np.testing.assert_allclose(probability, expected["probability"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(logit, expected["logit"], atol=1e-4, rtol=1e-4)
    manifest = bundle.manifest
    assert manifest["opset"] == 20 and manifest["versions"]["onnxruntime"] == ort.__version__
    names = [i["name"] for i in manifest["inputs"]]
    assert names == [i.name for i in bundle.session.get_inputs()]
    if case["name"] == "avazu":  # the derived time fields come from the raw hour
        assert "hour" in names and "weekday" not in names


def test_graph_scores_with_onnxruntime_and_numpy_only(case) -> None:
    """A client with onnxruntime and numpy alone: importing polars or torch would fail."""
    if case["name"] != "csv":
        pytest.skip("one recipe suffices")
    root, bundle = case["root"], case["bundle"]
    feeds = raw_feeds(case["raw"], case["state"])
    np.savez(root / "feeds.npz", **{k: v.astype(str) if v.dtype == object else v
                                    for k, v in feeds.items()})
    script = f"""
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("polars", "torch", "ctrdistill"):
            raise ImportError(name + " is blocked")
sys.meta_path.insert(0, Blocked())
import json, numpy as np, onnxruntime as ort
manifest = json.load(open({str(bundle / "manifest.json")!r}))
data = np.load({str(root / "feeds.npz")!r})
feeds = {{i["name"]: data[i["name"]].astype(object if i["dtype"] == "string" else np.float64)
         for i in manifest["inputs"]}}
session = ort.InferenceSession({str(bundle / "model.onnx")!r},
                               providers=["CPUExecutionProvider"])
print(json.dumps(session.run(["probability"], feeds)[0].tolist()))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env={"PATH": os.environ.get("PATH", "")})
    np.testing.assert_allclose(json.loads(out.stdout), case["expected"]["probability"],
                               atol=1e-5, rtol=0)


def test_ids_graph_stays_available(case, tmp_path: Path) -> None:
    if case["name"] != "csv":
        pytest.skip("one recipe suffices")
    bundle = load_bundle(cd.export(run=case["run"], output=tmp_path / "ids", inputs="ids").path)
    assert not bundle.raw
    assert [i["name"] for i in bundle.inputs] == ["categorical", "numeric", "sequence"]
    encoder = case["state"].encoder
    blocks = encoder.blocks(pl.concat([f for f, _ in case["state"].read(case["raw"], 700)]))
    np.testing.assert_allclose(bundle.score(blocks)[1], case["expected"]["probability"],
                               atol=1e-5)

