"""The ``astra`` command line (typer). The only package that imports typer; it holds no logic."""

from astra_synth.cli.root import app, main

__all__ = ["app", "main"]
