"""The package version (one place; read by pyproject.toml, the CLI and the result file's ``software``)."""

__version__ = "0.1.0"
