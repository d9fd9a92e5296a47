"""A bundle as an NVIDIA Triton model repository: `ROOT/NAME/config.pbtxt` and the bundle
(`model.onnx`, manifest, fitted preprocessing) as version `ROOT/NAME/1/`.

`config.pbtxt` is written from the bundle's manifest: one entry per graph input and output with
its name, type and dims. Inputs are (batch, 1), so dims [1]; the outputs are (batch,), which
Triton spells dims [1] with `reshape { shape: [] }`. Dynamic batching is on, and
`max_batch_size` is the manifest's `max_batch`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ctrdistill.serving.bundle import MANIFEST_FILE

CONFIG_FILE = "config.pbtxt"
VERSION = "1"
TYPES = {"string": "TYPE_STRING", "double": "TYPE_FP64", "float32": "TYPE_FP32",
         "int64": "TYPE_INT64"}
QUEUE_DELAY_US = 1000


def _tensor(entry: dict[str, Any]) -> str:
    dims = [d for d in entry["shape"] if d != "batch"]
    reshape = ""
    if not dims:  # a (batch,) tensor: Triton needs a dim, reshaped away for the model
        dims, reshape = [1], " reshape: { shape: [ ] }"
    return (f'  {{ name: {json.dumps(entry["name"])} data_type: {TYPES[entry["dtype"]]} '
            f'dims: [ {", ".join(str(d) for d in dims)} ]{reshape} }}')


def model_config(name: str, manifest: dict[str, Any]) -> str:
    """The text of `config.pbtxt` for a bundle's manifest."""
    inputs = ",\n".join(_tensor(i) for i in manifest["inputs"])
    outputs = ",\n".join(_tensor(o) for o in manifest["outputs"])
    return (f"name: {json.dumps(name)}\n"
            'platform: "onnxruntime_onnx"\n'
            f"max_batch_size: {manifest['max_batch']}\n"
            f"input [\n{inputs}\n]\n"
            f"output [\n{outputs}\n]\n"
            f"dynamic_batching {{ max_queue_delay_microseconds: {QUEUE_DELAY_US} }}\n")


def write_repository(root: Path, name: str, write_bundle: Callable[[Path], str]) -> str:
    """Fill `root` with the repository of the bundle `write_bundle(folder)` writes; returns
    what `write_bundle` returns (the exporter)."""
    folder = root / name / VERSION
    folder.mkdir(parents=True)
    exporter = write_bundle(folder)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    (root / name / CONFIG_FILE).write_text(model_config(name, manifest))
    return exporter
