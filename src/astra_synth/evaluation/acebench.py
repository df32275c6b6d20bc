"""ACEBench (English) against any OpenAI-compatible endpoint: the normal and special categories.

The data is the user's ``data_en`` folder of an ACEBench checkout (evaluation only: never train, tune or
select checkpoints on it); the project ships neither its data nor its code. Each item becomes one chat
request (system prompt with the item's time or user profile, user prompt with the API list and the
dialogue so far); the answer text is scored by :mod:`astra_synth.evaluation.acebench_checker` under both
scorings. The agent categories need ACEBench's environment classes (their start state lives only there):
with a checkout (``acebench_repo``) they run as episodes (:mod:`astra_synth.evaluation.acebench_agent`),
without one they are reported as not run.

Answers and episodes are appended to ``acebench_results.jsonl`` and ``acebench_agent_results.jsonl`` in the
output folder as they arrive; a rerun with the same folder runs only the missing ones (and the ones that
failed at the endpoint) and re-scores all.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from astra_synth.config import StrictModel
from astra_synth.errors import InputError
from astra_synth.evaluation.acebench_agent import AGENT as AGENT
from astra_synth.evaluation.acebench_agent import (
    AGENT_RESULTS_FILE,
    ENV_LOG,
    NOT_RUN_REASON,
    AgentEpisode,
    AgentItem,
    AnsweredRecord,
    check_checkout,
    load_agent_category,
    previous_results,
    run_episode,
    score_episode,
)
from astra_synth.evaluation.acebench_agent import AceBenchError as AceBenchError
from astra_synth.evaluation.acebench_checker import Scoring, Verdict, check_normal, check_special
from astra_synth.evaluation.endpoint_errors import ErrorPolicy
from astra_synth.llm.client import LLMCallError, LLMClient
from astra_synth.prompts import load_prompt
from astra_synth.runs.jsonl import JsonlAppender, describe_errors, write_json_atomic

NORMAL = (
    "normal_single_turn_single_function",
    "normal_single_turn_parallel_function",
    "normal_multi_turn_user_adjust",
    "normal_multi_turn_user_switch",
    "normal_similar_api",
    "normal_preference",
    "normal_atom_bool",
    "normal_atom_enum",
    "normal_atom_number",
    "normal_atom_list",
    "normal_atom_object_deep",
    "normal_atom_object_short",
)
SPECIAL = ("special_incomplete", "special_error_param", "special_irrelevant")
CATEGORIES = NORMAL + SPECIAL + AGENT
MULTI_TURN = ("normal_multi_turn_user_adjust", "normal_multi_turn_user_switch")
# ACEBench's summary weights (normal, special, agent).
WEIGHTS = {"normal": 0.578, "special": 0.2676, "agent": 0.1545}
RESULTS_FILE = "acebench_results.jsonl"
REPORT_FILE = "acebench_report.json"
STAGE = "eval_acebench"

Group = Literal["normal", "special", "agent"]
Outcome = Literal["ok", "wrong", "error"]


class AceQuestion(BaseModel):
    """One line of ``data_<category>.json`` (normal or special)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    question: str
    function: list[dict[str, Any]]
    time: str = ""
    profile: str | None = None


class AceAnswer(BaseModel):
    """One line of ``possible_answer/data_<category>.json``: expected calls, alternatives, or special text."""

    model_config = ConfigDict(extra="ignore")

    id: str
    ground_truth: dict[str, Any] | list[dict[str, Any]] | str


class AceItem(BaseModel):
    category: str
    question: AceQuestion
    answer: AceAnswer

    @property
    def dialogue(self) -> str | None:
        """Multi-turn ids are ``<category>_<dialogue>_<step>``."""
        return self.question.id.rsplit("_", 2)[-2] if self.category in MULTI_TURN else None


class ItemResult(AnsweredRecord):
    """One item's answer (None when the endpoint failed) and its verdict under both scorings."""

    category: str
    answer: str | None
    original: Verdict
    strict: Verdict

    def verdict(self, scoring: Scoring) -> Verdict:
        return self.original if scoring == "original" else self.strict


