"""ACEBench's agent categories: episodes against the upstream environment classes of a user's checkout.

The environment (start state, the functions the agent calls, the end state that is scored) runs in
:mod:`astra_synth.evaluation.acebench_env_runner`, a subprocess per episode with the checkout on its path;
this side holds the conversation. The agent answers with ``[f(a=1), …]`` text, parsed by the checker's
literal-only parser (never evaluated); a message holding such a list goes to execution, anything else to the
user: the simulated user (an LLM given the item's instruction) in ``agent_multi_turn``, a fixed nudge in
``agent_multi_step``. An episode ends on ``finish conversation`` or after :data:`MAX_TURNS` agent turns.
The prompts are ours, written after ACEBench's (see the benchmark's README), not copies.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from astra_synth.errors import InputError
from astra_synth.evaluation import acebench_env_runner as runner
from astra_synth.evaluation.acebench_checker import (
    Call,
    ParseError,
    Scoring,
    Verdict,
    check_agent_state,
    milestone_score,
    parse_calls,
)
from astra_synth.llm.client import LLMCallError, LLMClient
from astra_synth.prompts import load_prompt
from astra_synth.runs.jsonl import describe_errors, load_records

AgentCategory = Literal["agent_multi_turn", "agent_multi_step"]
AGENT: tuple[AgentCategory, ...] = ("agent_multi_turn", "agent_multi_step")
MAX_TURNS = 40
FINISH = "finish conversation"
USER_OPENING = "Is there anything you need help with today?"
NUDGE = "Please do not ask me any questions, use the known conditions to solve the problem"
AGENT_RESULTS_FILE = "acebench_agent_results.jsonl"
ENV_LOG = "acebench_env.log"
STAGE = "eval_acebench_agent"
RUNNER_TIMEOUT_S = 60.0
NOT_RUN_REASON = (
    "needs ACEBench's environment classes (the start state lives only in the upstream code): give an "
    "ACEBench checkout with --acebench-repo DIR"
)


class AceBenchError(RuntimeError):
    """The run cannot go on (e.g. the output folder holds another model's answers)."""


class AceBenchEnvError(AceBenchError):
    """The environment runner failed (a checkout without the expected classes, a crash): not the model's."""


class AgentQuestion(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    question: str
    initial_config: dict[str, Any]
    involved_classes: list[str]
    function: list[dict[str, Any]]


class AgentAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    ground_truth: list[dict[str, Any]]
    mile_stone: list[str] | list[list[str]]


class AgentItem(BaseModel):
    category: AgentCategory
    question: AgentQuestion
    answer: AgentAnswer

    @property
    def travel(self) -> bool:
        return "Travel" in self.question.involved_classes


class AnsweredRecord(BaseModel):
    """What a resumed run needs of a stored record: whose answer it is and whether the endpoint failed."""

    id: str
    model: str
    error: str | None = None


class Turn(BaseModel):
    role: Literal["user", "agent", "execution"]
    content: str


class AgentEpisode(AnsweredRecord):
    """One finished episode (or one the endpoint broke: ``error`` set, retried by a rerun)."""

    category: str
    user_model: str | None = None
    transcript: list[Turn]
    executed: list[str]
    state: list[dict[str, Any]] | None
    ended_by: Literal["finish", "max_turns", "error"]


R = TypeVar("R", bound=AnsweredRecord)


def previous_results(path: Path, model: str, record: type[R]) -> dict[str, R]:
    """Records already in the output folder, errored ones left out; another model's stop the run."""
    previous: dict[str, R] = {}
    for result in load_records(path, record):
        if result.model != model:
            raise AceBenchError(
                f"{path} holds answers of model {result.model!r}, not {model!r}: use another --out"
            )
        if result.error is None:
            previous[result.id] = result
    return previous


# --- data ---------------------------------------------------------------------------------------------------


def load_agent_category(data: Path, category: AgentCategory, limit: int | None = None) -> list[AgentItem]:
    q_path = data / f"data_{category}.json"
    a_path = data / "possible_answer" / f"data_{category}.json"
    items = []
    for path in (q_path, a_path):
        if not path.is_file():
            raise InputError(f"{path}: no such file (expected ACEBench's data_en layout)")
    q_lines = q_path.read_bytes().splitlines()
    a_lines = a_path.read_bytes().splitlines()
    pairs = [(q, a) for q, a in zip(q_lines, a_lines, strict=False) if q.strip() or a.strip()]
    if len(q_lines) != len(a_lines):
        raise InputError(f"{q_path}: {len(q_lines)} lines but {a_path}: {len(a_lines)}")
    for lineno, (q_raw, a_raw) in enumerate(pairs, start=1):
        try:
            question = AgentQuestion.model_validate_json(q_raw)
            answer = AgentAnswer.model_validate_json(a_raw)
        except ValidationError as exc:
            raise InputError(f"{q_path} / {a_path}:{lineno}: {describe_errors(exc)}") from exc
        if question.id != answer.id:
            raise InputError(f"{a_path}:{lineno}: id {answer.id!r} where {q_path} has {question.id!r}")
        unknown = [c for c in question.involved_classes if c not in runner.CLASS_MODULES]
        if unknown:
            raise InputError(f"{q_path}:{lineno}: unknown involved classes {unknown}")
        items.append(AgentItem(category=category, question=question, answer=answer))
    return items if limit is None else items[:limit]


# --- the environment ----------------------------------------------------------------------------------------


class Environment:
    """One runner subprocess holding one episode's class instances (``async with``)."""

    def __init__(self, repo: Path, split: str, log: IO[bytes] | None = None) -> None:
        self.repo = repo
        self.split = split
        self.log = log
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            str(Path(runner.__file__)),
            "--repo",
            str(self.repo),
            "--split",
            self.split,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self.log if self.log is not None else asyncio.subprocess.DEVNULL,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout=5)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write((json.dumps(request) + "\n").encode())
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=RUNNER_TIMEOUT_S)
        except (BrokenPipeError, ConnectionResetError, TimeoutError) as exc:
            raise AceBenchEnvError(f"environment runner ({self.repo}): {type(exc).__name__}") from exc
        if not line:
            raise AceBenchEnvError(f"environment runner ({self.repo}) exited (see {ENV_LOG})")
        answer: dict[str, Any] = json.loads(line)
        if "fatal" in answer:
            raise AceBenchEnvError(f"ACEBench checkout {self.repo}: {answer['fatal']}")
        return answer

    async def start(self, classes: list[str], initial_config: dict[str, Any]) -> None:
        await self._ask({"start": {"classes": classes, "initial_config": initial_config}})

    async def execute(self, calls: list[Call], stop_on_error: bool) -> list[Any]:
        plain = [c.model_dump() for c in calls]
        answer = await self._ask({"calls": plain, "stop_on_error": stop_on_error})
        return list(answer["results"])

    async def state(self) -> list[dict[str, Any]]:
        return list((await self._ask({"state": True}))["state"])


