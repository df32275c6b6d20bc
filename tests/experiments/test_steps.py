"""A finished step is not redone; a run resumed with other settings is refused instead of mixed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel
from rich.console import Console

from astra_synth.errors import InputError
from astra_synth.experiments.steps import Steps


class _Inner(BaseModel):
    beta: float = 0.0
    mask: bool = False


class _Settings(BaseModel):
    lr: float
    steps: int
    inner: _Inner = _Inner()


class _Done(BaseModel):
    value: int


def test_a_finished_step_is_returned_not_redone(tmp_path: Path) -> None:
    calls: list[int] = []

    def work() -> _Done:
        calls.append(1)
        return _Done(value=len(calls))

    for _ in range(2):
        steps = Steps(tmp_path, Console(quiet=True), _Settings(lr=1e-5, steps=4))
        assert steps.run("train", _Done, work) == _Done(value=1)
    assert calls == [1]


def test_resuming_with_other_settings_names_what_differs(tmp_path: Path) -> None:
    first = Steps(tmp_path, Console(quiet=True), _Settings(lr=1e-5, steps=4))
    first.run("train", _Done, lambda: _Done(value=1))
    with pytest.raises(InputError, match=r"\(lr differ\)"):
        Steps(tmp_path, Console(quiet=True), _Settings(lr=2e-5, steps=4))


def test_a_field_added_since_the_run_started_reads_as_its_default(tmp_path: Path) -> None:
    """settings.json written before ``inner.mask`` existed: resuming with the default is the same run, with
    another value it is not."""
    (tmp_path / "steps").mkdir()
    (tmp_path / "settings.json").write_text('{"lr": 1e-05, "steps": 4, "inner": {"beta": 0.0}}')
    Steps(tmp_path, Console(quiet=True), _Settings(lr=1e-5, steps=4))
    with pytest.raises(InputError, match=r"\(inner differ\)"):
        Steps(tmp_path, Console(quiet=True), _Settings(lr=1e-5, steps=4, inner=_Inner(mask=True)))
