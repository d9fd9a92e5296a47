"""`export --format triton`: a Triton model repository whose config.pbtxt, parsed with Triton's
own model-config schema, matches the ONNX graph's signature exactly. No Triton server runs
here: what Triton does with the repository is not tested."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from ctrdistill.cli import main
from ctrdistill.data.schema import FeatureMap
from test_export import make_dataset, save_run, tiny

ONNX_TO_TRITON = {onnx.TensorProto.STRING: mc.TYPE_STRING, onnx.TensorProto.DOUBLE: mc.TYPE_FP64,
                  onnx.TensorProto.FLOAT: mc.TYPE_FP32, onnx.TensorProto.INT64: mc.TYPE_INT64}


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("triton")
    _, prep = make_dataset(root)
    feature_map = FeatureMap.load(prep / "feature_map.json")
    run = save_run(root / "dnn-run", tiny("dnn", feature_map), feature_map, prep)
    assert main(["export", str(run), "--format", "triton", "--output", str(root / "repo")]) == 0
    return root / "repo"


def shape(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_config_matches_the_graph(repository: Path) -> None:
    assert sorted(p.name for p in repository.iterdir()) == ["dnn-run"]
    model_dir = repository / "dnn-run"
    assert (model_dir / "1" / "model.onnx").is_file()  # Triton's default file name
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())
    graph = onnx.load(str(model_dir / "1" / "model.onnx")).graph
    assert config.name == "dnn-run" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 4096 and config.HasField("dynamic_batching")
    for entries, values in ((config.input, graph.input), (config.output, graph.output)):
        assert [e.name for e in entries] == [v.name for v in values]
        for entry, value in zip(entries, values, strict=True):
            assert entry.data_type == ONNX_TO_TRITON[value.type.tensor_type.elem_type]
            dims = shape(value)
            assert dims[0] == "batch"  # the batch dimension Triton adds
            if len(dims) == 1:  # (batch,): Triton's dims [1] reshaped to the model's []
                assert list(entry.dims) == [1] and list(entry.reshape.shape) == []
            else:
                assert list(entry.dims) == dims[1:] and not entry.HasField("reshape")
    assert {v.name for v in graph.input} >= {"C1", "I1", "tags"}
