"""The version of mura-cli, in one place: ``pyproject.toml`` reads it, ``mura_cli.__version__`` re-exports it.

A module of its own so that the library can name its version without importing the package (and its API).
"""

__version__ = "0.2.0"
