"""docs/config.md, generated from the config models: every key of every verb's config (nested
configs included) with its type, default and description. New keys appear by themselves;
regenerate with `python -m ctrdistill.pipelines.config_reference docs/config.md` (a test fails
while the file is out of date)."""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ctrdistill.data.prepare import PrepareConfig
from ctrdistill.data.synthetic import PRESETS, SynthConfig
from ctrdistill.models.base import ModelConfig
from ctrdistill.pipelines.analyze import CollapseConfig
from ctrdistill.pipelines.demo import DemoConfig
from ctrdistill.pipelines.evaluate import EvaluateConfig
from ctrdistill.pipelines.export import ExportConfig
from ctrdistill.pipelines.fit import (
    DistillConfig,
    KDEFConfig,
    MutualConfig,
    RunConfig,
    TrainRunConfig,
)
from ctrdistill.pipelines.label import LabelConfig
from ctrdistill.pipelines.methods import MethodConfig, method_class
from ctrdistill.pipelines.predict import PredictConfig
from ctrdistill.pipelines.search import SearchConfig
from ctrdistill.pipelines.serve import ServeConfig
from ctrdistill.pipelines.stream import StreamConfig
from ctrdistill.storage import atomic_file
from ctrdistill.training.config import TrainConfig

#: (section title, config class, how it is used): one table each, in the order of the flow.
SECTIONS: list[tuple[str, type[BaseModel], str]] = [
    ("synth", SynthConfig, "`ctrdistill synth`, `cd.synth`"),
    ("prepare", PrepareConfig, "`ctrdistill prepare`, `cd.prepare`"),
    ("train options", TrainConfig, "the `train:` block of train, distill, stream (teacher and "
     "student), mutual and kdef"),
    ("run", RunConfig, "every training run, `cd.run`: the base keys and `method: {kind: ...}` "
     "with the method's keys (the sections below list them per verb)"),
    ("train", TrainRunConfig, "`ctrdistill train`, `cd.train`: method `plain`, its keys at the "
     "top level"),
    ("distill", DistillConfig, "`ctrdistill distill`, `cd.distill`: method `kd`, its keys at "
     "the top level"),
    ("mutual", MutualConfig, "`ctrdistill mutual`, `cd.mutual`: method `mutual`, its keys at "
     "the top level"),
    ("kdef", KDEFConfig, "`ctrdistill kdef`, `cd.kdef`: method `kdef`, its keys at the top "
     "level"),
    ("label", LabelConfig, "`ctrdistill label`, `cd.label`"),
    ("stream", StreamConfig, "`ctrdistill stream`, `cd.stream`"),
    ("search", SearchConfig, "`ctrdistill search`, `cd.search` (needs `ctrdistill[search]`)"),
    ("evaluate", EvaluateConfig, "`ctrdistill evaluate`, `cd.evaluate`"),
    ("predict", PredictConfig, "`ctrdistill predict`, `cd.predict`"),
    ("analyze collapse", CollapseConfig, "`ctrdistill analyze collapse`, `cd.collapse`"),
    ("export", ExportConfig, "`ctrdistill export`, `cd.export`"),
    ("serve", ServeConfig, "`ctrdistill serve`, `cd.serve`"),
    ("demo", DemoConfig, "`ctrdistill demo`, `cd.demo`"),
]
MODELS_LINK = "a zoo model: `{name: ..., ...}`, keys per model in [models.md](models.md)"
TRAIN_LINK = "keys in [train options](#train-options)"


