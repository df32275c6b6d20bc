"""Stage 7 — the seven-dimension trajectory judge (paper semantics), failing closed.

Dimensions (astra_spec A.9): query understanding (QU) and query planning (QP) on the first response;
tool-response context understanding (TCU) and context-conditioned planning (TCP) per later tool-calling
round; tool call status (TCS: a failed call scores 0, not the authors' 0.5); tool conciseness (TC) per
call; final answer (FA = (correctness + summary) / 2, with a language-consistency pre-check and URLs that
never appeared in the conversation voiding the summary). Each dimension ends ``scored``,
``not_applicable`` (no round to grade) or ``error``. Any error rejects the trajectory: the authors' judge
scored every failure 1.0, and with their shipped config every call failed. The aggregate is the mean of
the scored dimensions.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from astra_synth.config import StrictModel
from astra_synth.errors import Rejection
from astra_synth.llm.client import LLMCallError, LLMClient
from astra_synth.llm.idschema import exact_ids, unique_ids
from astra_synth.llm.structured import StructuredOutputRejected, structured_chat
from astra_synth.prompts import Prompt, load_prompt
from astra_synth.runs.stage import StageContext
from astra_synth.trajectories.records import Trajectory

Dimension = Literal[
    "query_understanding",
    "query_planning",
    "tool_context_understanding",
    "tool_context_planning",
    "tool_call_status",
    "tool_conciseness",
    "final_answer",
]
DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)
Verdict = Literal["pass", "partial", "fail"]
VERDICT_SCORE: dict[str, float] = {"pass": 1.0, "partial": 0.5, "fail": 0.0}
_URL = re.compile(r"https?://[^\s<>\"')\]]+")


class JudgeConfig(StrictModel):
    threshold: float = Field(default=0.8, ge=0, le=1, description="Keep trajectories whose mean ≥ this.")
    reject_zero_dimension: bool = Field(default=True, description="Also reject if any dimension scored 0.")
    require_tool_calls: bool = Field(default=True, description="Reject trajectories without a tool call.")
    max_tool_chars: int = Field(default=2000, ge=100, description="Tool output shown to the judge.")
    max_tokens: int = Field(default=1200, ge=64)


class DimensionResult(StrictModel):
    status: Literal["scored", "not_applicable", "error"]
    score: float | None = None
    detail: str = ""


class JudgeReport(StrictModel):
    dimensions: dict[str, DimensionResult]
    overall: float
    threshold: float


class JudgedTrajectory(Trajectory):
    judge: JudgeReport


# --- what the judge answers --------------------------------------------------------------------------------


class VerdictAnswer(StrictModel):
    reasoning: str = ""
    verdict: Verdict


class RoundVerdict(VerdictAnswer):
    id: str


class RoundsAnswer(StrictModel):
    rounds: list[RoundVerdict]

    @model_validator(mode="after")
    def _unique(self) -> RoundsAnswer:
        unique_ids(self.rounds)
        return self


class CallStatus(StrictModel):
    id: str
    reasoning: str = ""
    status: Literal["success", "failure"]


class CallStatusAnswer(StrictModel):
    calls: list[CallStatus]

    @model_validator(mode="after")
    def _unique(self) -> CallStatusAnswer:
        unique_ids(self.calls)
        return self


class CallNeed(StrictModel):
    id: str
    reasoning: str = ""
    necessary: bool


class CallNeedAnswer(StrictModel):
    calls: list[CallNeed]

    @model_validator(mode="after")
    def _unique(self) -> CallNeedAnswer:
        unique_ids(self.calls)
        return self


class FinalAnswerVerdict(StrictModel):
    reasoning: str = ""
    correctness: Verdict
    summary: Verdict


# --- reading a trajectory ----------------------------------------------------------------------------------


def language_of(text: str) -> Literal["zh", "en", "mixed", "none"]:
    """By character class: CJK share > 0.6 ⇒ zh, Latin letters > 0.7 ⇒ en, else mixed."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "none"
    cjk = sum("\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" for c in letters) / len(letters)
    latin = sum(c.isascii() for c in letters) / len(letters)
    if cjk > 0.6:
        return "zh"
    if latin > 0.7:
        return "en"
    return "mixed"


def unseen_urls(answer: str, earlier: list[dict[str, Any]]) -> list[str]:
    """URLs in the final answer that appear nowhere earlier in the conversation (made up)."""
    seen = "\n".join(_text(m) for m in earlier)
    return [u for u in _URL.findall(answer) if u.rstrip(".,;") not in seen]


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def _calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    return list(message.get("tool_calls") or [])


def render_transcript(messages: list[dict[str, Any]], max_tool_chars: int) -> str:
    """``[i] role: …`` lines; tool calls with ids and JSON arguments, long tool outputs cut."""
    lines = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if role == "tool":
            text = _text(m)
            if len(text) > max_tool_chars:
                text = text[:max_tool_chars] + f"… [{len(text) - max_tool_chars} more characters]"
            lines.append(f"[{i}] tool result for call {m.get('tool_call_id')}: {text}")
            continue
        line = f"[{i}] {role}: {_text(m)}"
        for call in _calls(m):
            fn = call.get("function", {})
            line += f"\n    call {call.get('id')}: {fn.get('name')}({fn.get('arguments')})"
        lines.append(line)
    return "\n".join(lines)


