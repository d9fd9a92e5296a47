"""Hashed OOV buckets (`follow`'s `vocabulary.oov: hash`): ids a vocabulary lacks take one of
K rows after it by MurmurHash3 of the raw value, identically in the Python encoder, the
exported ONNX graph (onnxruntime's MurmurHash3) and TorchScript bundles."""

from __future__ import annotations

import shutil

import numpy as np
import onnxruntime as ort
import polars as pl
import pytest
import torch
from onnx import TensorProto, helper
from sklearn.utils import murmurhash3_32

import ctrdistill as cd
from conftest import prepare_synthetic
from ctrdistill.continuous.synthetic import partition_name, write_landing
from ctrdistill.continuous.vocabulary import VocabularyConfig, hashed_state, vocab_sizes
from ctrdistill.data.encode import PrepareState
from ctrdistill.data.hashing import murmurhash3
from ctrdistill.data.prepare import PrepareConfig, prepare
from ctrdistill.data.synthetic import SynthConfig
from ctrdistill.errors import CtrDistillError
from ctrdistill.pipelines.follow import follow
from ctrdistill.serving import load_bundle
from ctrdistill.serving.graph import preprocessing_model
from test_growth import _state
from test_raw_graph import CASES, raw_feeds

VALUES = ["", "a", "ab", "abc", "abcd", "abcde", "0", "-1", "1.5e10", "007", "12345678",
          "héllo wörld", "東京", "😀", "a\x00b", "x" * 1001, "NA"]
BUCKETS = 7


def _onnx_hashes(values: list[str]) -> np.ndarray:
    node = helper.make_node("MurmurHash3", ["x"], ["y"], domain="com.microsoft", positive=1,
                            seed=0)
    graph = helper.make_graph([node], "h", [helper.make_tensor_value_info(
        "x", TensorProto.STRING, [None])], [helper.make_tensor_value_info(
            "y", TensorProto.UINT32, [None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20),
                                                    helper.make_opsetid("com.microsoft", 1)])
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.array(values, dtype=object)})[0]


def test_murmurhash3_is_scikit_learns_and_onnxruntimes():
    rng = np.random.default_rng(0)
    values = VALUES + [str(v) for v in rng.integers(-10**12, 10**12, 300)]
    hashes = murmurhash3(pl.Series(values))
    assert hashes.dtype == np.uint32
    np.testing.assert_array_equal(hashes, [murmurhash3_32(v, 0, True) for v in values])
    np.testing.assert_array_equal(hashes, _onnx_hashes(values))
    # a slice of a longer series and several chunks hash alike
    chunked = pl.concat([pl.Series(values[:5]), pl.Series(values[5:9])], rechunk=False)
    np.testing.assert_array_equal(murmurhash3(chunked), hashes[:9])
    np.testing.assert_array_equal(murmurhash3(pl.Series(values).slice(3, 4)), hashes[3:7])
    assert len(murmurhash3(pl.Series([], dtype=pl.String))) == 0


def test_unseen_ids_take_stable_buckets_after_their_vocabulary():
    base = _state()  # s (shared with c): a, b; d: x
    state = hashed_state(base, BUCKETS)
    assert vocab_sizes(state) == {"s": 4 + BUCKETS, "d": 3 + BUCKETS}
    assert state.feature_map.oov_buckets == BUCKETS
    assert state.feature_map.fingerprint() != base.feature_map.fingerprint()
    frame = pl.DataFrame({"s": ["a|zz|m", "東京|b|a|m", None], "c": ["m", "a", None],
                          "d": ["x", "東京", "0"]})
    encoded = state.encoder.features(frame)

    def bucket(value: str, first: int) -> int:
        return first + murmurhash3_32(value, 0, True) % BUCKETS

    s, d = 4, 3  # each vocabulary's first bucket
    assert encoded["c"].to_list() == [bucket("m", s), 2, bucket("", s)]
    assert encoded["d"].to_list() == [2, bucket("東京", d), bucket("0", d)]
    assert encoded["s"].to_list() == [[2, bucket("zz", s), bucket("m", s)],
                                      [bucket("東京", s), 3, 2], [0, 0, 0]]
    # row by row, and in another order: the same ids
    again = pl.concat([state.encoder.features(frame[i]) for i in (2, 0, 1)])
    assert again.equals(pl.concat([encoded[2], encoded[0], encoded[1]]))