class Metrics(BaseModel):
    accuracy: float = Field(
        description="Share correct; multi-turn: share of dialogues with every step right; agent: end-to-end."
    )
    process_accuracy: float | None = Field(
        default=None,
        description="Multi-turn: mean share of correct steps per dialogue; agent: mean milestone share.",
    )


class CategoryScore(BaseModel):
    category: str
    group: Group
    items: int
    dialogues: int | None = None
    errors: int = Field(
        description="Items the endpoint failed on (scored as wrong unless allow_errors leaves them out)."
    )
    original: Metrics
    strict: Metrics

    def metrics(self, scoring: Scoring) -> Metrics:
        return self.original if scoring == "original" else self.strict


class NotRun(BaseModel):
    category: str
    reason: str


class Summary(BaseModel):
    """Group means and the weighted overall of what ran (renormalised over the groups that ran)."""

    normal: float | None
    special: float | None
    agent: float | None
    overall: float
    overall_label: str


class AceBenchReport(BaseModel):
    model: str
    user_model: str | None = Field(default=None, description="The simulated user of agent_multi_turn.")
    data: str
    acebench_repo: str | None = Field(default=None, description="The checkout the agent classes came from.")
    scoring: Scoring = Field(description="The headline scoring; both are reported.")
    items: int
    errors: int
    allow_errors: bool = Field(default=False, description="Whether errored items were left out of scores.")
    error_violation: str | None = Field(
        default=None, description="Why the run failed for endpoint reasons (above --max-error-rate)."
    )
    categories: list[CategoryScore]
    not_run: list[NotRun]
    original: Summary
    strict: Summary
    wall_s: float

    def summary(self, scoring: Scoring | None = None) -> Summary:
        return self.original if (scoring or self.scoring) == "original" else self.strict


class AceBenchConfig(StrictModel):
    categories: list[str] = Field(default_factory=lambda: list(CATEGORIES))
    limit: int | None = Field(default=None, ge=1, description="First N items (multi-turn: dialogues).")
    concurrency: int = Field(default=8, ge=1)
    scoring: Scoring = "original"
    max_tokens: int | None = Field(default=None, ge=1)
    errors: ErrorPolicy = Field(default_factory=ErrorPolicy)


# --- data ---------------------------------------------------------------------------------------------------


def _read_lines(path: Path, model: type[AceQuestion] | type[AceAnswer]) -> list[Any]:
    if not path.is_file():
        raise InputError(f"{path}: no such file (expected ACEBench's data_en layout)")
    records = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                records.append(model.model_validate(json.loads(raw)))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"{path}:{lineno}: not a JSON object: {exc}") from exc
            except ValidationError as exc:
                raise InputError(f"{path}:{lineno}: {describe_errors(exc)}") from exc
    return records


def _check_answer(category: str, answer: AceAnswer) -> str | None:
    truth = answer.ground_truth
    if category == "special_irrelevant":
        return None if isinstance(truth, str) else "ground_truth must be a string"
    if category in SPECIAL:
        ok = isinstance(truth, dict) and all(isinstance(v, list) for v in truth.values())
        return None if ok else "ground_truth must map names to lists"
    return None if not isinstance(truth, str) else "ground_truth must be a dict of calls"