class Key(NamedTuple):
    path: str
    type: str
    default: str
    description: str


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The config classes a key holds directly, in a list, or as an optional value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if isinstance(annotation, type) and issubclass(annotation, ModelConfig):
        return "model"
    if origin is Literal:
        return " or ".join(repr(a) if isinstance(a, str) else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin in (list, tuple, set, frozenset):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping to {type_name(args[1])}" if args and args[1] is not Any else "mapping"
    if annotation is type(None):
        return "null"
    if annotation is Path:
        return "path"
    if isinstance(annotation, type):
        return "mapping" if issubclass(annotation, BaseModel) else annotation.__name__
    return str(annotation).replace("typing.", "")


def _value(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "see below" if not isinstance(value, ModelConfig) else f"`{{name: {value.name}}}`"
    if isinstance(value, Path):
        value = str(value)
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def default_text(field: FieldInfo, name: str = "") -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and extra.get("preset_knob"):  # the synthetic presets' knobs
        return "; ".join(f"{preset}: {_value(knobs[name])}" for preset, knobs in PRESETS.items())
    if field.default is not PydanticUndefined:
        return _value(field.default)
    if field.default_factory is not None:
        return _value(field.default_factory())  # type: ignore[call-arg]
    return "required"


def _same_as_train(model: type[BaseModel]) -> frozenset[str]:
    """The keys of a TrainConfig subclass that it inherits unchanged."""
    base = TrainConfig.model_fields
    return frozenset(n for n, f in model.model_fields.items() if n in base
                     and (default_text(f), f.description) == (default_text(base[n]),
                                                              base[n].description))


def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The keys of `model` as a user writes them: a verb's run config with its method's keys at
    the top level."""
    kind = getattr(model, "verb_kind", None)
    if kind is None:
        return dict(model.model_fields)
    base = {n: f for n, f in model.model_fields.items() if n != "method"}
    return base | {n: f for n, f in method_class(kind).model_fields.items() if n != "kind"}


def keys(model: type[BaseModel], prefix: str = "", skip: frozenset[str] = frozenset()
         ) -> Iterator[Key]:
    """Every key of `model` (but `skip`), depth first: nested configs as `parent.key`, list
    items as `parent[].key`; zoo models link to docs/models.md and train blocks to the train
    options section instead of repeating them."""
    for name, field in _fields(model).items():
        if name in skip:
            continue
        path = prefix + (field.alias or name)
        is_model = _models(field.annotation) and all(issubclass(m, ModelConfig)
                                                     for m in _models(field.annotation))
        description = (field.description or "").replace("\n", " ")
        nested = _models(field.annotation)
        shared = bool(nested) and all(issubclass(m, TrainConfig) for m in nested)
        if nested and all(issubclass(m, MethodConfig) for m in nested):
            yield Key(path, "mapping", default_text(field, name),
                      f"{description}; each method's keys are in its verb's section")
            continue
        if is_model or shared:
            link = MODELS_LINK if is_model else TRAIN_LINK
            description = f"{description}; {link}" if description else link
        default = "see the link" if shared else default_text(field, name)
        yield Key(path, type_name(field.annotation), default, description)
        if is_model:
            continue
        in_list = typing.get_origin(field.annotation) is list
        for sub in nested:
            # A train block lists only what it adds to or changes in the shared train options.
            yield from keys(sub, f"{path}[]." if in_list else f"{path}.",
                            _same_as_train(sub) if shared else frozenset())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    lines = ["# Config reference", "",
             "Every key of every verb's config: YAML keys, `--set KEY=VALUE` paths, and keyword "
             "arguments of the Python functions; a top-level key holding a value or a list of "
             "values is also a flag of its verb (`output_dir` is `--output-dir`). Generated from "
             "the config classes by `python -m ctrdistill.pipelines.config_reference "
             "docs/config.md`; do not edit by hand. Model keys (`model:`, `student:`, "
             "`backbone:`, ...) are in [models.md](models.md).", ""]
    for title, model, used in SECTIONS:
        lines += [f"## {title}", "", f"`{model.__name__}`: {used}.", "",
                  "| key | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| `{k.path}` | {_cell(k.type)} | {_cell(k.default)} | {_cell(k.description)} |"
                  for k in keys(model)]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ctrdistill.pipelines.config_reference OUTPUT.md", file=sys.stderr)
        return 2
    with atomic_file(Path(argv[0])) as tmp:
        tmp.write_text(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
