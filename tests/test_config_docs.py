"""docs/config.md is the generated config reference, up to date, and every key is described."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

import ctrdistill
from ctrdistill.models.base import ModelConfig
from ctrdistill.pipelines.config_reference import SECTIONS, _models, keys, render

DOC = Path(__file__).parents[1] / "docs" / "config.md"


def test_config_reference_is_up_to_date():
    assert DOC.read_text() == render(), (
        "docs/config.md is out of date: run "
        "`PYTHONPATH=src python -m ctrdistill.pipelines.config_reference docs/config.md`")


def test_every_key_has_a_description():
    missing = [f"{title}: {key.path}" for title, model, _ in SECTIONS for key in keys(model)
               if not key.description.strip()]
    assert not missing, missing


def _reachable(model: type[BaseModel]) -> set[type[BaseModel]]:
    found = {model}
    for field in model.model_fields.values():
        for nested in _models(field.annotation):
            if nested not in found and not issubclass(nested, ModelConfig):
                found |= _reachable(nested)
    return found


def test_every_public_config_is_documented():
    documented = set().union(*(_reachable(model) for _, model, _ in SECTIONS))
    public = {getattr(ctrdistill, name) for name in ctrdistill.__all__}
    configs = {c for c in public if isinstance(c, type) and issubclass(c, BaseModel)
               and not issubclass(c, ModelConfig) and c.__name__.endswith(("Config", "Options"))}
    assert configs <= documented, sorted(c.__name__ for c in configs - documented)


def test_nested_and_aliased_keys_are_listed():
    paths = {title: {k.path for k in keys(model)} for title, model, _ in SECTIONS}
    assert {"strategy.lambda", "teachers[].run", "train", "teachers[].model",
            "holdout_fraction"} <= paths["distill"]
    assert {"schema.fields[].fill", "split.kind"} <= paths["prepare"]
    assert "train.epochs" not in paths["distill"]  # shared: in its own section
    assert {"epochs", "early_stop.patience", "lr_plateau.factor"} <= paths["train options"]