def later_rounds(messages: list[dict[str, Any]]) -> list[int]:
    """Indices of assistant messages that call tools right after a batch of tool results."""
    return [
        i
        for i, m in enumerate(messages)
        if m.get("role") == "assistant" and _calls(m) and i > 0 and messages[i - 1].get("role") == "tool"
    ]


# --- the stage ---------------------------------------------------------------------------------------------


class _Reading:
    """What every dimension needs from one trajectory, computed once (a view, not an episode record)."""

    def __init__(self, item: Trajectory, config: JudgeConfig) -> None:
        self.messages = item.messages
        self.transcript = render_transcript(item.messages, config.max_tool_chars)
        self.tools = "\n".join(json.dumps(t.get("function", t), ensure_ascii=False) for t in item.tools)
        self.first_user = next((i for i, m in enumerate(item.messages) if m.get("role") == "user"), -1)
        self.first_assistant = next(
            (i for i, m in enumerate(item.messages) if m.get("role") == "assistant"), -1
        )
        self.call_ids = [str(c.get("id")) for m in item.messages for c in _calls(m)]
        self.rounds = later_rounds(item.messages)
        last = item.messages[-1] if item.messages else {}
        final = last.get("role") == "assistant" and not _calls(last) and _text(last).strip()
        self.last = len(item.messages) - 1 if final else -1


