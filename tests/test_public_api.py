"""The public API is one list (`ctrdistill._EXPORTS`): every name in it resolves, lazily."""

from __future__ import annotations

import pytest

import ctrdistill


def test_all_is_the_export_list() -> None:
    assert ctrdistill.__all__ == ["__version__", *ctrdistill._EXPORTS]
    assert {"register_model", "Strategy", "Trainer", "RunConfig", "run", "register_method",
            "MethodConfig", "MethodBuild"} <= set(ctrdistill.__all__)


@pytest.mark.parametrize("name", sorted(ctrdistill._EXPORTS))
def test_every_name_resolves(name: str) -> None:
    assert getattr(ctrdistill, name) is not None  # a wrong module raises here


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        ctrdistill.trian  # noqa: B018
