"""What the pipelines' ``run`` commands share: the run-directory options and loading the config.

Both pipelines resume from a run directory and take the CLI's global endpoint options over their config
file; one definition keeps their flags, help and exit status for a bad config the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel

from astra_synth.config import ConfigError, GlobalOptions, load_config

T = TypeVar("T", bound=BaseModel)

RunDirOption = Annotated[Path, typer.Option("--run-dir", help="Run directory; an existing one is resumed.")]
RetryRejectedOption = Annotated[
    bool, typer.Option("--retry-rejected", help="Re-run items rejected by earlier sessions.")
]


def load_run_config(ctx: typer.Context, model: type[T], path: Path) -> T:
    """``path`` read into ``model`` with the global ``--base-url``/``--model`` applied; a bad config prints
    its message (file and fields) and exits with status 2."""
    options = ctx.find_root().obj or GlobalOptions()
    try:
        return load_config(model, path, options.overrides())
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
