"""Stage 2 — chain verification that filters (the authors computed verdicts and then used every chain).

Checks, in order of cost, each one able to reject: structural (known tools, length bounds), per-parameter
data flow (every required argument comes from the task or an earlier step's output, judged by the LLM per
parameter; an incomplete or unparsable verdict rejects), a self-consistency vote over ``k`` samples, and
back-translation (chain → user request → chain must give back the same ordered chain). Server-only seeds
carry no chain and pass through unchanged.
"""

from __future__ import annotations

import json

from pydantic import Field

from astra_synth.config import StrictModel
from astra_synth.errors import Rejection
from astra_synth.llm.client import LLMClient
from astra_synth.llm.structured import StructuredOutputRejected, structured_chat
from astra_synth.prompts import Prompt, load_prompt
from astra_synth.runs.stage import StageContext
from astra_synth.tools.spec import ServerRecord
from astra_synth.trajectories.records import ChainSeed, ChainVerification, ParamSource

_PROMPTS = ("chain_dataflow.md", "chain_vote.md", "chain_to_task.md", "task_to_chain.md")


class ChainsConfig(StrictModel):
    min_len: int = Field(default=2, ge=1)
    max_len: int = Field(default=5, ge=1)
    dataflow: bool = Field(default=True, description="LLM per-parameter data-flow check.")
    vote_samples: int = Field(default=3, ge=0, description="0 turns the vote off.")
    vote_min_share: float = Field(default=0.6, ge=0, le=1, description="Valid votes / samples needed.")
    vote_temperature: float = Field(default=0.6, ge=0)
    back_translation_rounds: int = Field(default=1, ge=0, description="0 turns back-translation off.")
    back_translation_min_share: float = Field(default=1.0, ge=0, le=1, description="Agreeing rounds needed.")
    back_translation_temperature: float = Field(default=0.6, ge=0)
    max_tokens: int = Field(default=1024, ge=64)


class DataflowAnswer(StrictModel):
    parameters: list[ParamSource]


class VoteAnswer(StrictModel):
    is_valid: bool
    task: str = ""
    reason: str = ""


class ChainToTask(StrictModel):
    valid: bool
    query: str = ""


class TaskToChain(StrictModel):
    plan: str = ""
    chain: list[str] = Field(max_length=10)


def structural_problems(server: ServerRecord, chain: list[str], min_len: int, max_len: int) -> list[str]:
    """What makes a chain unusable before any LLM looks at it."""
    problems = []
    known = {t.name for t in server.tools}
    if unknown := [name for name in chain if name not in known]:
        problems.append(f"unknown tools {unknown}")
    if not min_len <= len(chain) <= max_len:
        problems.append(f"length {len(chain)} outside [{min_len}, {max_len}]")
    return problems


def required_parameters(server: ServerRecord, chain: list[str]) -> list[tuple[int, str]]:
    """(step, parameter) for every required argument of every step, in chain order."""
    pairs: list[tuple[int, str]] = []
    for step, name in enumerate(chain):
        tool = server.tool(name)
        required = tool.parameters.get("required", []) if tool is not None else []
        pairs.extend((step, str(p)) for p in required)
    return pairs


def dataflow_problems(answer: DataflowAnswer, chain: list[str], expected: list[tuple[int, str]]) -> list[str]:
    """Fail closed: a missing, extra or repeated verdict, an unsupplied argument or a source that is not an
    earlier step each count as a problem."""
    got = [(p.step, p.parameter) for p in answer.parameters]
    problems = []
    if sorted(got) != sorted(expected):
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        repeated = sorted({g for g in got if got.count(g) > 1})
        problems.append(
            f"verdicts do not match the arguments (missing {missing}, extra {extra}, repeated {repeated})"
        )
    for p in answer.parameters:
        if p.step < len(chain) and p.tool != chain[p.step]:
            problems.append(f"step {p.step} is {chain[p.step]}, not {p.tool}")
        if p.source == "none":
            problems.append(f"step {p.step} {p.parameter}: no source ({p.reason})")
        elif p.source == "tool_output" and (p.from_step is None or not 0 <= p.from_step < p.step):
            problems.append(f"step {p.step} {p.parameter}: from_step {p.from_step} is not an earlier step")
    return problems


def _tools_text(server: ServerRecord) -> str:
    return "\n".join(f"- {t.name}: {t.description}" for t in server.tools)


def _steps_text(server: ServerRecord, chain: list[str]) -> str:
    lines = []
    for step, name in enumerate(chain):
        tool = server.tool(name)
        assert tool is not None
        props = tool.parameters.get("properties", {})
        required = {str(p): props.get(p, {}) for p in tool.parameters.get("required", [])}
        lines.append(
            f"{step}: {name} — {tool.description}; required: {json.dumps(required, ensure_ascii=False)}"
        )
    return "\n".join(lines)


