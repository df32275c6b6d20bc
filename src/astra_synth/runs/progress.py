"""A live progress bar per stage (ok / rejected / errors / tokens), shown only where someone watches.

On a terminal it renders with rich; when output is not a TTY (tests, CI logs, ``| tee``) or when disabled
it does nothing at all, so logs stay readable and the runner pays no rendering cost.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from astra_synth.runs.manifest import StageCounts


class StageBar:
    """The bar of one stage; ``update`` is cheap and may be called per item."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress = progress
        self._task = task

    def update(self, counts: StageCounts, tokens: int) -> None:
        if self._progress is None or self._task is None:
            return
        done = counts.ok + counts.rejected + counts.errors
        self._progress.update(
            self._task,
            completed=done,
            ok=counts.ok,
            rejected=counts.rejected,
            errors=counts.errors,
            tokens=tokens,
        )


class RunProgress:
    """``with RunProgress(enabled) as p: bar = p.stage(name, total)``. ``enabled=None`` means "on a TTY"."""

    def __init__(self, enabled: bool | None = None, console: Console | None = None) -> None:
        console = console or Console(stderr=True)
        if enabled is None:
            enabled = console.is_terminal and not console.is_dumb_terminal
        self.enabled = enabled
        self._progress: Progress | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description:<16}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "[green]ok {task.fields[ok]}[/] [yellow]rej {task.fields[rejected]}[/] "
                    "[red]err {task.fields[errors]}[/] tok {task.fields[tokens]:,}"
                ),
                TimeElapsedColumn(),
                console=console,
            )

    def __enter__(self) -> RunProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def stage(self, name: str, total: int) -> StageBar:
        if self._progress is None:
            return StageBar(None, None)
        task = self._progress.add_task(name, total=total, ok=0, rejected=0, errors=0, tokens=0)
        return StageBar(self._progress, task)
