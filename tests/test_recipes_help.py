"""Every registered recipe and each of its options is listed, in the help text and the docs."""

from __future__ import annotations

from pathlib import Path

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