@pytest.mark.parametrize("name", ["csv", "criteo", "avazu"])
def test_the_graph_hashes_as_the_encoder(name, tmp_path):
    """Prepare's awkward rows (unseen ids, "", null, NA, numbers bucketised to unseen
    buckets, sequences, a shared vocabulary) give the same ids in the graph as in Python."""
    raw, options = CASES[name](tmp_path)
    prepare(PrepareConfig.model_validate({"input": raw, "output": tmp_path / "prep",
                                          **options}), show_progress=False)
    state = hashed_state(PrepareState.load(tmp_path / "prep"), BUCKETS)
    session = ort.InferenceSession(preprocessing_model(state, 20).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    out = dict(zip([o.name for o in session.get_outputs()],
                   session.run(None, raw_feeds(raw, state)), strict=True))
    expected = state.encoder.blocks(pl.concat([frame for frame, _ in state.read(raw, 700)]))
    for kind, block in expected.items():
        np.testing.assert_array_equal(out[kind], block, err_msg=kind)
    firsts = np.array([[f.vocab_size - BUCKETS for f in state.feature_map.categorical]])
    hashed = expected["categorical"] >= firsts
    assert hashed.any() and not (expected["categorical"] == 1).any()  # no OOV row left
    assert (expected["categorical"] < firsts + BUCKETS).all()


@pytest.mark.parametrize("vocabulary, message", [
    ({"oov": "hash"}, "oov: hash needs buckets"),
    ({"oov": "grow", "buckets": 4}, "buckets applies only to oov: hash"),
    ({"oov": "hash", "buckets": 0}, "greater than or equal to 1"),
    ({"oov": "hash", "buckets": 4, "bucket": 4}, "bucket"),
])
def test_vocabulary_settings_are_checked(vocabulary, message):
    with pytest.raises(ValueError, match=message):
        VocabularyConfig.model_validate(vocabulary)
    with pytest.raises(CtrDistillError, match=message):
        follow({"name": "f", "landing": {"path": "nowhere"}, "data": "nowhere",
                "teacher": {"name": "lr"}, "students": {"s": {"model": {"name": "lr"}}},
                "vocabulary": vocabulary})


SYNTH = {"max_vocab": 300, "numeric_fields": 2, "categorical_fields": 4, "seed": 7}
TRAIN = {"epochs": 1, "batch_size": 512, "progress": False, "threads": 1}


def test_follow_with_hashed_buckets_scores_unseen_ids_alike_everywhere(tmp_path):
    prepared = prepare_synthetic(tmp_path / "prep", rows=2000, **SYNTH)
    landing, zone = tmp_path / "landing", tmp_path / "zone"
    write_landing(SynthConfig(**SYNTH), landing, 2, 800, new_ids_rate=0.3)
    config = {"name": "f", "output_dir": str(tmp_path / "runs"), "landing": {"path": str(zone)},
              "data": str(prepared), "train": TRAIN, "export_every": 1,
              "teacher": {"name": "dnn", "embedding_dim": 4, "hidden_units": [8]},
              "students": {"tiny": {"model": {"name": "fm", "embedding_dim": 4}}},
              "vocabulary": {"oov": "hash", "buckets": BUCKETS}}
    for index in range(2):  # the second partition after a restart: the models keep their rows
        shutil.copytree(landing / partition_name(index), zone / partition_name(index))
        follow(config, once=True)
    directory = tmp_path / "runs" / "f"
    metrics = pl.read_parquet(directory / "metrics.parquet").filter(model="teacher")
    # after: nothing on the one OOV row; before: what the prepared vocabulary lacks (hashed)
    assert metrics["oov_rate"].to_list() == [0.0, 0.0]
    assert (metrics["oov_rate_prepared"] > 0.05).all()
    # the bundle's graph and Python predict on the raw rows (with their unseen ids) agree
    raw = landing / partition_name(1) / "part-0.parquet"
    bundle = load_bundle(directory / "bundles" / "tiny" / "v000001", threads=1)
    state = PrepareState.load(bundle.path / "prepare")
    assert state.feature_map.oov_buckets == BUCKETS
    base = PrepareState.load(prepared)
    assert vocab_sizes(state) == {o: n + BUCKETS for o, n in vocab_sizes(base).items()}
    student = directory / "students" / "tiny"
    cd.predict(run=student, input=raw, output=tmp_path / "scores.parquet", progress=False)
    expected = pl.read_parquet(tmp_path / "scores.parquet").sort("row_id")["probability"]
    np.testing.assert_allclose(bundle.score(raw_feeds(raw, state))[1], expected, atol=1e-5)
    # a TorchScript bundle takes the ids of the bundle's own encoder: the same buckets
    script = cd.export(run=student, output=tmp_path / "ts", format="torchscript").path
    bundled = PrepareState.load(script)
    blocks = bundled.encoder.blocks(pl.concat([frame for frame, _ in bundled.read(raw, 500)]))
    with torch.no_grad():  # the model's inputs: the non-empty blocks in their order
        _, probability = torch.jit.load(script / "model.pt")(
            *(torch.from_numpy(block) for block in blocks.values()))
    np.testing.assert_allclose(probability.numpy(), expected, atol=1e-5)
    # the buckets are part of what the follow directory's models are: another K is refused
    config["vocabulary"]["buckets"] = BUCKETS + 1
    with pytest.raises(CtrDistillError, match=r"vocabulary\.buckets"):
        follow(config, once=True)
