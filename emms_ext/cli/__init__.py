"""Layer 5 (docs/design.md §4): the ``emms`` command. ``main.py`` builds the parser and runs a subcommand,
``commands.py`` holds the subcommands, ``inputs.py`` reads their input files."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
