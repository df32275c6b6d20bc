"""Stage 2 — chain verification that filters (the authors computed verdicts and then used every chain).

Checks, in order of cost, each one able to reject: structural (known tools, length bounds), per-parameter
data flow (every required argument comes from the task or an earlier step's output, judged by the LLM per
parameter; an incomplete or unparsable verdict rejects), a self-consistency vote over ``k`` samples, and
back-translation (chain → user request → chain, several rounds, a majority must give the chain back; see
:func:`recovery_problem` for what counts). Server-only seeds carry no chain and pass through unchanged.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any, Literal

from pydantic import Field, create_model

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
    back_translation_rounds: int = Field(default=3, ge=0, description="0 turns back-translation off.")
    back_translation_min_share: float = Field(
        default=0.6, ge=0, le=1, description="Share of the rounds that must recover the chain (2 of 3)."
    )
    back_translation_temperature: float = Field(default=0.6, ge=0)
    back_translation_max_skipped: int = Field(
        default=1, ge=0, description="Chain steps a recovered plan may leave out (the request supplied them)."
    )
    back_translation_max_extra: int = Field(
        default=1, ge=0, description="Calls a recovered plan may add to the chain's steps."
    )
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


def task_to_chain_schema(server: ServerRecord) -> type[TaskToChain]:
    """The planner's chain as an enum of the server's tool names: a misspelt name cannot come back."""
    names: Any = Literal[tuple(t.name for t in server.tools)]
    return create_model(
        "TaskToChain", __base__=TaskToChain, chain=(list[names], Field(min_length=1, max_length=10))
    )


def recovery_problem(
    original: list[str],
    recovered: list[str],
    dataflow: list[ParamSource] | None,
    *,
    max_skipped: int,
    max_extra: int,
) -> str | None:
    """Why a back-translated plan does not give back ``original``, or None when it does.

    The k-th call of a tool in ``recovered`` stands for the k-th step with that tool in ``original``. The
    plan recovers the chain when (1) at most ``max_skipped`` steps have no counterpart and at least two steps
    (or the whole chain, if shorter) have one: a planner may skip a step whose output the request already
    states; (2) at most ``max_extra`` calls have no step: a planner may add a look-up; (3) every data-flow
    dependency between two kept steps (a parameter of step j judged to come from the output of step i) keeps
    i before j. Independent steps may come in any order. Without data-flow verdicts (the check switched off)
    no step is known to be independent, so the kept steps must keep their relative order.
    """
    unmatched = list(range(len(original)))
    position: dict[int, int] = {}
    extra = []
    for at, name in enumerate(recovered):
        step = next((i for i in unmatched if original[i] == name), None)
        if step is None:
            extra.append(name)
        else:
            unmatched.remove(step)
            position[step] = at
    problems = []
    if len(unmatched) > max_skipped or len(position) < min(2, len(original)):
        problems.append(f"left out steps {[f'{i}:{original[i]}' for i in unmatched]}")
    if len(extra) > max_extra:
        problems.append(f"added calls {extra}")
    if dataflow is None:
        edges = set(itertools.pairwise(sorted(position)))
    else:
        edges = {
            (p.from_step, p.step) for p in dataflow if p.source == "tool_output" and p.from_step is not None
        }
    swapped = [
        (a, b) for a, b in sorted(edges) if a in position and b in position and position[a] > position[b]
    ]
    if swapped:
        needs = ", ".join(f"{b} needs {a}" for a, b in swapped)
        problems.append(f"calls a step before the step it needs ({needs})")
    return "; ".join(problems) or None


def stated_values(dataflow: list[ParamSource]) -> str:
    """The arguments the data-flow judge said come from the request, as the forward prompt asks for them."""
    values = [f"{p.tool}.{p.parameter}" for p in dataflow if p.source == "task"]
    return f"State in the request the value of every one of: {', '.join(values)}.\n" if values else ""


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
        """chain → request → chain, round after round (each its own seed and cache entry) until a share of
        ``back_translation_min_share`` of all rounds has recovered the chain or no longer can; what recovers
        it is :func:`recovery_problem`. A declined, empty or unparsable round counts against."""
        cfg = self.config
        common = {
            "server_title": item.server.title,
            "server_description": item.server.description or "(none)",
            "tools": _tools_text(item.server),
        }
        forward_text = self.prompt("chain_to_task.md").render(
            **common, chain=" -> ".join(item.chain), values=stated_values(out.dataflow)
        )
        dataflow = out.dataflow if cfg.dataflow else None
        planner = task_to_chain_schema(item.server)
        needed = math.ceil(cfg.back_translation_min_share * cfg.back_translation_rounds - 1e-9)
        last = ""
        for round_ in range(cfg.back_translation_rounds):
            if out.back_translation_agree >= needed:
                break
            if out.back_translation_agree + cfg.back_translation_rounds - round_ < needed:
                break
            out.back_translation_total += 1
            asked: dict[str, Any] = {
                "stage": self.name,
                "temperature": cfg.back_translation_temperature,
                "max_tokens": cfg.max_tokens,
                "seed": seed + round_,
                "sample_index": round_,
            }
            try:
                forward = await structured_chat(
                    llm, [{"role": "user", "content": forward_text}], ChainToTask, **asked
                )
                if not forward.valid or not forward.query.strip():
                    last = "the forward request was declined or empty"
                    continue
                back_text = self.prompt("task_to_chain.md").render(**common, query=forward.query)
                back = await structured_chat(llm, [{"role": "user", "content": back_text}], planner, **asked)
            except StructuredOutputRejected as exc:
                last = exc.detail[:200]
                continue
            out.back_translation_chains.append(back.chain)
            problem = recovery_problem(
                item.chain,
                back.chain,
                dataflow,
                max_skipped=cfg.back_translation_max_skipped,
                max_extra=cfg.back_translation_max_extra,
            )
            if problem is None:
                out.back_translation_agree += 1
            else:
                last = f"{back.chain}: {problem}"
        if out.back_translation_agree < needed:
            raise Rejection(
                "chain_back_translation",
                f"{out.back_translation_agree}/{out.back_translation_total} rounds recovered the chain, "
                f"{needed} of {cfg.back_translation_rounds} needed; last: {last}",
            )
