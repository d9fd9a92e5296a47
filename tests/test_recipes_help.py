"""Every registered recipe and each of its options is listed, in the help text and the docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctrdistill.cli import main
from ctrdistill.data.prepare import SplitConfig, split_help
from ctrdistill.data.recipes import get_recipe, recipe_names, recipes_help

DOCS = Path(__file__).parents[1] / "docs" / "recipes.md"


def test_every_recipe_and_option_is_listed() -> None:
    text = recipes_help()
    for name in recipe_names():
        assert f"\n{name}: " in f"\n{text}", name
        options = get_recipe(name).options
        for option in type(options).model_fields if options is not None else ():
            assert f"options.{option} (default" in text, (name, option)
    assert {"libsvm", "recbole"} <= set(recipe_names())


def test_the_docs_show_the_current_listing() -> None:
    assert recipes_help() in DOCS.read_text(), (
        "docs/recipes.md is stale: paste ctrdistill.data.recipes.recipes_help() into it")


def test_prepare_help_and_the_docs_list_the_split_keys(capsys) -> None:
    text = split_help()
    assert "Row ids number the rows" in text
    for key in SplitConfig.model_fields:
        assert f"split.{key} (default" in text, key
    assert text in DOCS.read_text(), "docs/recipes.md is stale: paste split_help() into it"
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    shown = capsys.readouterr().out
    assert "split.files (default None)" in shown and "libsvm: " in shown
