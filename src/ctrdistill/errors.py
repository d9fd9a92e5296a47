"""The one exception type for user mistakes: the CLI prints its message on one line, exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CtrDistillError(Exception):
    """A problem with the user's input (file, config, data), reported without a traceback."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> CtrDistillError:
    """'unknown model 'dnnn'; did you mean 'dnn'? (valid: ...)'."""
    names = sorted(valid)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return CtrDistillError(f"unknown {kind} '{name}'{hint} (valid: {', '.join(names)})")
