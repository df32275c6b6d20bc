"""Stage 3 — task generation: chain-conditioned (the request must follow a verified chain) and server-only
(any request the server's tools can serve, for coverage and diversity).

Server-only seeds come once per server from the graph stage, so these prompts are not repeated once per
chain as in the authors' code. A sample that names a tool, targets unknown tools or the wrong number of them
is dropped; a seed with no usable sample is rejected.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, create_model

from astra_synth.config import StrictModel
from astra_synth.errors import Rejection
from astra_synth.llm.structured import ReasoningTruncated, StructuredOutputRejected, structured_chat
from astra_synth.prompts import Prompt, load_prompt
from astra_synth.runs.stage import StageContext
from astra_synth.tools.spec import ServerRecord
from astra_synth.trajectories.chains import stated_values
from astra_synth.trajectories.records import ChainSeed, Task, TaskMode

_PLAIN_WORD = re.compile(r"[A-Za-z][a-z]*")  # one word, no separator, no inner capital


class TaskGenConfig(StrictModel):
    samples: int = Field(default=2, ge=1, description="Requests asked per seed.")
    temperature: float = Field(default=0.8, ge=0)
    max_tokens: int = Field(default=768, ge=64)


class ChainTaskAnswer(StrictModel):
    server_analysis: str = ""
    question: str = Field(min_length=1)


class ServerTaskAnswer(ChainTaskAnswer):
    target_tools: list[str] = Field(min_length=1, max_length=8)


def server_task_schema(seed: ChainSeed) -> type[ServerTaskAnswer]:
    """Target tools as an enum of the server's tool names, exactly ``num_tools`` of them: constrained
    decoding then cannot name a tool that does not exist (validation still checks distinctness)."""
    names: Any = Literal[tuple(t.name for t in seed.server.tools)]
    bounds = Field(min_length=seed.num_tools, max_length=seed.num_tools)
    return create_model("ServerTaskAnswer", __base__=ServerTaskAnswer, target_tools=(list[names], bounds))


def tools_text(server: ServerRecord) -> str:
    """The tool list as the task prompts show it: one ``- name: description`` line per tool."""
    return "\n".join(f"- {t.name}: {t.description}" for t in server.tools)


def names_a_tool(server: ServerRecord, question: str) -> str | None:
    """The first tool name the question spells out, if any.

    A compound name (``read_note``, ``getWeather``, ``v2-lookup``) counts as a whole word in any case. A
    single plain word (``search``, ``translate``) is ordinary language ("search for flights"), so it counts
    only when written as code: in backticks or right before an opening parenthesis.
    """
    for tool in server.tools:
        name = re.escape(tool.name)
        if _PLAIN_WORD.fullmatch(tool.name):
            pattern = rf"`{name}`|(?<![A-Za-z0-9_]){name}\("
        else:
            pattern = rf"(?<![A-Za-z0-9_]){name}(?![A-Za-z0-9_])"
        if re.search(pattern, question, re.IGNORECASE):
            return tool.name
    return None


def clean_question(text: str) -> str:
    """Trim, and strip one wrapping ``<tag>…</tag>`` that models like to add."""
    text = text.strip()
    match = re.fullmatch(r"<([A-Za-z_]+)>(.*)</\1>", text, re.DOTALL)
    return match.group(2).strip() if match else text


class TasksStage:
    """ChainSeed → one or more tasks."""

    name = "tasks"
    version = "1"
    input_model = ChainSeed

    def __init__(self, config: TaskGenConfig | None = None) -> None:
        self.config = config or TaskGenConfig()

    def prompt(self, name: str) -> Prompt:
        return load_prompt("astra_synth.trajectories", name)

    def prompt_hashes(self) -> dict[str, str]:
        return {n: self.prompt(n).sha256 for n in ("task_from_chain.md", "task_from_server.md")}

    def render(self, seed: ChainSeed) -> str:
        server = seed.server
        common = {
            "server_title": server.title,
            "server_description": server.description or "(none)",
            "tools": tools_text(server),
        }
        if seed.origin == "server_only":
            return self.prompt("task_from_server.md").render(**common, num_tools=seed.num_tools)
        described = (seed.verification.implied_task if seed.verification else None) or seed.proposed_task
        hint = f"- For orientation, the workflow was described as: {described}\n" if described else ""
        values = stated_values(seed.verification.dataflow) if seed.verification else ""
        return self.prompt("task_from_chain.md").render(
            **common,
            chain=" -> ".join(seed.chain),
            chain_length=len(seed.chain),
            hint=hint,
            values=f"- {values}" if values else "",
        )

    async def process(self, item: ChainSeed, ctx: StageContext) -> list[Task]:
        assert ctx.llm is not None, "tasks needs an LLM"
        cfg = self.config
        schema = server_task_schema(item) if item.origin == "server_only" else ChainTaskAnswer
        text = self.render(item)
        tasks: list[Task] = []
        problems: list[str] = []
        cut = 0  # samples whose answer the reasoning crowded out
        for sample in range(cfg.samples):
            try:
                answer = await structured_chat(
                    ctx.llm,
                    [{"role": "user", "content": text}],
                    schema,
                    stage=self.name,
                    temperature=cfg.temperature,
                    max_tokens=cfg.max_tokens,
                    seed=ctx.seed + sample,
                )
            except StructuredOutputRejected as exc:
                problems.append(exc.detail[:200])
                cut += isinstance(exc, ReasoningTruncated)
                continue
            task, problem = self.to_task(item, answer)
            if task is None:
                problems.append(problem)
            elif task.question not in {t.question for t in tasks}:
                tasks.append(task)
        if not tasks:
            reason = ReasoningTruncated.REASON if cut == cfg.samples else "no_valid_task"
            raise Rejection(reason, " | ".join(problems))
        return tasks

    def to_task(self, seed: ChainSeed, answer: ChainTaskAnswer) -> tuple[Task | None, str]:
        """The task, or None and why the sample is unusable."""
        server = seed.server
        question = clean_question(answer.question)
        if not question:
            return None, "empty question"
        if named := names_a_tool(server, question):
            return None, f"question names tool {named}"
        if isinstance(answer, ServerTaskAnswer):
            targets = answer.target_tools
            unknown = [t for t in targets if server.tool(t) is None]
            if unknown or len(set(targets)) != len(targets) or len(targets) != seed.num_tools:
                return None, f"target tools {targets} are not {seed.num_tools} distinct server tools"
            mode: TaskMode = "server"
        else:
            targets, mode = list(seed.chain), "chain"
        task = Task(
            server=server,
            mode=mode,
            question=question,
            target_tools=targets,
            chain=list(seed.chain),
            server_analysis=answer.server_analysis,
            chain_origin=seed.origin,
            verification=seed.verification,
        )
        return task, ""
