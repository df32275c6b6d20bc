"""Contract fixtures: what a careful strong model answers at every LLM stage, replayed by the scripted server.

A fixture set is a folder (``tests/fixtures/contracts/<name>/``) holding ``contract.yaml`` (the pipeline,
its inputs and config, the funnel the run must produce) and one ``<prompt>.yaml`` per LLM stage, named after
the stage's prompt template (``tool_code.yaml`` answers ``arenas/prompts/tool_code.md``). A request is
recognised as that stage's by the template's *current* fixed text (every part between placeholders, in
order), so rewording a prompt keeps its fixture, while a schema change fails: the reply no longer validates,
the pipeline re-asks, and :attr:`ContractReplay.problems` names the reply and the error.

Within a stage file, a reply is chosen by ``when`` (regexes that must all occur in the request's messages)
and ``turn`` (how many assistant messages the conversation already holds: an agent's rollout turn); the
first that fits wins. Replies use the styles strong models really use: ``fenced`` JSON with a sentence
around it, a thinking model's ``reasoning`` beside the content, tool calls with a plan in the content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from astra_synth.config import StrictModel
from astra_synth.prompts import Prompt, load_prompt
from astra_synth.testing.scripted import Reply, ScriptedLLM, ScriptedToolCall

CONTRACT_FILE = "contract.yaml"
PROMPT_PACKAGES = ("astra_synth.arenas", "astra_synth.trajectories", "astra_synth.tools")
"""Where a stage file's prompt template is looked up, by file name."""
ReasoningStyle = Literal["field", "inline"]
REASK_MARKER = "Your previous answer was invalid:"
"""How ``llm.structured`` starts a re-ask: a fixture reply that gets one no longer fits its schema."""


class FixtureToolCall(StrictModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class FixtureReply(StrictModel):
    """One scripted answer. ``answer`` is JSON (sent serialised, ``fenced`` in a Markdown code block with
    ``preamble`` before it), ``text`` is sent verbatim; ``tool_calls`` make it an agent turn."""

    when: list[str] = Field(default_factory=list, description="Regexes that must all occur in the request.")
    turn: int | None = Field(default=None, ge=0, description="Assistant messages already in the request.")
    answer: Any = None
    text: str | None = None
    fenced: bool = False
    preamble: str = ""
    reasoning: str | None = Field(default=None, description="Sent as ``reasoning_content``.")
    tool_calls: list[FixtureToolCall] = Field(default_factory=list)
    thinking_tokens: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Tokens the reasoning takes: under a smaller max_tokens (or max_completion_tokens) the reply is "
            "cut inside its reasoning, with no content and finish_reason length, as vLLM sends it."
        ),
    )

    @model_validator(mode="after")
    def _one_body(self) -> FixtureReply:
        if (self.answer is None) == (self.text is None) and not self.tool_calls:
            raise ValueError("a reply has exactly one of `answer` (JSON) or `text`, or tool_calls")
        return self

    def fits(self, body: dict[str, Any], text: str) -> bool:
        if self.turn is not None:
            turns = sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant")
            if turns != self.turn:
                return False
        return all(re.search(pattern, text) for pattern in self.when)

    def reply(self, reasoning_style: ReasoningStyle = "field", budget: int | None = None) -> Reply:
        if self.thinking_tokens is not None and budget is not None and budget < self.thinking_tokens:
            cut = (self.reasoning or "")[: budget * 4]  # about four characters a token
            return Reply(content=None, reasoning_content=cut, finish_reason="length")
        content = self.text
        if self.answer is not None:
            dumped = json.dumps(self.answer, ensure_ascii=False, indent=2 if self.fenced else None)
            content = f"{self.preamble}```json\n{dumped}\n```" if self.fenced else dumped
        inline = reasoning_style == "inline" and self.reasoning is not None
        if inline:
            content = f"<think>\n{self.reasoning}\n</think>\n\n{content or ''}"
        return Reply(
            content=content,
            reasoning_content=None if inline else self.reasoning,
            tool_calls=tuple(ScriptedToolCall(name=c.name, arguments=c.arguments) for c in self.tool_calls),
            finish_reason="tool_calls" if self.tool_calls else "stop",
        )


class StageFixture(StrictModel):
    """``<prompt>.yaml``: the replies to one prompt template."""

    replies: list[FixtureReply] = Field(min_length=1)


class StageCounts(StrictModel):
    """The funnel row a stage must produce (``runs.summary.StageRow``; unset fields are not checked)."""

    inputs: int | None = None
    ok: int | None = None
    rejected: int | None = None
    errors: int | None = None
    outputs: int | None = None
    reject_reasons: dict[str, int] | None = None


