"""Strict pydantic configs loaded from YAML.

An unknown key is an error that names the nearest valid key."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ctrdistill.errors import CtrDistillError

T = TypeVar("T", bound=BaseModel)


class StrictConfig(BaseModel):
    """Base of every config: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config class that owns the field at `loc` (used to suggest keys for extra fields)."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            return None
        annotation = current.model_fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    return current


def describe_validation_error(error: ValidationError, model: type[BaseModel], source: str) -> str:
    """One line per problem, naming the key path and, for unknown keys, the closest valid key."""
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        path = ".".join(str(p) for p in loc) or "<root>"
        if item["type"] == "extra_forbidden":
            owner = _model_at(model, loc)
            valid = sorted(owner.model_fields) if owner else []
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            lines.append(f"{source}: unknown key '{path}'{hint} (valid: {', '.join(valid)})")
        else:
            lines.append(f"{source}: {path}: {item['msg']}")
    return "; ".join(lines)


def validate_config(model: type[T], data: Any, source: str = "config") -> T:
    """Validate a mapping into `model`, turning pydantic's error into a one-line CtrDistillError."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise CtrDistillError(describe_validation_error(error, model, source)) from None


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CtrDistillError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise CtrDistillError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None


def load_config(model: type[T], path: str | Path) -> T:
    return validate_config(model, load_yaml(path), source=str(path))
