"""The ``astra`` command line (typer). The only package that imports typer; it holds no logic."""

from astra_synth.cli.app import app, main

__all__ = ["app", "main"]
