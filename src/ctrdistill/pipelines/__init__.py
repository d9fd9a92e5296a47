"""The verbs: one config model and one function each, all returning a `Result`.

data -> models -> strategies -> training -> (labels, analysis) -> pipelines -> cli: this package
is the only one that knows the verbs; the CLI only parses, calls these and prints.

Nothing is imported here, so that a verb loads only its own module (`prepare` needs no torch).
The public names are `ctrdistill.<name>` (one list, in `ctrdistill/__init__.py`); a package-level
re-export would clash with the submodules, which have the verbs' names.
"""
