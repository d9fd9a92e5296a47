"""An export bundle opened for scoring: its manifest, fitted preprocessing and ONNX session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ctrdistill.data.encode import STATE_DIR, PrepareState
from ctrdistill.errors import CtrDistillError
from ctrdistill.files import REEXPORT, read_json, reading

MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.pt"
OUTPUTS = ["logit", "probability"]


def outputs_of(session: Any, blocks: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(logit, probability) of an onnxruntime session on input blocks."""
    logit, probability = session.run(OUTPUTS, {i.name: blocks[i.name]
                                               for i in session.get_inputs()})
    return logit, probability


def raw_types(state: PrepareState) -> dict[str, pl.DataType]:
    """Each raw feature column's type before encoding: numbers for numeric fields (bucketised
    ones too), text for ids and sequences."""
    return {f.column: pl.Float64() if f.kind == "numeric" else pl.String()
            for f in state.schema.fields}


@dataclass
class Bundle:
    """A bundle directory written by `ctrdistill export --format onnx`."""

    path: Path
    manifest: dict[str, Any]
    state: PrepareState
    session: Any  # onnxruntime.InferenceSession

    @property
    def columns(self) -> dict[str, pl.DataType]:
        """The raw columns a row gives, with their types."""
        return raw_types(self.state)

    def score_blocks(self, blocks: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return outputs_of(self.session, blocks)

    def score_frame(self, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(logit, probability) of raw rows: the schema's raw feature columns, numbers as
        Float64 and ids as text (unseen ids are out-of-vocabulary, nulls missing)."""
        encoder = self.state.encoder
        clean = encoder.clean(frame, "request", 0)
        return self.score_blocks(encoder.blocks(encoder.features(clean)))


def load_bundle(path: str | Path, threads: int | None = None) -> Bundle:
    """Open a bundle; `threads` sets onnxruntime's intra-op threads (default: its own)."""
    import onnxruntime as ort

    path = Path(path)
    manifest_file = path / MANIFEST_FILE
    if not manifest_file.is_file():
        raise CtrDistillError(f"{path}: not an export bundle ({MANIFEST_FILE} is missing)")
    manifest = read_json(manifest_file, REEXPORT)
    with reading(manifest_file, REEXPORT):
        model_file = path / manifest["model_file"]
    if manifest.get("format") != "onnx":
        raise CtrDistillError(f"{path}: a {manifest.get('format')} bundle; serving needs an "
                              "ONNX one (ctrdistill export RUN --format onnx)")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    with reading(model_file, REEXPORT):
        session = ort.InferenceSession(str(model_file), options,
                                       providers=["CPUExecutionProvider"])
    return Bundle(path, manifest, PrepareState.load(path / STATE_DIR, REEXPORT), session)