def load_category(data: Path, category: str, limit: int | None = None) -> list[AceItem]:
    """Pair ``data_<category>.json`` with its ``possible_answer`` file line by line (JSON Lines)."""
    if category not in NORMAL + SPECIAL:
        raise ValueError(f"{category}: not a normal or special ACEBench category")
    q_path = data / f"data_{category}.json"
    a_path = data / "possible_answer" / f"data_{category}.json"
    questions: list[AceQuestion] = _read_lines(q_path, AceQuestion)
    answers: list[AceAnswer] = _read_lines(a_path, AceAnswer)
    if len(questions) != len(answers):
        raise InputError(f"{q_path}: {len(questions)} questions but {a_path}: {len(answers)} answers")
    items = []
    for lineno, (question, answer) in enumerate(zip(questions, answers, strict=True), start=1):
        if question.id != answer.id:
            raise InputError(f"{a_path}:{lineno}: id {answer.id!r} where {q_path} has {question.id!r}")
        if problem := _check_answer(category, answer):
            raise InputError(f"{a_path}:{lineno}: {problem}")
        items.append(AceItem(category=category, question=question, answer=answer))
    if limit is None:
        return items
    if category in MULTI_TURN:
        keep = list(dict.fromkeys(item.dialogue for item in items))[:limit]
        return [item for item in items if item.dialogue in keep]
    return items[:limit]


def build_messages(item: AceItem) -> list[dict[str, str]]:
    """System prompt (time, or the user profile for preference) and the API list + dialogue."""
    package = "astra_synth.evaluation"
    if item.category in SPECIAL:
        system = load_prompt(package, "acebench_special.md").render(time=item.question.time)
    elif item.category == "normal_preference":
        system = load_prompt(package, "acebench_preference.md").render(profile=item.question.profile or "")
    else:
        system = load_prompt(package, "acebench_normal.md").render(time=item.question.time)
    functions = json.dumps(item.question.function, ensure_ascii=False)
    user = load_prompt(package, "acebench_user.md").render(
        functions=functions, history=item.question.question.strip()
    )
    return [{"role": "system", "content": system.strip()}, {"role": "user", "content": user.strip()}]


# --- scoring ------------------------------------------------------------------------------------------------


def score_answer(item: AceItem, text: str | None, scoring: Scoring) -> Verdict:
    if text is None:
        return Verdict(ok=False, reason="no answer")
    truth = item.answer.ground_truth
    if item.category in SPECIAL:
        return check_special(item.category, text, truth, scoring)
    if isinstance(truth, str):
        return Verdict(ok=False, reason="ground truth is not a call dict")
    return check_normal(text, item.question.function, truth, scoring)


def result_for(item: AceItem, model: str, text: str | None, error: str | None = None) -> ItemResult:
    return ItemResult(
        id=item.question.id,
        category=item.category,
        model=model,
        answer=text,
        error=error,
        original=score_answer(item, text, "original"),
        strict=score_answer(item, text, "strict"),
    )


def _metrics(
    items: list[AceItem], results: dict[str, ItemResult], scoring: Scoring, allow_errors: bool = False
) -> Metrics:
    """``allow_errors``: items the endpoint failed (multi-turn: dialogues with such a step) are left out."""

    def ok(item: AceItem) -> bool:
        return results[item.question.id].verdict(scoring).ok

    if allow_errors:
        failed = {item.dialogue or item.question.id for item in items if results[item.question.id].error}
        items = [item for item in items if (item.dialogue or item.question.id) not in failed]
    if not items:
        return Metrics(accuracy=0.0)
    if items[0].category not in MULTI_TURN:
        return Metrics(accuracy=sum(map(ok, items)) / len(items))
    dialogues: dict[str | None, list[bool]] = {}
    for item in items:
        dialogues.setdefault(item.dialogue, []).append(ok(item))
    return Metrics(
        accuracy=sum(all(steps) for steps in dialogues.values()) / len(dialogues),
        process_accuracy=statistics.fmean(sum(s) / len(s) for s in dialogues.values()),
    )


def _group(category: str) -> Group:
    return "normal" if category in NORMAL else "special" if category in SPECIAL else "agent"


