"""A finished step is not redone; a run resumed with other settings is refused instead of mixed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel
from rich.console import Console

from astra_synth.errors import InputError
from astra_synth.experiments.steps import Steps


class _Settings(BaseModel):
    lr: float
    steps: int


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
