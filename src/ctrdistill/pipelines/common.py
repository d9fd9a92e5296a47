"""What every verb shares: its config given as a model, a mapping or a YAML path, and the one
result type it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from ctrdistill.config import load_yaml, validate_config
from ctrdistill.errors import CtrDistillError

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
