"""The verbs: one config model and one function each, all returning a `Result`.

data -> models -> strategies -> training -> (labels, analysis) -> pipelines -> cli: this package
is the only one that knows the verbs; the CLI only parses, calls these and prints.
"""

from ctrdistill.pipelines.analyze import CollapseConfig, collapse
from ctrdistill.pipelines.common import Result
from ctrdistill.pipelines.demo import demo
from ctrdistill.pipelines.evaluate import EvaluateConfig, evaluate
from ctrdistill.pipelines.export import ExportConfig, export
from ctrdistill.pipelines.fit import (
    DistillConfig,
    KDEFConfig,
    MutualConfig,
    RunConfig,
    TrainRunConfig,
    distill,
    kdef,
    mutual,
    run,
    train,
)
from ctrdistill.pipelines.follow import FollowConfig, follow
from ctrdistill.pipelines.label import LabelConfig, label
from ctrdistill.pipelines.load import Run, load_run
from ctrdistill.pipelines.methods import MethodBuild, MethodConfig, register_method
from ctrdistill.pipelines.methods.kd import TeacherSpec
from ctrdistill.pipelines.predict import PredictConfig, predict
from ctrdistill.pipelines.prepare import prepare, synth
from ctrdistill.pipelines.search import SearchConfig, search
from ctrdistill.pipelines.serve import ServeConfig, serve
from ctrdistill.pipelines.stream import DayTrainConfig, StreamConfig, stream

__all__ = [
    "CollapseConfig", "DayTrainConfig", "DistillConfig", "EvaluateConfig", "ExportConfig",
    "FollowConfig", "KDEFConfig", "LabelConfig", "MethodBuild", "MethodConfig", "MutualConfig",
    "PredictConfig",
    "Result", "Run", "RunConfig",
    "SearchConfig", "ServeConfig", "StreamConfig", "TeacherSpec", "TrainRunConfig", "collapse",
    "demo", "distill", "evaluate", "export", "follow", "kdef", "label", "load_run", "mutual",
    "predict",
    "prepare", "register_method", "run", "search", "serve", "stream", "synth", "train",
]
