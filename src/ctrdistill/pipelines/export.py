"""`ctrdistill export`: a run's served model as a self-contained bundle for production.

The bundle holds the model file (ONNX by default, or TorchScript), the run's fitted
preprocessing (`prepare/`: state, feature map, vocabularies) and `manifest.json` (source run,
checkpoint hash, versions, opset, exporter, input/output signature). The ONNX graph takes raw
values by default: the preprocessing built by `ctrdistill.serving.graph` feeds the model, so
onnxruntime alone turns raw rows into probabilities (`inputs: ids` keeps the encoded blocks as
inputs). `--format triton` writes the same graph as a Triton model repository;
`--version-dir` writes the next version of a versioned folder and switches its `latest`.

ONNX is exported with PyTorch's recommended exporter (`torch.onnx.export(dynamo=True)`); where
it fails, or its model does not match PyTorch on sample rows, the TorchScript-based exporter
(`dynamo=False`) is used instead. The manifest records which one made the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import platform
import shutil
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import torch
from pydantic import Field, model_validator
from torch import nn

from ctrdistill.config import StrictConfig
from ctrdistill.data.encode import BLOCKS, STATE_DIR, PrepareState, copy_state
from ctrdistill.data.schema import FeatureMap
from ctrdistill.errors import CtrDistillError
from ctrdistill.files import disk_full
from ctrdistill.models.base import CTRModel
from ctrdistill.pipelines.common import Result, resolve
from ctrdistill.pipelines.load import blocks_batch, load_run
from ctrdistill.serving.bundle import MANIFEST_FILE, ONNX_FILE, TORCHSCRIPT_FILE, outputs_of
from ctrdistill.serving.settings import MAX_ROWS, MIN_OPSET
from ctrdistill.serving.versions import next_version, set_latest
from ctrdistill.storage import atomic_directory
from ctrdistill.version import __version__

logger = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4  # max abs logit difference to PyTorch accepted from an exporter


class ExportConfig(StrictConfig):
    run: Path = Field(description="a run directory (its served checkpoint is exported)")
    output: Path | None = Field(None, description="the bundle directory to write")
    version_dir: Path | None = Field(
        None, description="instead of output: write the next version (v000001/, ...) of this "
        "folder and switch its `latest` pointer to it (what `ctrdistill serve DIR` reloads)")
    format: Literal["onnx", "torchscript", "triton"] = Field(
        "onnx", description="onnx (served by `ctrdistill serve`), triton (a Triton model "
        "repository of the ONNX graph) or torchscript")
    inputs: Literal["raw", "ids"] = Field(
        "raw", description="the ONNX graph's inputs: raw values (preprocessing inside the "
        "graph) or the encoded id blocks")
    opset: int = Field(20, ge=17, description="ONNX opset (raw inputs need 20: StringSplit)")
    max_batch: int = Field(MAX_ROWS, ge=1, description="rows per call at most (Triton's "
                           "max_batch_size)")
    overwrite: bool = Field(False, description="replace an existing bundle")

    @model_validator(mode="after")
    def _check(self) -> ExportConfig:
        if (self.output is None) == (self.version_dir is None):
            raise ValueError("give exactly one of output and version_dir")
        if self.graph == "raw" and self.opset < MIN_OPSET:
            raise ValueError(f"a graph of raw inputs needs opset >= {MIN_OPSET}")
        return self

    @property
    def graph(self) -> str:
        """What the model file takes: TorchScript always the id blocks."""
        return "ids" if self.format == "torchscript" else self.inputs


class ServedModule(nn.Module):
    """The model over its input blocks as tensors (cat, num, and seq when the feature map has
    sequence fields): returns (logit, probability), each (B,)."""

    def __init__(self, model: CTRModel, feature_map: FeatureMap) -> None:
        super().__init__()
        self.model = model
        self.inputs = input_names(feature_map)
        self.num_cat = len(feature_map.categorical)
        self.num_num = len(feature_map.numeric)

    def forward(self, *blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        given = dict(zip(self.inputs, blocks, strict=True))
        rows = blocks[0].shape[0]
        cat = given.get("categorical", torch.zeros(rows, self.num_cat, dtype=torch.long))
        num = given.get("numeric", torch.zeros(rows, self.num_num, dtype=torch.float32))
        logit = self.model(blocks_batch(cat, num, given.get("sequence")))
        return logit, torch.sigmoid(logit)


def input_names(feature_map: FeatureMap) -> list[str]:
    """One input per non-empty block, named by its fields' kind."""
    return [kind for kind in BLOCKS if feature_map.of_kind(kind)]


