"""Named, resumable steps of a long experiment: a finished step leaves ``steps/<name>.json`` and a re-run
returns that stored result instead of redoing the work, so an interrupted run loses at most one step.

A run's settings are stored next to ``steps/`` (``settings.json``; the report reads every file in ``steps/``
as a step): resuming with different settings would mix two experiments' results, so it is refused with the
fields that differ. Settings stored before a field was added read as that field's default, so a run resumes
across an upgrade that changes nothing it ran with."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from rich.console import Console

from astra_synth.errors import InputError
from astra_synth.runs.jsonl import write_json_atomic

T = TypeVar("T", bound=BaseModel)


class Steps:
    """Runs a named step once: its result is stored, and a re-run returns the stored result."""

    def __init__(self, run_dir: Path, console: Console, settings: BaseModel | None = None) -> None:
        self.dir = run_dir / "steps"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.console = console
        if settings is not None:
            self._check(settings)

    def _check(self, model: BaseModel) -> None:
        settings = model.model_dump(mode="json")
        stored = self.dir.parent / "settings.json"
        if stored.exists():
            before = json.loads(stored.read_text(encoding="utf-8"))
            # fields added since the run started take their defaults; one removed since: compared as stored
            with contextlib.suppress(ValidationError):
                before = type(model).model_validate(before).model_dump(mode="json")
            changed = sorted(k for k in {*before, *settings} if before.get(k) != settings.get(k))
            if changed:
                raise InputError(
                    f"{self.dir.parent} holds a run with other settings ({', '.join(changed)} differ): "
                    "resume with the same settings, or use a new output folder"
                )
        else:
            write_json_atomic(stored, settings)

    def run(self, name: str, model: type[T], fn: Callable[[], T]) -> T:
        marker = self.dir / f"{name}.json"
        if marker.exists():
            try:
                done = model.model_validate(json.loads(marker.read_text())["data"])
            except ValidationError:  # stored by an older astra-synth: redo it (every step resumes)
                self.console.print(f"[dim]{name}: result of an older version, redoing the step[/dim]")
            else:
                self.console.print(f"[dim]✓ {name} (done earlier)[/dim]")
                return done
        self.console.rule(name)
        result = fn()
        write_json_atomic(marker, {"name": name, "data": result.model_dump(mode="json")})
        return result
