"""Methods: what a run trains, chosen by `method.kind` in a run config.

A method is a config class (a `MethodConfig` with a `kind`) whose `build` returns the strategy to
fit and what the one run path needs besides (training rows, the rows early stopping watches,
the results table, what the history hides). `register_method` adds one, also from outside the
package; the built-in ones are plain, kd, mutual and kdef.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ctrdistill.analysis.report import result_row
from ctrdistill.config import StrictConfig
from ctrdistill.data.dataset import ColumnData, PreparedData
from ctrdistill.data.loader import Loader
from ctrdistill.errors import CtrDistillError
from ctrdistill.strategies.base import Strategy
from ctrdistill.training.config import TrainConfig

if TYPE_CHECKING:
    from ctrdistill.pipelines.fit import RunConfig

#: Rows of a results table from the finished run's metrics.
Rows = Callable[[dict[str, Any]], list[dict[str, Any]]]


@dataclass
class MethodBuild:
    """What a method hands the run path.

    `strategy`: the objective to fit; `loader`: training batches (default: the train split);
    `valid`: the rows early stopping watches (default: the valid split); `reports`: the splits
    whose metrics are reported (default: valid and test); `rows`: the results table from the
    run's metrics (default: the served model and one row per extra output); `hide`: prefixes of
    validation figures dropped from the history (in-sample there); `curves`: keyword arguments
    of the learning-curve plot (title, rows)."""

    strategy: Strategy
    loader: Loader | None = None
    valid: ColumnData | None = None
    reports: dict[str, ColumnData] | None = None
    rows: Rows | None = None
    hide: tuple[str, ...] = ()
    curves: dict[str, str] | None = None


class MethodConfig(StrictConfig):
    """Base of every method's config; `kind` names the method in `method: {kind: ...}`."""

    kind: str = Field(description="the method: plain, kd, mutual, kdef or a registered one")

    @classmethod
    def concrete(cls, data: Any) -> type[StrictConfig]:
        kind = data.get("kind") if isinstance(data, dict) else None
        return _METHODS.get(kind, cls) if cls is MethodConfig else cls

    def outputs(self) -> list[str]:
        """Outputs evaluated besides the served model ('peer0', 'ensemble', ...)."""
        return []

    def held_out_terms(self) -> list[str]:
        """Label-free terms evaluated on held-out rows (early stopping may watch them)."""
        return []

    def resolve_train(self, train: TrainConfig, given: set[str]) -> TrainConfig:
        """The training config this method runs with: checks it (raising ValueError) and may
        derive values the user did not give (`given`: the method keys the config set)."""
        return train

    def build(self, run: RunConfig, data: PreparedData) -> MethodBuild:
        raise NotImplementedError

    def default_rows(self, name: str) -> Rows:
        def rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
            if not self.outputs():
                return [result_row(name, metrics)]
            return [result_row(f"{name} (served)", metrics),
                    *(result_row(f"{name}/{o}", metrics, output=o) for o in self.outputs())]
        return rows


_METHODS: dict[str, type[MethodConfig]] = {}


def register_method(config_class: type[MethodConfig]) -> type[MethodConfig]:
    """Make a method available as `method: {kind: <its kind>}` (usable as a class decorator).
    The class declares `kind` with its name as the default and implements `build`."""
    kind = config_class.model_fields["kind"].default
    if not isinstance(kind, str) or not kind:
        raise CtrDistillError(f"{config_class.__name__}: a method declares its kind as the "
                              "default of `kind`, e.g. kind: Literal['toy'] = 'toy'")
    _METHODS[kind] = config_class
    return config_class


def method_kinds() -> list[str]:
    return sorted(_METHODS)


def method_class(kind: str) -> type[MethodConfig]:
    if kind not in _METHODS:
        raise ValueError(f"unknown method kind '{kind}' (registered: {', '.join(method_kinds())})")
    return _METHODS[kind]


def method_config(value: Any) -> MethodConfig:
    """A method's config from a mapping with its `kind` (or a config object)."""
    if isinstance(value, MethodConfig):
        return value
    if not isinstance(value, dict) or "kind" not in value:
        raise ValueError(f"a method is a mapping with its kind ({', '.join(method_kinds())})")
    return method_class(value["kind"]).model_validate(value)


# The built-in methods register themselves.
from ctrdistill.pipelines.methods import kd, kdef, mutual, plain  # noqa: E402, F401