def split_of(category: str) -> str:
    return category.removeprefix("agent_")


async def check_checkout(repo: Path, items: list[AgentItem]) -> None:
    """Load the classes the items involve once per split: a wrong folder fails here, before any request."""
    for split in runner.SPLITS:
        classes = {c for i in items if split_of(i.category) == split for c in i.question.involved_classes}
        if classes:
            async with Environment(repo, split) as env:
                await env.start(sorted(classes), {})
                await env.state()


# --- the episode --------------------------------------------------------------------------------------------


def extract_calls(text: str) -> list[Call] | None:
    """The call list an agent message holds (the whole message, or its outermost ``[...]``), else None."""
    candidates = [text.strip()]
    if match := re.search(r"\[.*\]", text, re.DOTALL):
        candidates.append(match.group(0))
    for candidate in candidates:
        try:
            calls = parse_calls(candidate)
        except ParseError:
            continue
        if calls:
            return calls
    return None


def agent_messages(item: AgentItem, transcript: list[Turn]) -> list[dict[str, str]]:
    package = "astra_synth.evaluation"
    policy = load_prompt(package, "acebench_agent_travel.md" if item.travel else "acebench_agent_phone.md")
    ending = "user" if item.category == "agent_multi_turn" else "task"
    system = load_prompt(package, "acebench_agent.md").render(
        policy=policy.render().strip(),
        ending=load_prompt(package, f"acebench_agent_ending_{ending}.md").render().strip(),
        functions=json.dumps(item.question.function, ensure_ascii=False),
    )
    history = "\n".join(f"{t.role}: {t.content}" for t in transcript)
    return [{"role": "system", "content": system.strip()}, {"role": "user", "content": history}]


