"""``astra export …``: publish a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from astra_synth.errors import InputError
from astra_synth.export.card import DEFAULT_LICENSE
from astra_synth.export.hf import export_hf
from astra_synth.export.verifiers import DEFAULT_SERVER, export_verifiers
from astra_synth.export.verl import OVERRIDES_FILE, export_verl
from astra_synth.runs.rundir import RunDirError

app = typer.Typer(help="Publish a finished run (dataset card + Hugging Face layout).", no_args_is_help=True)


@app.command("hf")
def hf(
    run_dir: Annotated[Path, typer.Argument(help="A finished trajectories or arenas run directory.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write (README.md card + data/*.parquet).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT when it is not empty.")] = False,
    license_id: Annotated[
        str,
        typer.Option("--license", help="Licence id for the card's front matter (other = mixed sources)."),
    ] = DEFAULT_LICENSE,
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Publish a run whose filters left no rows.")
    ] = False,
) -> None:
    """Write a folder ready to push to the Hugging Face Hub; `datasets.load_dataset(OUT)` reads it.

    Refuses (exit 2) an unfinished run, a run without its parquet, a run with no rows without
    --allow-empty, and a non-empty OUT without --force.
    """
    try:
        result = export_hf(run_dir, out, force=force, license_id=license_id, allow_empty=allow_empty)
    except (RunDirError, InputError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{result.kind}: {result.rows} rows → {result.out} ({', '.join(result.files)})")


@app.command("verifiers")
def verifiers(
    arena_files: Annotated[list[Path], typer.Argument(help="Arena JSONL files (those the server serves).")],
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write (pyproject.toml + the taskset package).")
    ],
    server: Annotated[
        str, typer.Option("--server", help="URL of the `astra arenas serve` the taskset plays on.")
    ] = DEFAULT_SERVER,
    name: Annotated[str, typer.Option("--name", help="Taskset id (`vf-eval NAME`); its package: - as _.")] = (
        "astra-arenas"
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT when it is not empty.")] = False,
) -> None:
    """Write a verifiers 0.4.0 taskset package: one task per arena, tools served per rollout from the arena
    server (run in its sandbox), the arena F1 as `@vf.reward`. `pip install OUT`, then `vf-eval NAME`.

    Refuses (exit 2) unreadable arenas, duplicate ids, a bad name and a non-empty OUT without --force.
    """
    try:
        result = export_verifiers(arena_files, out, server=server, name=name, force=force)
    except InputError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{result.tasks} arenas → {result.out} (taskset {result.taskset_id}; server {result.server})")


@app.command("verl")
def verl(
    arenas: Annotated[
        list[Path], typer.Argument(help="Arena JSONL files; each is a split named by its stem.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder to write (data/*.parquet + verl config).")],
    env_url: Annotated[
        str,
        typer.Option(
            "--env-url", help="The `astra arenas serve` the agent loop plays on (ws:// or http://)."
        ),
    ] = "ws://127.0.0.1:8791",
    seed: Annotated[
        int, typer.Option("--seed", help="Orders each arena's tools, as `ArenaEnv(seed=…)`.")
    ] = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT when it is not empty.")] = False,
) -> None:
    """Write arenas as verl 0.9.1 training data: parquet rows, our agent loop's registry file and the
    command-line overrides for `python -m verl.trainer.main_ppo` (docs/integrations.md). Serve the same
    files with `astra arenas serve` while training. Refuses (exit 2) bad arena files and a non-empty OUT
    without --force."""
    try:
        result = export_verl(arenas, out, env_url=env_url, seed=seed, force=force)
    except InputError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    rows = ", ".join(f"{split}: {n}" for split, n in result.rows.items())
    typer.echo(f"verl: {rows} rows → {result.out} ({', '.join(result.files)})")
    typer.echo(f"train: python -m verl.trainer.main_ppo $(cat {result.out / OVERRIDES_FILE}) …")
