"""Real run directories for the card and export tests: both pipelines run once per session against the
scripted server, with the test kit's scripts (astra_synth.testing.scripts)."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from astra_synth.arenas.pipeline import run_arenas
from astra_synth.config import load_config
from astra_synth.export.publish import publish
from astra_synth.testing.scripted import ScriptedLLM
from astra_synth.testing.scripts import (
    answer_trajectories,
    arenas_config,
    notes_server,
    script_arenas,
    trajectories_config,
)
from astra_synth.trajectories.pipeline import TrajectoriesConfig, run_trajectories

RunCopy = Callable[[Path], Path]


def split_card(text: str) -> tuple[dict[str, Any], str]:
    """A dataset card's YAML front matter and its Markdown body."""
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.DOTALL)
    assert match, "the card starts with YAML front matter between --- lines"
    front = yaml.safe_load(match.group(1))
    assert isinstance(front, dict)
    return front, match.group(2)


@pytest.fixture(scope="session")
def trajectories_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished, published pipeline-A run (5 SFT rows); read-only: take a ``run_copy`` to change it."""
    root = tmp_path_factory.mktemp("traj")
    with ScriptedLLM() as server:
        server.handler = answer_trajectories
        path = trajectories_config(root, notes_server())
        config = load_config(TrajectoriesConfig, path, {"endpoint.base_url": server.base_url})
        asyncio.run(run_trajectories(config, root / "run", progress=False))
    publish(root / "run", config.contamination, parquet=config.parquet)
    return root / "run"


@pytest.fixture(scope="session")
def arenas_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished and published pipeline-B run; read-only like ``trajectories_run``."""
    root = tmp_path_factory.mktemp("arenas")
    with ScriptedLLM() as server:
        script_arenas(server)
        config = arenas_config(server, root)
        asyncio.run(run_arenas(config, root / "run", progress=False))
    publish(root / "run", config.contamination)
    return root / "run"


@pytest.fixture
def run_copy(tmp_path: Path) -> RunCopy:
    def copy(run: Path) -> Path:
        return Path(shutil.copytree(run, tmp_path / "run"))

    return copy
