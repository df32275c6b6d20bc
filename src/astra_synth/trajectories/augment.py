"""Stage 4 — augmentation along three axes: diverse (new context, same operations), complicate (added
real-world constraints), persona (the same request in a particular user's voice).

The original task is emitted exactly once next to its variations (the authors' code re-emitted it once per
augmentation call). A failed augmentation call only means fewer variations; the original is unaffected.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field

from astra_synth.config import StrictModel
from astra_synth.errors import InputError
from astra_synth.llm.structured import StructuredOutputRejected, structured_chat
from astra_synth.prompts import Prompt, load_prompt
from astra_synth.runs.jsonl import read_jsonl
from astra_synth.runs.stage import StageContext
from astra_synth.trajectories.records import Task
from astra_synth.trajectories.tasks import clean_question, names_a_tool, tools_text

AugmentMode = Literal["diverse", "complicate", "persona"]


class AugmentConfig(StrictModel):
    modes: list[AugmentMode] = Field(default_factory=lambda: list(get_args(AugmentMode)))
    variations: int = Field(default=2, ge=1, le=8, description="Variations asked per mode.")
    personas: Path | None = Field(default=None, description="JSONL of personas; needed for mode persona.")
    temperature: float = Field(default=0.9, ge=0)
    max_tokens: int = Field(default=1024, ge=64)


class Persona(StrictModel):
    id: str
    age: int | None = None
    occupation: str
    education: str = ""
    description: str = ""
    skills: list[str] = Field(default_factory=list)
    interests: list[str] = Field(default_factory=list)

    def render(self) -> str:
        age = f"{self.age}-year-old " if self.age else ""
        lines = [f"A {age}{self.occupation}" + (f" ({self.education})" if self.education else "") + "."]
        if self.description:
            lines.append(self.description[:200])
        if self.skills:
            lines.append("Skills: " + ", ".join(self.skills[:5]) + ".")
        if self.interests:
            lines.append("Interests: " + ", ".join(self.interests[:5]) + ".")
        return " ".join(lines)


def load_personas(path: Path) -> list[Persona]:
    """All personas in ``path``; a bad line is an error naming file and line, not a silent skip."""
    read = read_jsonl(path, Persona)
    if read.errors:
        raise read.errors[0][2]
    if not read.items:
        raise InputError(f"{path}: no personas")
    return [p for _, p in read.items]


class Variation(StrictModel):
    note: str = ""
    question: str = Field(min_length=1)


class Variations(StrictModel):
    variations: list[Variation] = Field(min_length=1, max_length=8)


class AugmentStage:
    """Task → [the task, its variations …]."""

    name = "augment"
    version = "1"
    input_model = Task

    def __init__(self, config: AugmentConfig | None = None, personas: list[Persona] | None = None) -> None:
        self.config = config or AugmentConfig()
        if personas is None and self.config.personas is not None:
            personas = load_personas(self.config.personas)
        if "persona" in self.config.modes and not personas:
            raise ValueError("augmentation mode 'persona' needs personas (config.personas)")
        self.personas = personas or []

    def prompt(self, mode: AugmentMode) -> Prompt:
        return load_prompt("astra_synth.trajectories", f"augment_{mode}.md")

    def prompt_hashes(self) -> dict[str, str]:
        return {self.prompt(m).name: self.prompt(m).sha256 for m in self.config.modes}

    async def process(self, item: Task, ctx: StageContext) -> list[Task]:
        if item.augmentation != "none":
            return [item]  # never augment an augmentation
        out = [item]
        seen = {item.question}
        for mode in self.config.modes:
            for task in await self.augment(item, mode, ctx):
                if task.question not in seen:
                    seen.add(task.question)
                    out.append(task)
        return out

    async def augment(self, item: Task, mode: AugmentMode, ctx: StageContext) -> list[Task]:
        assert ctx.llm is not None, "augment needs an LLM"
        cfg = self.config
        persona = _pick(self.personas, ctx.rng) if mode == "persona" else None
        extra = {"persona": persona.render()} if persona else {}
        text = self.prompt(mode).render(
            server_title=item.server.title,
            server_description=item.server.description or "(none)",
            question=item.question,
            tools=tools_text(item.server),
            count=cfg.variations,
            **extra,
        )
        try:
            answer = await structured_chat(
                ctx.llm,
                [{"role": "user", "content": text}],
                Variations,
                stage=self.name,
                temperature=cfg.temperature,
                max_tokens=cfg.max_tokens,
                seed=ctx.seed,
            )
        except StructuredOutputRejected:
            return []
        tasks = []
        for variation in answer.variations[: cfg.variations]:
            question = clean_question(variation.question)
            if not question or names_a_tool(item.server, question):
                continue
            tasks.append(
                item.model_copy(
                    update={
                        "question": question,
                        "augmentation": mode,
                        "original_question": item.question,
                        "persona": persona.id if persona else None,
                    }
                )
            )
        return tasks


def _pick(personas: list[Persona], rng: random.Random) -> Persona:
    return personas[rng.randrange(len(personas))]
