"""The F1 trajectory reward of ASTRA (arXiv 2601.21558, §C.2), with the open points decided and tested.

recall = solved / sub-tasks, precision = solved tool sub-tasks / (calls + ε), reward = their harmonic mean
(0 when both are 0). Recall alone rewards spamming calls and precision alone rewards silence; F1 rewards
solving every sub-task with as few calls as possible. Decisions the paper leaves open:

* ``calls`` counts every call the policy emitted: failed, invalid, unknown-tool and irrelevant ones too.
* One call solves at most one sub-task (a maximum matching between calls and sub-tasks), so a tool that
  returns everything at once cannot buy several sub-tasks with one call and precision never exceeds 1.
* ``match="result"`` (default): a call solves a sub-task when it is the sub-task's tool and its result equals
  the golden call's result — tools are deterministic, so this is exact up to number spelling (a policy
  writing ``118`` where the golden call has ``118.0`` gets ``354`` for ``354.0``, and that counts as equal).
  ``match="answer"``: the call's output contains the normalised sub-answer
  (:func:`~astra_synth.arenas.answer_match.contains_answer`).
* Sub-tasks that need no tool are left out by default; ``leaf_subtasks="final_message"`` counts them in
  recall when the final assistant message contains their answer. They never count in precision's numerator,
  so pasting answers without calling tools scores 0.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from astra_synth.arenas.answer_match import contains_answer, render, same_result
from astra_synth.config import StrictModel


class RewardConfig(StrictModel):
    """How sub-tasks are judged solved."""

    match: Literal["result", "answer"] = "result"
    epsilon: float = Field(default=1e-9, gt=0, description="Keeps precision finite when there are no calls.")
    min_answer_chars: int = Field(default=2, ge=1, description="Shorter non-numeric answers match exactly.")
    leaf_subtasks: Literal["exclude", "final_message"] = "exclude"


class ExecutedCall(BaseModel):
    """One tool call the policy made, as the runtime saw it (``ok`` only if the tool ran and returned)."""

    name: str
    ok: bool
    result: Any = None


class SubTaskTarget(BaseModel):
    """What solves one sub-task: its answer and, for tool sub-tasks, the golden call's outcome."""

    id: str
    answer: str
    needs_tool: bool = True
    tool: str | None = None
    golden: ExecutedCall | None = Field(
        default=None, description="The golden call's outcome; None or not ok means result-matching fails."
    )


class RewardBreakdown(BaseModel):
    """The reward and what it is made of, for logging and for the trajectory viewer."""

    reward: float
    recall: float
    precision: float
    calls: int
    solved: dict[str, bool] = Field(description="Per sub-task id, in the order given.")
    turns: int = 0


def _solves(call: ExecutedCall, target: SubTaskTarget, config: RewardConfig) -> bool:
    if not call.ok:
        return False
    if config.match == "answer":
        return contains_answer(render(call.result), target.answer, config.min_answer_chars)
    golden = target.golden
    return (
        golden is not None
        and golden.ok
        and call.name == golden.name
        and same_result(call.result, golden.result)
    )


def _max_matching(edges: list[list[int]], n_calls: int) -> list[int | None]:
    """Kuhn's augmenting paths: ``edges[t]`` lists the calls that solve target ``t``; returns its call."""
    owner: list[int | None] = [None] * n_calls

    def augment(target: int, seen: set[int]) -> bool:
        for call in edges[target]:
            if call in seen:
                continue
            seen.add(call)
            current = owner[call]
            if current is None or augment(current, seen):
                owner[call] = target
                return True
        return False

    for target in range(len(edges)):
        augment(target, set())
    matched: list[int | None] = [None] * len(edges)
    for call, owned in enumerate(owner):
        if owned is not None:
            matched[owned] = call
    return matched


def f1_reward(
    targets: list[SubTaskTarget],
    calls: list[ExecutedCall],
    config: RewardConfig | None = None,
    final_message: str | None = None,
    turns: int = 0,
) -> RewardBreakdown:
    """Score one episode: ``calls`` in the order made, ``final_message`` the last assistant text."""
    config = config or RewardConfig()
    tool_targets = [t for t in targets if t.needs_tool]
    edges = [[j for j, call in enumerate(calls) if _solves(call, t, config)] for t in tool_targets]
    matched = _max_matching(edges, len(calls))
    solved = {t.id: m is not None for t, m in zip(tool_targets, matched, strict=True)}
    n_tool_solved = sum(solved.values())

    counted = list(tool_targets)
    if config.leaf_subtasks == "final_message":
        for t in targets:
            if not t.needs_tool:
                counted.append(t)
                text = final_message or ""
                solved[t.id] = contains_answer(text, t.answer, config.min_answer_chars)
    n_solved = sum(solved[t.id] for t in counted)

    recall = n_solved / len(counted) if counted else 0.0
    precision = n_tool_solved / (len(calls) + config.epsilon)
    reward = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    ordered = {t.id: solved.get(t.id, False) for t in targets if t.id in solved}
    return RewardBreakdown(
        reward=reward, recall=recall, precision=precision, calls=len(calls), solved=ordered, turns=turns
    )
