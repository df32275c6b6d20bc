"""Versioned prompt templates that live next to their stage.

A template is a text file in a ``prompts/`` folder beside the stage module. ``$name`` placeholders are filled
with :class:`string.Template` (so JSON braces in a prompt need no escaping). The template's sha256 is part of
the manifest, and since the rendered text is part of every LLM request, of the response cache key too.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def render(self, **values: object) -> str:
        """Fill every ``$placeholder``; a missing value is an error, never an empty string."""
        try:
            return string.Template(self.text).substitute({k: str(v) for k, v in values.items()})
        except KeyError as exc:
            raise KeyError(f"prompt {self.name}: no value for placeholder {exc.args[0]!r}") from exc


@cache
def load_prompt(package: str, name: str) -> Prompt:
    """Load ``<package>/prompts/<name>`` (e.g. ``load_prompt("astra_synth.arenas", "qa_generate.en.md")``)."""
    text = resources.files(package).joinpath("prompts", name).read_text(encoding="utf-8")
    return Prompt(name=name, text=text)
