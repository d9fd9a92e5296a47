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
from typing import TYPE_CHECKING, Any

from ctrdistill.version import __version__

# Where each public name lives; imported on first use so that `import ctrdistill` (and the
# CLI's --help) stays fast and loads no torch.
_EXPORTS = {
    "PrepareConfig": "ctrdistill.data.prepare", "SynthConfig": "ctrdistill.data.synthetic",
    "CtrDistillError": "ctrdistill.errors", "build_model": "ctrdistill.models",
    "Bundle": "ctrdistill.serving", "load_bundle": "ctrdistill.serving",
    "model_names": "ctrdistill.models", "KDOptions": "ctrdistill.strategies.factory",
    "register_model": "ctrdistill.models.registry", "Strategy": "ctrdistill.strategies.base",
    "Trainer": "ctrdistill.training.trainer",
    "TrainConfig": "ctrdistill.training.config",
    **dict.fromkeys(
        ["RunConfig", "run", "register_method", "MethodConfig", "MethodBuild",
         "CollapseConfig", "DistillConfig", "EvaluateConfig", "KDEFConfig", "LabelConfig",
         "MutualConfig", "PredictConfig", "Result", "Run", "SearchConfig", "StreamConfig",
         "TeacherSpec",
         "TrainRunConfig", "collapse", "demo", "distill", "evaluate", "kdef", "label",
         "load_run", "mutual", "predict", "prepare", "search", "stream", "synth", "train",
         "ExportConfig", "ServeConfig", "export", "serve", "FollowConfig", "follow"],
        "ctrdistill.pipelines"),
}

if TYPE_CHECKING:
    from ctrdistill.data.prepare import PrepareConfig
    from ctrdistill.data.synthetic import SynthConfig
    from ctrdistill.errors import CtrDistillError
    from ctrdistill.models import build_model, model_names
    from ctrdistill.pipelines import (
        CollapseConfig,
        DistillConfig,
        EvaluateConfig,
        ExportConfig,
        FollowConfig,
        KDEFConfig,
        LabelConfig,
        MutualConfig,
        PredictConfig,
        Result,
        Run,
        SearchConfig,
        ServeConfig,
        StreamConfig,
        TeacherSpec,
        TrainRunConfig,
        collapse,
        demo,
        distill,
        evaluate,
        export,
        follow,
        kdef,
        label,
        load_run,
        mutual,
        predict,
        prepare,
        search,
        serve,
        stream,
        synth,
        train,
    )
    from ctrdistill.serving import Bundle, load_bundle
    from ctrdistill.strategies.factory import KDOptions
    from ctrdistill.training.config import TrainConfig


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ctrdistill' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = [
    "Bundle",
    "CollapseConfig",
    "CtrDistillError",
    "DistillConfig",
    "EvaluateConfig",
    "ExportConfig",
    "FollowConfig",
    "KDEFConfig",
    "KDOptions",
    "LabelConfig",
    "MethodBuild",
    "MethodConfig",
    "MutualConfig",
    "PredictConfig",
    "PrepareConfig",
    "Result",
    "Run",
    "RunConfig",
    "SearchConfig",
    "ServeConfig",
    "Strategy",
    "StreamConfig",
    "SynthConfig",
    "TeacherSpec",
    "TrainConfig",
    "TrainRunConfig",
    "Trainer",
    "__version__",
    "build_model",
    "collapse",
    "demo",
    "distill",
    "evaluate",
    "export",
    "follow",
    "kdef",
    "label",
    "load_bundle",
    "load_run",
    "model_names",
    "mutual",
    "predict",
    "prepare",
    "register_method",
    "register_model",
    "run",
    "search",
    "serve",
    "stream",
    "synth",
    "train",
]