def _summary(scores: list[CategoryScore], scoring: Scoring, ran_all: bool) -> Summary:
    means: dict[Group, float | None] = {}
    for group in ("normal", "special", "agent"):
        values = [s.metrics(scoring).accuracy for s in scores if s.group == group]
        means[group] = statistics.fmean(values) if values else None
    ran = {g: m for g, m in means.items() if m is not None}
    weight = sum(WEIGHTS[g] for g in ran)
    overall = sum(WEIGHTS[g] * m for g, m in ran.items()) / weight if weight else 0.0
    if ran_all:
        label = "overall = 0.578·normal + 0.2676·special + 0.1545·agent (all 17 categories)"
    else:
        label = (
            f"overall of what ran ({', '.join(ran) or 'nothing'}; weights renormalised): not comparable "
            "with ACEBench's published overall, which needs all 17 categories"
        )
    return Summary(**means, overall=overall, overall_label=label)


def _agent_metrics(
    items: list[AgentItem], episodes: dict[str, AgentEpisode], scoring: Scoring, allow_errors: bool
) -> Metrics:
    if allow_errors:
        items = [item for item in items if episodes[item.question.id].error is None]
    if not items:
        return Metrics(accuracy=0.0, process_accuracy=0.0)
    verdicts = [score_episode(item, episodes[item.question.id], scoring) for item in items]
    return Metrics(
        accuracy=sum(v.end_to_end.ok for v in verdicts) / len(verdicts),
        process_accuracy=statistics.fmean(v.process for v in verdicts),
    )


def summarise(
    items: list[AceItem],
    results: dict[str, ItemResult],
    *,
    model: str,
    data: Path,
    config: AceBenchConfig,
    not_run: list[NotRun],
    wall_s: float,
    agent_items: list[AgentItem] | None = None,
    episodes: dict[str, AgentEpisode] | None = None,
    user_model: str | None = None,
    acebench_repo: Path | None = None,
) -> AceBenchReport:
    scores = []
    agent_items, episodes = agent_items or [], episodes or {}
    skipped = {n.category for n in not_run}
    for category in CATEGORIES:
        if category not in config.categories or category in skipped:
            continue
        if category in AGENT:
            mine_agent = [item for item in agent_items if item.category == category]
            scores.append(
                CategoryScore(
                    category=category,
                    group="agent",
                    items=len(mine_agent),
                    errors=sum(episodes[i.question.id].error is not None for i in mine_agent),
                    original=_agent_metrics(mine_agent, episodes, "original", config.errors.allow_errors),
                    strict=_agent_metrics(mine_agent, episodes, "strict", config.errors.allow_errors),
                )
            )
            continue
        mine = [item for item in items if item.category == category]
        dialogues = len({i.dialogue for i in mine}) if category in MULTI_TURN else None
        scores.append(
            CategoryScore(
                category=category,
                group=_group(category),
                items=len(mine),
                dialogues=dialogues,
                errors=sum(results[i.question.id].error is not None for i in mine),
                original=_metrics(mine, results, "original", config.errors.allow_errors),
                strict=_metrics(mine, results, "strict", config.errors.allow_errors),
            )
        )
    ran_all = config.limit is None and not not_run and len(scores) == len(CATEGORIES)
    errors = sum(s.errors for s in scores)
    return AceBenchReport(
        model=model,
        user_model=user_model,
        data=str(data),
        acebench_repo=str(acebench_repo) if acebench_repo is not None else None,
        scoring=config.scoring,
        items=len(items) + len(agent_items),
        errors=errors,
        allow_errors=config.errors.allow_errors,
        error_violation=config.errors.violation(len(items) + len(agent_items), errors),
        categories=scores,
        not_run=not_run,
        original=_summary(scores, "original", ran_all),
        strict=_summary(scores, "strict", ran_all),
        wall_s=wall_s,
    )


# --- the run ------------------------------------------------------------------------------------------------