class JudgeStage:
    """Trajectory → JudgedTrajectory, or a rejection (rollout incomplete, judge error, below threshold)."""

    name = "judge"
    version = "1"
    input_model = Trajectory

    def __init__(self, config: JudgeConfig | None = None) -> None:
        self.config = config or JudgeConfig()

    def prompt(self, dim: Dimension) -> Prompt:
        return load_prompt("astra_synth.trajectories", f"judge_{dim}.md")

    def prompt_hashes(self) -> dict[str, str]:
        return {self.prompt(d).name: self.prompt(d).sha256 for d in DIMENSIONS}

    async def process(self, item: Trajectory, ctx: StageContext) -> JudgedTrajectory:
        assert ctx.llm is not None, "judge needs an LLM"
        if item.status != "completed":
            raise Rejection("rollout_incomplete", f"rollout ended {item.status}: {item.error or ''}")
        episode = _Reading(item, self.config)
        if len(set(episode.call_ids)) != len(episode.call_ids):
            raise Rejection("duplicate_call_ids", "tool results cannot be matched to their calls")
        if self.config.require_tool_calls and not episode.call_ids:
            raise Rejection("no_tool_calls", "the trajectory calls no tool")
        report = await self.judge(episode, ctx.llm, ctx.seed)
        errors = {d: r.detail for d, r in report.dimensions.items() if r.status == "error"}
        if errors:
            raise Rejection("judge_error", json.dumps(errors, ensure_ascii=False)[:2000])
        scores = {d: r.score for d, r in report.dimensions.items() if r.score is not None}
        if report.overall < self.config.threshold:
            raise Rejection("judge_below_threshold", f"mean {report.overall:.3f}: {scores}")
        if self.config.reject_zero_dimension and any(s == 0.0 for s in scores.values()):
            raise Rejection("judge_zero_dimension", f"mean {report.overall:.3f}: {scores}")
        return JudgedTrajectory(**item.model_dump(), judge=report)

    async def judge(self, episode: _Reading, llm: LLMClient, seed: int) -> JudgeReport:
        """All seven dimensions, concurrently; an exception in one becomes that dimension's error."""
        scorers: dict[Dimension, Callable[[_Reading, LLMClient, int], Awaitable[DimensionResult]]] = {
            "query_understanding": functools.partial(self._first_turn, "query_understanding"),
            "query_planning": functools.partial(self._first_turn, "query_planning"),
            "tool_context_understanding": self._context_understanding,
            "tool_context_planning": self._context_planning,
            "tool_call_status": self._call_status,
            "tool_conciseness": self._conciseness,
            "final_answer": self._final_answer,
        }
        outcomes = await asyncio.gather(
            *(scorer(episode, llm, seed) for scorer in scorers.values()), return_exceptions=True
        )
        dimensions: dict[str, DimensionResult] = {}
        for dim, outcome in zip(scorers, outcomes, strict=True):
            if isinstance(outcome, StructuredOutputRejected | LLMCallError):
                dimensions[dim] = DimensionResult(status="error", detail=str(outcome)[:600])
            elif isinstance(outcome, BaseException):
                raise outcome  # a bug or a budget stop: not a verdict
            else:
                dimensions[dim] = outcome
        scored = [r.score for r in dimensions.values() if r.score is not None]
        overall = round(sum(scored) / len(scored), 4) if scored else 0.0
        return JudgeReport(dimensions=dimensions, overall=overall, threshold=self.config.threshold)

    async def _ask(self, dim: Dimension, llm: LLMClient, seed: int, schema: type[Any], **values: Any) -> Any:
        text = self.prompt(dim).render(**values)
        return await structured_chat(
            llm,
            [{"role": "user", "content": text}],
            schema,
            stage=self.name,
            max_tokens=self.config.max_tokens,
            seed=seed,
        )

    async def _first_turn(self, dim: Dimension, ep: _Reading, llm: LLMClient, seed: int) -> DimensionResult:
        """Query understanding and query planning: both judge the first assistant turn against the query."""
        if ep.first_assistant < 0:
            return DimensionResult(status="scored", score=0.0, detail="no assistant response")
        answer: VerdictAnswer = await self._ask(
            dim,
            llm,
            seed,
            VerdictAnswer,
            tools=ep.tools,
            transcript=ep.transcript,
            first=ep.first_assistant,
        )
        return DimensionResult(status="scored", score=VERDICT_SCORE[answer.verdict], detail=answer.reasoning)

    async def _rounds(self, dim: Dimension, ep: _Reading, llm: LLMClient, seed: int) -> DimensionResult:
        if not ep.rounds:
            return DimensionResult(status="not_applicable", detail="no tool call after a tool result")
        ids = [f"r{i}" for i in ep.rounds]
        listing = "\n".join(f"r{i}: message [{i}], {len(_calls(ep.messages[i]))} call(s)" for i in ep.rounds)
        schema = exact_ids(RoundsAnswer, "rounds", RoundVerdict, ids)
        answer: RoundsAnswer = await self._ask(
            dim, llm, seed, schema, tools=ep.tools, transcript=ep.transcript, rounds=listing
        )
        scores = []
        for r in answer.rounds:
            score = VERDICT_SCORE[r.verdict]
            single = len(_calls(ep.messages[int(r.id[1:])])) == 1
            if dim == "tool_context_planning" and single and r.verdict == "partial":
                score = 0.0  # a single-call plan is right or wrong (paper: 0/1 only)
            scores.append(score)
        detail = "; ".join(f"{r.id}={r.verdict}" for r in answer.rounds)
        return DimensionResult(status="scored", score=round(sum(scores) / len(scores), 4), detail=detail)

    async def _context_understanding(self, ep: _Reading, llm: LLMClient, seed: int) -> DimensionResult:
        return await self._rounds("tool_context_understanding", ep, llm, seed)

    async def _context_planning(self, ep: _Reading, llm: LLMClient, seed: int) -> DimensionResult:
        return await self._rounds("tool_context_planning", ep, llm, seed)

    async def _call_status(self, ep: _Reading, llm: LLMClient, seed: int) -> DimensionResult:
        if not ep.call_ids:
            return DimensionResult(status="not_applicable", detail="no tool calls")
        schema = exact_ids(CallStatusAnswer, "calls", CallStatus, ep.call_ids)
        answer: CallStatusAnswer = await self._ask(
            "tool_call_status", llm, seed, schema, transcript=ep.transcript, call_ids=ep.call_ids
        )
        ok = sum(c.status == "success" for c in answer.calls)
        return DimensionResult(
            status="scored",
            score=round(ok / len(answer.calls), 4),
            detail=f"{ok}/{len(answer.calls)} succeeded",
        )

    async def _conciseness(self, ep: _Reading, llm: LLMClient, seed: int) -> DimensionResult:
        if not ep.call_ids:
            return DimensionResult(status="not_applicable", detail="no tool calls")
        answer: CallNeedAnswer = await self._ask(
            "tool_conciseness",
            llm,
            seed,
            exact_ids(CallNeedAnswer, "calls", CallNeed, ep.call_ids),
            tools=ep.tools,
            transcript=ep.transcript,
            call_ids=ep.call_ids,
        )
        needed = sum(c.necessary for c in answer.calls)
        return DimensionResult(
            status="scored",
            score=round(needed / len(answer.calls), 4),
            detail=f"{needed}/{len(answer.calls)} necessary",
        )

    async def _final_answer(self, ep: _Reading, llm: LLMClient, seed: int) -> DimensionResult:
        if ep.last < 0 or ep.first_user < 0:
            return DimensionResult(status="scored", score=0.0, detail="no final answer")
        final = _text(ep.messages[ep.last])
        asked, answered = language_of(_text(ep.messages[ep.first_user])), language_of(final)
        answer: FinalAnswerVerdict = await self._ask(
            "final_answer",
            llm,
            seed,
            FinalAnswerVerdict,
            transcript=ep.transcript,
            first_user=ep.first_user,
            last=ep.last,
        )
        correctness = VERDICT_SCORE[answer.correctness]
        summary = VERDICT_SCORE[answer.summary]
        notes = [answer.reasoning]
        if asked != answered and "none" not in (asked, answered):
            correctness = 0.0
            notes.append(f"language mismatch: asked in {asked}, answered in {answered}")
        if made_up := unseen_urls(final, ep.messages[: ep.last]):
            summary = 0.0
            notes.append(f"URLs not in the conversation: {made_up}")
        return DimensionResult(
            status="scored", score=(correctness + summary) / 2, detail=" | ".join(n for n in notes if n)
        )