def sample_blocks(feature_map: FeatureMap, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random valid inputs: ids within each field's vocabulary, standard-normal numerics."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    if feature_map.categorical:
        out["categorical"] = np.stack([rng.integers(0, max(f.vocab_size, 1), rows)
                               for f in feature_map.categorical], 1).astype(np.int64)
    if feature_map.numeric:
        out["numeric"] = rng.normal(size=(rows, len(feature_map.numeric))).astype(np.float32)
    if feature_map.sequence:
        length = feature_map.sequence[0].max_length
        out["sequence"] = np.stack([rng.integers(0, max(f.vocab_size, 1), (rows, length))
                               for f in feature_map.sequence], 1).astype(np.int64)
    return out


def _signature(feature_map: FeatureMap) -> dict[str, Any]:
    inputs = []
    for kind in input_names(feature_map):
        fields = feature_map.of_kind(kind)  # type: ignore[arg-type]
        shape: list[Any] = ["batch", len(fields)]
        if kind == "sequence":
            shape.append(fields[0].max_length)
        inputs.append({"name": kind, "dtype": "float32" if kind == "numeric" else "int64",
                       "shape": shape, "fields": [f.name for f in fields]})
    return {"inputs": inputs,
            "outputs": [{"name": n, "dtype": "float32", "shape": ["batch"]}
                        for n in ("logit", "probability")]}


def _no_torchvision(record: logging.LogRecord) -> bool:
    """The dynamo exporter warns once per torchvision op when torchvision is absent; the models
    use none of them."""
    return not record.getMessage().startswith("torchvision is not installed")


def _onnx(module: ServedModule, example: tuple[torch.Tensor, ...], path: Path, opset: int,
          dynamo: bool) -> None:
    names, outputs = module.inputs, ["logit", "probability"]
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    registration.addFilter(_no_torchvision)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporters' advice on their own internals
            if dynamo:
                batch = torch.export.Dim("batch", min=1, max=1 << 24)
                torch.onnx.export(module, example, str(path), dynamo=True, opset_version=opset,
                                  input_names=names, output_names=outputs, verbose=False,
                                  dynamic_shapes=(tuple({0: batch} for _ in example),))
            else:
                torch.onnx.export(module, example, str(path), dynamo=False, opset_version=opset,
                                  input_names=names, output_names=outputs,
                                  dynamic_axes={n: {0: "batch"} for n in [*names, *outputs]})
    finally:
        registration.removeFilter(_no_torchvision)


def _parity(path: Path, module: ServedModule, blocks: dict[str, np.ndarray]) -> float:
    """Max abs difference between the file's logits and PyTorch's on `blocks`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    exported = outputs_of(session, blocks)[0]
    with torch.no_grad():
        expected = module(*(torch.from_numpy(blocks[n]) for n in module.inputs))[0].numpy()
    return float(np.abs(exported - expected).max())


def export_onnx(module: ServedModule, feature_map: FeatureMap, path: Path,
                opset: int) -> tuple[str, float]:
    """Write `path`; returns the exporter used and its measured parity on sample rows."""
    example = tuple(torch.from_numpy(v) for v in sample_blocks(feature_map, 8, 1).values())
    check = sample_blocks(feature_map, 64, 2)
    failure = ""
    for exporter, dynamo in (("dynamo", True), ("torchscript", False)):
        try:
            _onnx(module, example, path, opset, dynamo)
            difference = _parity(path, module, check)
        except Exception as error:  # an exporter's failure: try the next one
            if disk_full(error, path.parent):
                raise  # the disk's, not the exporter's: atomic_directory says so in one line
            failure = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            logger.info("onnx export with %s failed (%s)", exporter, failure)
            continue
        if difference <= PARITY_TOLERANCE:
            return exporter, difference
        failure = f"max abs logit difference {difference:.2e} to PyTorch"
        logger.info("onnx export with %s: %s; trying the next exporter", exporter, failure)
    raise CtrDistillError(f"no ONNX exporter could export this model ({failure}); try "
                          "--format torchscript")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    versions = {"ctrdistill": __version__, "torch": torch.__version__,
                "numpy": np.__version__, "polars": pl.__version__,
                "python": platform.python_version()}
    for module in ("onnx", "onnxruntime"):  # what made the file and what checked it
        with contextlib.suppress(ImportError):
            versions[module] = importlib.import_module(module).__version__
    return versions


def _model_file(config: ExportConfig, module: ServedModule, state: PrepareState,
                folder: Path) -> tuple[str, str, float | None]:
    """Write the model file into `folder`: (its name, the exporter, its parity to PyTorch)."""
    feature_map = state.feature_map
    if config.format == "torchscript":
        example = tuple(torch.from_numpy(v) for v in sample_blocks(feature_map, 8, 1).values())
        with torch.no_grad():
            torch.jit.trace(module, example).save(str(folder / TORCHSCRIPT_FILE))
        return TORCHSCRIPT_FILE, "torch.jit.trace", None
    if config.graph == "ids":
        exporter, parity = export_onnx(module, feature_map, folder / ONNX_FILE, config.opset)
        return ONNX_FILE, exporter, parity
    import onnx

    from ctrdistill.serving.graph import raw_model

    ids = folder / "ids-graph"  # the exporter's file (and its external weights, if any)
    ids.mkdir()
    exporter, parity = export_onnx(module, feature_map, ids / ONNX_FILE, config.opset)
    merged = raw_model(state, onnx.load(str(ids / ONNX_FILE)))
    large = sum(len(t.raw_data) for t in merged.graph.initializer) > 1 << 30  # protobuf: < 2 GB
    onnx.save(merged, str(folder / ONNX_FILE), save_as_external_data=large,
              location=f"{ONNX_FILE}.data")
    shutil.rmtree(ids)
    return ONNX_FILE, exporter, parity


def _raw_signature(state: PrepareState) -> dict[str, Any]:
    from ctrdistill.serving.graph import raw_inputs

    inputs = [{"name": i.name, "dtype": i.dtype, "shape": ["batch", 1], "fields": i.fields}
              | ({"format": i.format} if i.format else {}) for i in raw_inputs(state)]
    return {"inputs": inputs, "outputs": _signature(state.feature_map)["outputs"]}


def _bundle(config: ExportConfig, run: Any, state: PrepareState, folder: Path) -> str:
    """Write the bundle's files into `folder`; returns the exporter used."""
    module = ServedModule(run.model.eval(), run.feature_map).eval()
    model_file, exporter, parity = _model_file(config, module, state, folder)
    copy_state(run.path / STATE_DIR, folder)
    checkpoint = run.directory.checkpoint()
    onnx_graph = config.format != "torchscript"
    signature = (_raw_signature(state) if config.graph == "raw"
                 else _signature(run.feature_map))
    manifest = {
        "format_version": 2, "format": "torchscript" if not onnx_graph else "onnx",
        "model_file": model_file, "graph": config.graph, "exporter": exporter,
        "opset": config.opset if onnx_graph else None, "max_batch": config.max_batch,
        "parity_max_abs_logit_difference": parity,
        "model": run.model.config.model_dump(mode="json"),
        "parameters": run.model.num_parameters(),
        "source_run": str(run.path.resolve()),
        "checkpoint_sha256": _sha256(checkpoint) if checkpoint.is_file() else None,
        "feature_map_fingerprint": run.feature_map.fingerprint(),
        "versions": _versions(), **signature}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return exporter


def export(config: ExportConfig | dict[str, Any] | str | Path | None = None,
           **overrides: Any) -> Result:
    """Write the bundle of `run`'s served model into `output` (atomically), or as the next
    version of `version_dir` (then switch its `latest` to it)."""
    config = resolve(ExportConfig, config, **overrides)
    version = next_version(config.version_dir) if config.version_dir else None
    output = config.output or config.version_dir / version  # type: ignore[operator]
    if output.exists() and not config.overwrite:
        raise CtrDistillError(f"output already exists: {output} (choose another path, "
                              "or overwrite)")
    run = load_run(config.run, "cpu")
    state = PrepareState.load(run.path / STATE_DIR)  # a run without it says so here
    with atomic_directory(output, overwrite=config.overwrite) as tmp:
        if config.format == "triton":
            from ctrdistill.serving.triton import write_repository

            exporter = write_repository(tmp, run.path.name,
                                        lambda folder: _bundle(config, run, state, folder))
        else:
            exporter = _bundle(config, run, state, tmp)
    if version is not None:
        set_latest(config.version_dir, version)  # type: ignore[arg-type]
    manifest = json.loads(next(output.rglob(MANIFEST_FILE)).read_text())
    return Result(output, {"format": config.format, "exporter": exporter, "graph": config.graph,
                           "version": version, "parity_max_abs_logit_difference":
                           manifest["parity_max_abs_logit_difference"]})
