"""An export bundle opened for scoring: its manifest and onnxruntime session.

A bundle's graph takes raw values (the default since the preprocessing is inside it: one input
per raw column, text or double, shape (batch, 1)) or the encoded id blocks (`--inputs ids`).
Opening and scoring either needs onnxruntime and numpy only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctrdistill.errors import CtrDistillError
from ctrdistill.files import REEXPORT, read_json, reading

MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.pt"
OUTPUTS = ["logit", "probability"]


def outputs_of(session: Any, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(logit, probability) of an onnxruntime session on its named inputs."""
    logit, probability = session.run(OUTPUTS, {i.name: feeds[i.name]
                                               for i in session.get_inputs()})
    return logit, probability


@dataclass
class Bundle:
    """A bundle directory written by `ctrdistill export --format onnx`."""

    path: Path
    manifest: dict[str, Any]
    session: Any  # onnxruntime.InferenceSession

    @property
    def raw(self) -> bool:
        """The graph takes raw values (else id blocks)."""
        return self.manifest.get("graph") == "raw"

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """The graph's inputs as the manifest describes them: name, dtype, shape, fields."""
        return list(self.manifest["inputs"])

    def score(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(logit, probability) of the graph's inputs: raw columns (text as object arrays,
        numbers as float64 with NaN missing, each (B, 1)) or id blocks."""
        return outputs_of(self.session, feeds)


def read_manifest(path: Path) -> dict[str, Any]:
    manifest_file = Path(path) / MANIFEST_FILE
    if not manifest_file.is_file():
        raise CtrDistillError(f"{path}: not an export bundle ({MANIFEST_FILE} is missing)")
    manifest = read_json(manifest_file, REEXPORT)
    if not isinstance(manifest, dict):
        raise CtrDistillError(f"{manifest_file}: not a bundle manifest; export the bundle again")
    return manifest


def load_bundle(path: str | Path, threads: int | None = None) -> Bundle:
    """Open a bundle; `threads` sets onnxruntime's intra-op threads (default: its own)."""
    import onnxruntime as ort

    path = Path(path)
    manifest = read_manifest(path)
    if manifest.get("format") != "onnx":
        raise CtrDistillError(f"{path}: a {manifest.get('format')} bundle; serving needs an "
                              "ONNX one (ctrdistill export RUN --format onnx)")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    with reading(path / MANIFEST_FILE, REEXPORT):  # a manifest without its keys is damaged
        model_file = path / manifest["model_file"]
    with reading(model_file, REEXPORT):  # onnxruntime raises its own types for a damaged file
        session = ort.InferenceSession(str(model_file), options,
                                       providers=["CPUExecutionProvider"])
    return Bundle(path, manifest, session)