def user_messages(item: AgentItem, transcript: list[Turn]) -> list[dict[str, str]]:
    """The simulator's view: its own lines as assistant turns, the agent's words as user turns."""
    prompt = "acebench_sim_user_travel.md" if item.travel else "acebench_sim_user.md"
    system = load_prompt("astra_synth.evaluation", prompt).render(instruction=item.question.question.strip())
    messages = [{"role": "system", "content": system.strip()}, {"role": "user", "content": USER_OPENING}]
    for turn in transcript:
        if turn.role == "user":
            messages.append({"role": "assistant", "content": turn.content})
        elif turn.role == "agent" and extract_calls(turn.content) is None:
            messages.append({"role": "user", "content": turn.content})
    return messages


async def run_episode(
    item: AgentItem,
    repo: Path,
    llm: LLMClient,
    user_llm: LLMClient,
    *,
    max_tokens: int | None = None,
    log: IO[bytes] | None = None,
) -> AgentEpisode:
    """One episode; an endpoint failure ends it with ``error`` set (no state, not scored as the model's)."""
    multi_turn = item.category == "agent_multi_turn"
    transcript: list[Turn] = []
    executed: list[str] = []
    ended_by: Literal["finish", "max_turns", "error"] = "max_turns"

    def episode(state: list[dict[str, Any]] | None, error: str | None = None) -> AgentEpisode:
        return AgentEpisode(
            id=item.question.id,
            category=item.category,
            model=llm.endpoint.model,
            user_model=user_llm.endpoint.model if multi_turn else None,
            transcript=transcript,
            executed=executed,
            state=state,
            ended_by="error" if error else ended_by,
            error=error,
        )

    async def reply(client: LLMClient, messages: list[dict[str, str]]) -> str:
        answer = await client.chat(messages, stage=STAGE, temperature=0.0, max_tokens=max_tokens)
        return str(answer.message.get("content") or "").strip()

    async with Environment(repo, split_of(item.category), log) as env:
        await env.start(item.question.involved_classes, item.question.initial_config)
        try:
            if multi_turn:
                transcript.append(Turn(role="user", content=await reply(user_llm, user_messages(item, []))))
            else:
                transcript.append(Turn(role="user", content=item.question.question.strip()))
            if FINISH in transcript[-1].content:
                ended_by = "finish"
            for _ in range(MAX_TURNS if ended_by != "finish" else 0):
                text = await reply(llm, agent_messages(item, transcript))
                transcript.append(Turn(role="agent", content=text))
                calls = extract_calls(text)
                if calls is not None:
                    executed.append(text)
                    results = await env.execute(calls, stop_on_error=multi_turn)
                    transcript.append(Turn(role="execution", content=json.dumps(results, ensure_ascii=False)))
                    continue
                if FINISH in text:
                    ended_by = "finish"
                    break
                line = await reply(user_llm, user_messages(item, transcript)) if multi_turn else NUDGE
                transcript.append(Turn(role="user", content=line))
                if FINISH in line:
                    ended_by = "finish"
                    break
        except LLMCallError as exc:
            return episode(None, error=str(exc))
        return episode(await env.state())


# --- scoring ------------------------------------------------------------------------------------------------


class AgentVerdict(BaseModel):
    end_to_end: Verdict
    process: float


def score_episode(item: AgentItem, episode: AgentEpisode, scoring: Scoring) -> AgentVerdict:
    """End-to-end from the saved end state; process 1.0 when that passes, else the milestone share."""
    if episode.state is None:
        return AgentVerdict(end_to_end=Verdict(ok=False, reason=episode.error or "no end state"), process=0.0)
    verdict = check_agent_state(episode.state, item.answer.ground_truth, scoring)
    process = 1.0 if verdict.ok else milestone_score(episode.executed, item.answer.mile_stone)
    return AgentVerdict(end_to_end=verdict, process=process)