async def evaluate_acebench(
    data: Path,
    out: Path,
    llm: LLMClient,
    config: AceBenchConfig,
    on_result: Callable[[str, Outcome], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    *,
    acebench_repo: Path | None = None,
    user_llm: LLMClient | None = None,
) -> AceBenchReport:
    """Ask the endpoint every item not answered yet in ``out``, score all, write the report there.

    The agent categories run only with ``acebench_repo`` (an ACEBench checkout; its classes are loaded
    in a subprocess, see :mod:`astra_synth.evaluation.acebench_agent`); ``user_llm`` plays the user of
    ``agent_multi_turn`` (default: ``llm``). ``on_start(total, already_done)`` and ``on_result(id,
    outcome)`` drive a progress display.
    """
    started = time.monotonic()
    unknown = [c for c in config.categories if c not in CATEGORIES]
    if unknown:
        raise InputError(f"unknown ACEBench categories {unknown}; choose from {', '.join(CATEGORIES)}")
    items = [
        item
        for category in CATEGORIES
        if category in config.categories and category not in AGENT
        for item in load_category(data, category, config.limit)
    ]
    agent_wanted = [c for c in AGENT if c in config.categories]
    not_run = (
        [] if acebench_repo is not None else [NotRun(category=c, reason=NOT_RUN_REASON) for c in agent_wanted]
    )
    agent_items = [
        item
        for c in agent_wanted
        if acebench_repo is not None
        for item in load_agent_category(data, c, config.limit)
    ]
    if agent_items and acebench_repo is not None:
        if not acebench_repo.is_dir():
            raise InputError(f"--acebench-repo {acebench_repo}: no such folder")
        await check_checkout(acebench_repo, agent_items)
    user = user_llm or llm
    model = llm.endpoint.model
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS_FILE
    agent_path = out / AGENT_RESULTS_FILE
    previous = previous_results(results_path, model, ItemResult)
    episodes = previous_results(agent_path, model, AgentEpisode)
    results = {
        item.question.id: result_for(item, model, previous[item.question.id].answer)
        for item in items
        if item.question.id in previous
    }
    episodes = {i.question.id: episodes[i.question.id] for i in agent_items if i.question.id in episodes}
    todo = [item for item in items if item.question.id not in results]
    agent_todo = [item for item in agent_items if item.question.id not in episodes]
    if on_start is not None:
        on_start(len(items) + len(agent_items), len(results) + len(episodes))
    gate = asyncio.Semaphore(config.concurrency)
    appender = JsonlAppender(results_path, max_batch=1)
    agent_appender = JsonlAppender(agent_path, max_batch=1)

    def report(record_id: str, outcome: Outcome) -> None:
        if on_result is not None:
            on_result(record_id, outcome)

    async def ask(item: AceItem) -> None:
        async with gate:
            try:
                reply = await llm.chat(
                    build_messages(item), stage=STAGE, temperature=0.0, max_tokens=config.max_tokens
                )
                result = result_for(item, model, reply.message.get("content") or "")
            except LLMCallError as exc:
                result = result_for(item, model, None, error=str(exc))
        results[item.question.id] = result
        appender.append(result)
        report(result.id, "error" if result.error else "ok" if result.original.ok else "wrong")

    async def play(item: AgentItem, log: IO[bytes]) -> None:
        assert acebench_repo is not None
        async with gate:
            episode = await run_episode(item, acebench_repo, llm, user, max_tokens=config.max_tokens, log=log)
        episodes[item.question.id] = episode
        agent_appender.append(episode)
        ok = score_episode(item, episode, "original").end_to_end.ok
        report(episode.id, "error" if episode.error else "ok" if ok else "wrong")

    appender.open()
    agent_appender.open()
    try:
        with (out / ENV_LOG).open("ab") as log:
            await asyncio.gather(*(ask(item) for item in todo), *(play(item, log) for item in agent_todo))
    finally:
        appender.close()
        agent_appender.close()
    report_ = summarise(
        items,
        results,
        model=model,
        data=data,
        config=config,
        not_run=not_run,
        wall_s=time.monotonic() - started,
        agent_items=agent_items,
        episodes=episodes,
        user_model=user.endpoint.model
        if any(i.category == "agent_multi_turn" for i in agent_items)
        else None,
        acebench_repo=acebench_repo,
    )
    write_json_atomic(out / REPORT_FILE, report_.model_dump(mode="json"))
    return report_