class ChainsStage:
    """ChainSeed → the same seed with its ``verification``, or a rejection naming the failed check."""

    name = "chains"
    version = "1"
    input_model = ChainSeed

    def __init__(self, config: ChainsConfig | None = None) -> None:
        self.config = config or ChainsConfig()

    def prompt(self, name: str) -> Prompt:
        return load_prompt("astra_synth.trajectories", name)

    def prompt_hashes(self) -> dict[str, str]:
        return {name: self.prompt(name).sha256 for name in _PROMPTS}

    async def process(self, item: ChainSeed, ctx: StageContext) -> ChainSeed:
        if item.origin == "server_only":
            return item
        assert ctx.llm is not None, "chains needs an LLM"
        cfg = self.config
        if problems := structural_problems(item.server, item.chain, cfg.min_len, cfg.max_len):
            raise Rejection("chain_structure", "; ".join(problems))
        verification = ChainVerification()
        if cfg.dataflow:
            verification.dataflow = await self.check_dataflow(item, ctx.llm, ctx.seed)
        if cfg.vote_samples:
            await self.vote(item, ctx.llm, ctx.seed, verification)
        if cfg.back_translation_rounds:
            await self.back_translate(item, ctx.llm, ctx.seed, verification)
        return item.model_copy(update={"verification": verification})

    async def check_dataflow(self, item: ChainSeed, llm: LLMClient, seed: int) -> list[ParamSource]:
        expected = required_parameters(item.server, item.chain)
        if not expected:
            return []
        text = self.prompt("chain_dataflow.md").render(
            server_title=item.server.title,
            server_description=item.server.description or "(none)",
            task=item.proposed_task or "(not given: judge what a user's request could state)",
            steps=_steps_text(item.server, item.chain),
        )
        answer = await structured_chat(
            llm,
            [{"role": "user", "content": text}],
            DataflowAnswer,
            stage=self.name,
            max_tokens=self.config.max_tokens,
            seed=seed,
        )
        if problems := dataflow_problems(answer, item.chain, expected):
            raise Rejection("chain_dataflow", "; ".join(problems))
        return answer.parameters

    async def vote(self, item: ChainSeed, llm: LLMClient, seed: int, out: ChainVerification) -> None:
        """``k`` samples; an unparsable sample is a vote against (fail closed)."""
        cfg = self.config
        text = self.prompt("chain_vote.md").render(
            server_title=item.server.title,
            server_description=item.server.description or "(none)",
            tools=_tools_text(item.server),
            chain=" -> ".join(item.chain),
        )
        for sample in range(cfg.vote_samples):
            out.votes_total += 1
            try:
                answer = await structured_chat(
                    llm,
                    [{"role": "user", "content": text}],
                    VoteAnswer,
                    stage=self.name,
                    temperature=cfg.vote_temperature,
                    max_tokens=cfg.max_tokens,
                    seed=seed + sample,
                )
            except StructuredOutputRejected:
                continue
            if answer.is_valid:
                out.votes_valid += 1
                out.implied_task = out.implied_task or answer.task or None
        if out.votes_valid < cfg.vote_min_share * out.votes_total:
            raise Rejection("chain_vote", f"{out.votes_valid}/{out.votes_total} samples judged it valid")

    async def back_translate(
        self, item: ChainSeed, llm: LLMClient, seed: int, out: ChainVerification
    ) -> None:
        """chain → request → chain; a round agrees only if the same tools come back in the same order."""
        cfg = self.config
        common = {
            "server_title": item.server.title,
            "server_description": item.server.description or "(none)",
            "tools": _tools_text(item.server),
        }
        for round_ in range(cfg.back_translation_rounds):
            out.back_translation_total += 1
            try:
                forward = await structured_chat(
                    llm,
                    [
                        {
                            "role": "user",
                            "content": self.prompt("chain_to_task.md").render(
                                **common, chain=" -> ".join(item.chain)
                            ),
                        }
                    ],
                    ChainToTask,
                    stage=self.name,
                    temperature=cfg.back_translation_temperature,
                    max_tokens=cfg.max_tokens,
                    seed=seed + round_,
                )
                if not forward.valid or not forward.query.strip():
                    continue
                back = await structured_chat(
                    llm,
                    [
                        {
                            "role": "user",
                            "content": self.prompt("task_to_chain.md").render(**common, query=forward.query),
                        }
                    ],
                    TaskToChain,
                    stage=self.name,
                    temperature=cfg.back_translation_temperature,
                    max_tokens=cfg.max_tokens,
                    seed=seed + round_,
                )
            except StructuredOutputRejected:
                continue
            if back.chain == item.chain:
                out.back_translation_agree += 1
        if out.back_translation_agree < cfg.back_translation_min_share * out.back_translation_total:
            raise Rejection(
                "chain_back_translation",
                f"{out.back_translation_agree}/{out.back_translation_total} rounds recovered the chain",
            )
