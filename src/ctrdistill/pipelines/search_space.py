"""The teacher search space of `ctrdistill search`: ranges over zoo families, embedding size,
widths and depth, dropout, learning rate and training length, checked against the models' own
strict configs before any trial runs, and sampled through an Optuna trial."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from ctrdistill.config import StrictConfig
from ctrdistill.errors import CtrDistillError
from ctrdistill.models.base import ModelConfig
from ctrdistill.models.registry import model_class, model_config
from ctrdistill.training.config import TrainConfig


class Param(StrictConfig):
    """A range `low`..`high` (`log` scale, `step` for a grid) or a list of `choices`."""

    low: float | None = Field(None, description="smallest value")
    high: float | None = Field(None, description="largest value")
    log: bool = Field(False, description="sample on a log scale")
    step: float | None = Field(None, gt=0, description="grid spacing (default: 1 for integers)")
    choices: list[Any] | None = Field(None, description="the values to pick from, instead of a "
                                      "range")

    @model_validator(mode="after")
    def _check(self) -> Param:
        if self.choices is not None:
            if not self.choices or self.low is not None or self.high is not None:
                raise ValueError("give a non-empty `choices` list or `low` and `high`, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs `low` and `high` (or give `choices`)")
        if self.low > self.high:
            raise ValueError(f"empty range: low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self

    def corners(self) -> list[Any]:
        return list(self.choices) if self.choices is not None else [self.low, self.high]


class SearchSpace(StrictConfig):
    """What a teacher may be. Absent keys keep the model's (or `train`'s) value."""

    models: list[str] = Field(min_length=1, description="zoo families to choose from")
    embedding_dim: Param | None = Field(None, description="embedding width (integer)")
    width: Param | None = Field(None, description="units of every hidden layer of every MLP "
                                "(`*hidden_units` fields; integer)")
    depth: Param | None = Field(None, description="hidden layers of every MLP (integer)")
    dropout: Param | None = Field(None, description="the model's `dropout`")
    lr: Param | None = Field(None, description="the teacher's learning rate")
    epochs: Param | None = Field(None, description="the teacher's epochs (integer)")
    max_steps: Param | None = Field(None, description="the teacher's step budget (integer)")
    model_params: dict[str, Param] = Field(
        default_factory=dict, description="any other model fields by name (each family must "
        "have them)")


INTEGER = {"embedding_dim", "width", "depth", "epochs", "max_steps"}
TRAIN_KEYS = ("lr", "epochs", "max_steps")


def _mlp_fields(name: str) -> list[str]:
    fields = model_class(name).config_class.model_fields
    return [k for k in fields if k.endswith("hidden_units")]


def _teacher(params: dict[str, Any], defaults: dict[str, Any]) -> tuple[ModelConfig, dict]:
    """The validated model config and the train overrides of one point of the space."""
    name = params["model"]
    data: dict[str, Any] = {"name": name} | dict(defaults.get(name, {}))
    if "embedding_dim" in params:
        data["embedding_dim"] = params["embedding_dim"]
    if "dropout" in params:
        data["dropout"] = params["dropout"]
    for key in _mlp_fields(name):
        current = data.get(key) or model_class(name).config_class.model_fields[key].get_default(
            call_default_factory=True)
        depth = params.get("depth", len(current))
        width = params.get("width", current[0] if current else 64)
        if "depth" in params or "width" in params:
            data[key] = [int(width)] * int(depth)
    data |= {k[len("model."):]: v for k, v in params.items() if k.startswith("model.")}
    return model_config(data, source=f"search point {params}"), \
        {k: params[k] for k in TRAIN_KEYS if k in params}


def _params(space: SearchSpace) -> dict[str, Param]:
    """The space's parameters by trial name (other model fields as `model.<field>`), in order."""
    params = {k: getattr(space, k) for k in SearchSpace.model_fields
              if k not in ("models", "model_params") and getattr(space, k) is not None}
    return params | {f"model.{k}": v for k, v in space.model_params.items()}


def check_space(space: SearchSpace, train: TrainConfig, defaults: dict[str, Any]) -> None:
    """Refuse, before any trial, a family the zoo lacks, a parameter a family does not have,
    and corner points the model or train configs reject."""
    for name in space.models:
        fields = model_class(name).config_class.model_fields
        wanted = [k for k in ("dropout",) if getattr(space, k) is not None]
        wanted += list(space.model_params)
        missing = [k for k in wanted if k not in fields]
        if (space.width or space.depth) and not _mlp_fields(name):
            missing.append("width/depth (no hidden_units field)")
        if missing:
            raise CtrDistillError(f"search space: model {name!r} has no parameter "
                                  f"{', '.join(missing)}")
        for corner in (0, -1):
            point = {"model": name} | {k: _cast(k, p.corners()[corner])
                                       for k, p in _params(space).items()}
            _, overrides = _teacher(point, defaults)
            try:
                TrainConfig.model_validate(train.model_dump() | overrides)
            except ValueError as error:
                raise CtrDistillError(f"search point {point}: {error}") from None


def _cast(key: str, value: Any) -> Any:
    return int(value) if key in INTEGER and isinstance(value, float) else value


def grid(space: SearchSpace) -> dict[str, list[Any]]:
    """Every parameter's grid points (Optuna's GridSampler): its choices, or a range's points
    `step` apart (integers: 1 apart by default); a continuous range without a step has none."""
    points: dict[str, list[Any]] = {"model": list(space.models)}
    for key, param in _params(space).items():
        if param.choices is not None:
            points[key] = list(param.choices)
            continue
        step = param.step or (1 if key in INTEGER else None)
        if step is None:
            raise CtrDistillError(f"search space: sampler grid needs `choices` or a `step` for "
                                  f"{key} (a continuous range has no grid)")
        count = round((param.high - param.low) / step) + 1  # type: ignore[operator]
        values = [param.low + i * step for i in range(count)]  # type: ignore[operator]
        points[key] = [_cast(key, v) for v in values]
    return points


def _suggest(trial: Any, key: str, param: Param) -> Any:
    if param.choices is not None:
        return trial.suggest_categorical(key, param.choices)
    if key in INTEGER:
        return trial.suggest_int(key, int(param.low), int(param.high),  # type: ignore[arg-type]
                                 step=int(param.step or 1), log=param.log)
    return trial.suggest_float(key, param.low, param.high, step=param.step, log=param.log)


def sample(trial: Any, space: SearchSpace, train: TrainConfig, defaults: dict[str, Any]
           ) -> tuple[ModelConfig, TrainConfig]:
    """One teacher (model config, train config) drawn by an Optuna trial."""
    params: dict[str, Any] = {"model": trial.suggest_categorical("model", space.models)}
    for key, value in _params(space).items():
        params[key] = _suggest(trial, key, value)
    model, overrides = _teacher(params, defaults)
    return model, TrainConfig.model_validate(train.model_dump() | overrides)
