"""The one exception type for user mistakes: the CLI prints its message on one line, exit code 2."""


class CtrDistillError(Exception):
    """A problem with the user's input (file, config, data), reported without a traceback."""
