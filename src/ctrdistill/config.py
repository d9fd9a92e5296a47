"""Strict pydantic configs loaded from YAML.

An unknown key is an error that names the nearest valid key."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from ctrdistill.errors import CtrDistillError

T = TypeVar("T", bound=BaseModel)


class StrictConfig(BaseModel):
    """Base of every config: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    @classmethod
    def concrete(cls, data: Any) -> type[StrictConfig]:
        """The class that validates `data` where this one is declared: a base whose subclass
        depends on the data (a method chosen by its kind) returns that subclass."""
        return cls

    @classmethod
    def user_keys(cls) -> list[str]:
        """The keys a user writes: a field's alias where it has one (`schema`, not `schema_`)."""
        return sorted(field.alias or name for name, field in cls.model_fields.items())

    @classmethod
    def normalized(cls, data: Any) -> Any:
        """`data` in the shape the fields take (a config that accepts another spelling of its
        keys rewrites it before validation)."""
        return data

    @classmethod
    def user_location(cls, loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
        """The key path of an error as the user wrote it (a config that accepts a flat
        spelling of nested keys shows them flat)."""
        return loc


def _plain_name(value: str) -> str:
    if not value.strip() or value in (".", "..") or any(c in value for c in "/\\\0"):
        raise ValueError(f"{value!r} is not a plain name: it names a directory under "
                         "output_dir, so no path separators, no '..', not empty")
    return value


# A name that becomes one directory under output_dir (runs, teachers, streams, searches):
# a path in it would write outside output_dir.
Name = Annotated[str, AfterValidator(_plain_name)]


def _step(annotation: Any, part: Any) -> Any:
    """The annotation one step down `part` of an error location: a model's field (by alias or
    name), a list item, a mapping value, or one member of a union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not isinstance(part, str):
            return None
        field = next((f for n, f in annotation.model_fields.items() if part in (n, f.alias)),
                     None)
        return field.annotation if field else None
    args = get_args(annotation)
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        # pydantic names a union member in the location only when the union has several models
        named = next((a for a in args if getattr(a, "__name__", None) == part), None)
        if named is not None:
            return named
        return next((s for s in (_step(a, part) for a in args) if s is not None), None)
    if origin in (list, tuple, set, frozenset, Sequence) and isinstance(part, int):
        return args[0] if args else None
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    return None


def _concrete(annotation: Any, data: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, StrictConfig):
        return annotation.concrete(data)
    return annotation


def _model_at(model: type[BaseModel], loc: tuple[Any, ...], data: Any) -> type[BaseModel] | None:
    """The config class that owns the key at `loc` (used to suggest keys for extra fields)."""
    annotation: Any = _concrete(model, data)
    for part in loc[:-1]:
        annotation = _step(annotation, part)
        if annotation is None:
            return None
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            data = None
        annotation = _concrete(annotation, data)
    candidates = [annotation, *get_args(annotation)]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _keys(model: type[BaseModel]) -> list[str]:
    if issubclass(model, StrictConfig):
        return model.user_keys()
    return sorted(field.alias or name for name, field in model.model_fields.items())


def describe_validation_error(error: ValidationError, model: type[BaseModel], source: str,
                              data: Any = None) -> str:
    """One line per problem, naming the key path and, for unknown keys, the closest valid key
    (`data`, the input, tells which class a key belongs to where that depends on it)."""
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        shown = model.user_location(loc, data) if issubclass(model, StrictConfig) else loc
        path = ".".join(str(p) for p in shown) or "<root>"
        if item["type"] == "extra_forbidden":
            shaped = model.normalized(data) if issubclass(model, StrictConfig) else data
            owner = _model_at(model, loc, shaped)
            valid = _keys(owner) if owner else []
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
        raise CtrDistillError(describe_validation_error(error, model, source, data)) from None


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
