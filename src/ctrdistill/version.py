"""The package version, in one place (the CLI's --version and ctrdistill.__version__)."""

__version__ = "0.1.0"
