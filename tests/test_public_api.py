"""The public API is one list (`ctrdistill._EXPORTS`): every name in it resolves, lazily."""

from __future__ import annotations

import importlib.util

import pytest

import ctrdistill

#: Created by the run object of issue 28 (ctrdistill.pipelines.fit and .methods).
RUN_OBJECT = {"RunConfig", "run", "register_method", "MethodConfig", "MethodBuild"}


def test_all_is_the_export_list() -> None:
    present = [n for n in ctrdistill._EXPORTS
               if n not in RUN_OBJECT or importlib.util.find_spec(ctrdistill._EXPORTS[n])]
    assert ctrdistill.__all__ == ["__version__", *present]
    assert {"register_model", "Strategy", "Trainer"} <= set(ctrdistill.__all__)


@pytest.mark.parametrize("name", sorted(set(ctrdistill._EXPORTS) - RUN_OBJECT))
def test_every_name_resolves(name: str) -> None:
    value = getattr(ctrdistill, name)
    assert getattr(value, "__name__", name) == name


@pytest.mark.parametrize("name", sorted(RUN_OBJECT))
def test_the_run_object_is_public(name: str) -> None:
    module = ctrdistill._EXPORTS[name]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not there yet")
    assert getattr(ctrdistill, name).__name__ == name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        ctrdistill.trian  # noqa: B018
