"""Command-line flags generated from a config class.

Every top-level field whose value is a scalar (or a list of scalars) becomes a flag named after
its key, typed, described and with its default read from the class, so that defaults live in one
place: the config. Nested fields are reached with `--set`. A flag left out keeps the config
file's value (its argparse default is None)."""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

SCALARS = (bool, int, float, str, Path)
PREFIX = "field:"  # argparse dests of generated flags, apart from the CLI's own options


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _scalar(annotation: Any) -> bool:
    return annotation in SCALARS or typing.get_origin(annotation) is Literal


def _shape(field: FieldInfo) -> tuple[Any, bool] | None:
    """(scalar type, is a list) of a field a flag can give, or None for nested values."""
    annotation = _without_none(field.annotation)
    if _scalar(annotation):
        return annotation, False
    if typing.get_origin(annotation) is list:
        item = _without_none(typing.get_args(annotation)[0])
        if _scalar(item):
            return item, True
    return None


def flag_fields(model: type[BaseModel]) -> dict[str, tuple[FieldInfo, Any, bool]]:
    """{config key: (field, scalar type, is a list)} of the fields that get a flag."""
    fields = {}
    for name, field in model.model_fields.items():
        shape = _shape(field)
        if shape is not None:
            fields[field.alias or name] = (field, *shape)
    return fields


def _default(field: FieldInfo) -> str:
    if field.is_required() or field.default_factory is not None or field.default is None:
        return ""
    value = field.default
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f" (default: {text})"


def _argument(key: str, item: type, field: FieldInfo) -> dict[str, Any]:
    """argparse keywords of one value: its type or choices, and its help."""
    text = (field.description or "").replace("%", "%%")
    if "(default" not in text:  # a description may say its default in words
        text += _default(field)
    if typing.get_origin(item) is Literal:
        choices = typing.get_args(item)
        return {"choices": choices, "type": type(choices[0]), "help": text}
    return {"type": item, "help": text, "metavar": key.upper()}


def add_flags(parser: argparse.ArgumentParser, model: type[BaseModel],
              positional: str | None = None, aliases: Mapping[str, str] | None = None) -> None:
    """Add `model`'s flags to `parser`; `positional` (a key) is given without a flag name, and
    `aliases` maps extra flag names (kept for older command lines) to keys."""
    extra: dict[str, list[str]] = {}
    for alias, key in (aliases or {}).items():
        extra.setdefault(key, []).append(f"--{alias.replace('_', '-')}")
    for key, (field, item, many) in flag_fields(model).items():
        keywords = _argument(key, item, field)
        if key == positional:
            # optional here: a --config file may give it; the config's validation says if missing
            parser.add_argument(PREFIX + key, nargs="*" if many else "?", metavar=key,
                                **{k: v for k, v in keywords.items() if k != "metavar"})
            continue
        names = [f"--{key.replace('_', '-')}", *extra.get(key, [])]
        if item is bool and not many:
            parser.add_argument(*names, dest=PREFIX + key, action=argparse.BooleanOptionalAction,
                                help=keywords["help"])
        else:
            if many:
                keywords["help"] += " (repeatable)"
            parser.add_argument(*names, dest=PREFIX + key, action="append" if many else "store",
                                **keywords)


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys the command line gave, with their values."""
    return {dest.removeprefix(PREFIX): value for dest, value in vars(args).items()
            if dest.startswith(PREFIX) and value not in (None, [])}
