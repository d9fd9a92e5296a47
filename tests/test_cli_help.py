"""`ctrdistill <verb> --help` explains every flag and shows an example."""

from __future__ import annotations

import argparse

import pytest

from ctrdistill.cli import build_parser


def _parsers(parser: argparse.ArgumentParser, name: str = "ctrdistill"):
    """(name, parser) of the command and every verb below it (analyze collapse included)."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for verb, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {verb}")


PARSERS = dict(_parsers(build_parser()))


def test_every_verb_is_covered():
    assert {"ctrdistill train", "ctrdistill distill", "ctrdistill analyze collapse",
            "ctrdistill demo", "ctrdistill synth"} <= set(PARSERS)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_flag_has_help(name):
    parser = PARSERS[name]
    missing = [a.dest for a in parser._actions
               if not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert not missing, f"{name}: no help for {missing}"


@pytest.mark.parametrize("name", sorted(n for n in PARSERS if n != "ctrdistill"))
def test_every_verb_shows_an_example_and_defaults(name):
    text = PARSERS[name].format_help()
    assert "example:\n  ctrdistill " in text, text
    for action in PARSERS[name]._actions:
        default = action.default
        real_default = action.option_strings and not (
            default is None or default is False or default == [] or default == argparse.SUPPRESS)
        if real_default:
            assert f"(default: {action.default})" in " ".join(text.split()), (name, action.dest)