class ContractMeta(StrictModel):
    """``contract.yaml``: what the fixture set runs and what the run must yield."""

    pipeline: Literal["arenas", "trajectories"]
    about: str = Field(description="What this set protects, one or two sentences.")
    base: str | None = Field(
        default=None, description="A sibling set whose stage files this one starts from (own files replace)."
    )
    reasoning_style: ReasoningStyle = Field(
        default="field",
        description=(
            "field: reasoning sent as reasoning_content (vLLM/SGLang with a reasoning parser); inline: as a "
            "<think> block before the content (Qwen3 on vLLM without one, llama.cpp --reasoning-format none)."
        ),
    )
    seeds: str | None = Field(default=None, description="arenas: a questions JSONL beside this file.")
    language: Literal["en", "zh"] = "en"
    max_hops: int = Field(default=4, ge=1)
    registry: str | None = Field(
        default=None, description="trajectories: a server registry JSONL, relative to this file."
    )
    server_id: str | None = None
    endpoint: dict[str, Any] = Field(
        default_factory=dict, description="Endpoint fields (e.g. schema_mode: none, where fences are usual)."
    )
    config: dict[str, Any] = Field(default_factory=dict, description="Config fields over the test default.")
    funnel: dict[str, StageCounts] = Field(description="Stage name → its expected row.")
    ok: int = Field(description="Arenas / judged trajectories the run must yield.")
    tools: list[list[str]] = Field(
        default_factory=list, description="Per arena / trajectory, the tools it has (arenas) or calls (SFT)."
    )
    xfail: str | None = Field(
        default=None, description="Why a careful answer is rejected today (the #17 problem that fixes it)."
    )


def template_pattern(prompt: Prompt) -> re.Pattern[str]:
    """A regex that finds a rendering of ``prompt``: its fixed parts in order, anything in between."""
    parts = re.split(r"\$(?:\w+|\{\w+\})", prompt.text.replace("$$", "$"))
    fixed = [p.strip() for p in parts if p.strip()]
    return re.compile(".*?".join(re.escape(p) for p in fixed), re.DOTALL)


def _request_text(body: dict[str, Any]) -> str:
    """Every message's text, tool-call names and arguments included (a rollout's history shows them)."""
    lines = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            lines.append(content)
        for call in message.get("tool_calls") or []:
            function = call.get("function", {})
            lines.append(f"{function.get('name')}({function.get('arguments')})")
    return "\n".join(lines)


def _stage_files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in folder.glob("*.yaml") if p.name != CONTRACT_FILE}


def _find_prompt(name: str) -> Prompt:
    for package in PROMPT_PACKAGES:
        try:
            return load_prompt(package, f"{name}.md")
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"no prompt template {name}.md in {', '.join(PROMPT_PACKAGES)}")


class ContractReplay:
    """A fixture set loaded from ``folder``; :meth:`install` makes a :class:`ScriptedLLM` answer with it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = folder.name
        self.meta = ContractMeta.model_validate(
            yaml.safe_load((folder / CONTRACT_FILE).read_text(encoding="utf-8"))
        )
        files = _stage_files(folder.parent / self.meta.base) if self.meta.base else {}
        files.update(_stage_files(folder))
        self.stages: dict[str, StageFixture] = {
            name: StageFixture.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
            for name, path in sorted(files.items())
        }
        self.problems: list[str] = []
        self.used: set[tuple[str, int]] = set()

    @cached_property
    def _patterns(self) -> list[tuple[str, re.Pattern[str]]]:
        return [(name, template_pattern(_find_prompt(name))) for name in self.stages]

    def stage_of(self, body: dict[str, Any]) -> str | None:
        """The stage file whose template rendered this request (searched in all its messages)."""
        text = _request_text(body)
        return next((name for name, pattern in self._patterns if pattern.search(text)), None)

    def answer(self, body: dict[str, Any]) -> Reply:
        """The scripted server's handler: the first fitting reply of the request's stage."""
        text = _request_text(body)
        stage = self.stage_of(body)
        where = f"{self.name}/{stage}.yaml"
        if stage is None:
            self.problems.append(f"{self.name}: no stage file matches the prompt {text[:300]!r}")
            return Reply(status=400, content="no contract fixture matches this prompt")
        last = (body.get("messages") or [{}])[-1].get("content") or ""
        if isinstance(last, str) and last.startswith(REASK_MARKER):
            why = last[len(REASK_MARKER) : 240].strip()
            self.problems.append(f"{where}: the reply was re-asked (schema changed, or cut short): {why}")
        for index, reply in enumerate(self.stages[stage].replies):
            if reply.fits(body, text):
                self.used.add((stage, index))
                budget = body.get("max_completion_tokens") or body.get("max_tokens")
                return reply.reply(self.meta.reasoning_style, budget)
        self.problems.append(f"{where}: no reply fits the request {text[-600:]!r}")
        return Reply(status=400, content=f"no reply in {where} fits this request")

    def install(self, server: ScriptedLLM) -> None:
        server.handler = self.answer

    def unused(self) -> list[str]:
        """Replies the run never asked for: a fixture that no longer describes the pipeline."""
        return [
            f"{self.name}/{stage}.yaml reply {i}"
            for stage, fixture in self.stages.items()
            for i in range(len(fixture.replies))
            if (stage, i) not in self.used
        ]


def contract_sets(root: Path) -> Iterable[Path]:
    """The fixture set folders under ``root`` (each has a ``contract.yaml``), in name order."""
    return sorted(p.parent for p in root.glob(f"*/{CONTRACT_FILE}"))
