"""What every verb shares: its config given as a model, a mapping or a YAML path, and the one
result type it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from ctrdistill.config import load_yaml, validate_config
from ctrdistill.errors import CtrDistillError
from ctrdistill.rundir import plain

C = TypeVar("C", bound=BaseModel)


@dataclass
class Result:
    """What a verb produced.

    `path`: the output written (run directory, dataset, label store, file); `metrics`: its
    figures (a run's metrics.json); `rows`: the results table, one row per model or output;
    `history`: per-evaluation (or per-day) records; `title`: the table's title.
    """

    path: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    title: str = ""


def resolve(config_class: type[C], config: C | dict[str, Any] | str | Path | None,
            **overrides: Any) -> C:
    """A validated config from a model instance, a mapping, or a YAML file, with keyword
    overrides of top-level keys (`train(path, overwrite=True)`)."""
    if isinstance(config, config_class):
        data = config.model_dump(by_alias=True)
        source = config_class.__name__
    elif isinstance(config, str | Path):
        data = load_yaml(config)
        source = str(config)
        if not isinstance(data, dict):
            raise CtrDistillError(f"{config}: the config must be a mapping of keys to values")
    elif isinstance(config, dict):
        data, source = dict(config), config_class.__name__
    elif config is None:
        data, source = {}, config_class.__name__
    else:
        raise CtrDistillError(f"a {config_class.__name__} is a config object, a mapping or a "
                              f"YAML path, not {type(config).__name__}")
    if isinstance(config, config_class) and not overrides:
        return config
    return validate_config(config_class, data | overrides, source)


#: Config keys (with everything below them) that change what a run shows or how it is
#: started, not what it computes: a resumed run may differ in them.
DISPLAY_ONLY = ("train.progress", "overwrite", "tracking", "resume")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat |= flatten(item, f"{prefix}.{key}" if prefix else key)
    return flat


def config_changes(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two resolved configs (display-only keys ignored)."""
    a, b = flatten(plain(saved)), flatten(plain(new))
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)
                  and not any(k == d or k.startswith(f"{d}.") for d in DISPLAY_ONLY))
