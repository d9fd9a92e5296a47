"""ctrdistill: knowledge transfer between click-through-rate models.

The public API mirrors the command line, one function per verb, each taking its config as a
config object, a mapping or a YAML path (keyword arguments override top-level keys) and
returning a `Result`::

    import ctrdistill as cd
    cd.synth(rows=100_000, output="data/raw")
    cd.prepare(recipe="synthetic", input="data/raw", output="data/synth", protocol="x4")
    run = cd.train({"name": "dnn", "data": "data/synth", "model": {"name": "dnn"}})
    cd.load_run(run.path).evaluate("data/synth", split="test")

Library code logs through `logging` (logger "ctrdistill") and never prints.
"""

from __future__ import annotations

import importlib
from typing import Any

from ctrdistill.version import __version__

_VERBS = "ctrdistill.pipelines."
#: The public API, one entry per name: the module it lives in, imported on first use so that
#: `import ctrdistill` (and a verb's start-up) loads only what is used.
_EXPORTS: dict[str, str] = {
    "CtrDistillError": "ctrdistill.errors",
    # the verbs and their configs
    "SynthConfig": "ctrdistill.data.synthetic",
    "synth": _VERBS + "prepare",
    "PrepareConfig": "ctrdistill.data.prepare",
    "prepare": _VERBS + "prepare",
    "TrainConfig": "ctrdistill.training.config",
    "TrainRunConfig": _VERBS + "fit",
    "train": _VERBS + "fit",
    "KDOptions": "ctrdistill.strategies.factory",
    "DistillConfig": _VERBS + "fit",
    "TeacherSpec": _VERBS + "methods.kd",
    "distill": _VERBS + "fit",
    "MutualConfig": _VERBS + "fit",
    "mutual": _VERBS + "fit",
    "KDEFConfig": _VERBS + "fit",
    "kdef": _VERBS + "fit",
    "LabelConfig": _VERBS + "label",
    "label": _VERBS + "label",
    "StreamConfig": _VERBS + "stream",
    "stream": _VERBS + "stream",
    "SearchConfig": _VERBS + "search",
    "search": _VERBS + "search",
    "EvaluateConfig": _VERBS + "evaluate",
    "evaluate": _VERBS + "evaluate",
    "PredictConfig": _VERBS + "predict",
    "predict": _VERBS + "predict",
    "CollapseConfig": _VERBS + "analyze",
    "collapse": _VERBS + "analyze",
    "ExportConfig": _VERBS + "export",
    "export": _VERBS + "export",
    "ServeConfig": _VERBS + "serve",
    "serve": _VERBS + "serve",
    "DemoConfig": _VERBS + "demo",
    "demo": _VERBS + "demo",
    "Result": _VERBS + "common",
    "Run": _VERBS + "load",
    "load_run": _VERBS + "load",
    "Bundle": "ctrdistill.serving",
    "load_bundle": "ctrdistill.serving",
    # one run, many methods (docs/api.md)
    "RunConfig": _VERBS + "fit",
    "run": _VERBS + "fit",
    "register_method": _VERBS + "methods",
    "MethodConfig": _VERBS + "methods",
    "MethodBuild": _VERBS + "methods",
    # extension points: models, strategies and the trainer that runs them (docs/api.md)
    "register_model": "ctrdistill.models.registry",
    "build_model": "ctrdistill.models.registry",
    "model_names": "ctrdistill.models.registry",
    "CTRModel": "ctrdistill.models.base",
    "ModelConfig": "ctrdistill.models.base",
    "ModelOutput": "ctrdistill.models.base",
    "Strategy": "ctrdistill.strategies.base",
    "Trainer": "ctrdistill.training.trainer",
    "PreparedData": "ctrdistill.data.dataset",
    "BatchLoader": "ctrdistill.data.loader",
}


__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ctrdistill' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
