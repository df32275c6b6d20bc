"""The front door: every name in ``astra_synth.__all__`` imports, is the object its module defines, and
``import astra_synth`` alone loads none of the heavy parts (pipelines, torch)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import astra_synth


@pytest.mark.parametrize("name", astra_synth.__all__)
def test_every_public_name_imports(name: str) -> None:
    value = getattr(astra_synth, name)
    assert value is not None
    if name != "__version__":
        module = importlib.import_module(astra_synth._EXPORTS[name])
        assert getattr(module, name) is value


def test_all_is_listed_without_duplicates() -> None:
    assert len(set(astra_synth.__all__)) == len(astra_synth.__all__)
    assert set(astra_synth.__all__) == {"__version__", *astra_synth._EXPORTS}
    assert set(dir(astra_synth)) == set(astra_synth.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = astra_synth.nope  # type: ignore[attr-defined]


def test_importing_the_package_loads_no_heavy_module() -> None:
    code = (
        "import sys, astra_synth; "
        "heavy = [m for m in ('torch', 'transformers', 'astra_synth.arenas.pipeline', "
        "'astra_synth.trajectories.pipeline', 'typer') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
