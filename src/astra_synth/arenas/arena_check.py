"""Stages 5 and 7 — the final ``Arena`` record, validated and replayed through the trainer's runtime.

The merged tools get the whole battery again (merging changed their code), then the arena is replayed
through ``ArenaEnv`` exactly as training will run it, and the reward-hacking probes are played. An arena
that does not reach reward 1.0 on replay, or lets a probe score above the threshold, is dropped with its
report card's failures as the reason: the authors' released arenas were never replayed end to end.
"""

from __future__ import annotations

import asyncio

from astra_synth.arenas.merge import MergedInstance
from astra_synth.arenas.records import (
    Arena,
    ChatMessage,
    Provenance,
    SubTask,
    ToolSchema,
    ToolSource,
)
from astra_synth.arenas.validate import ValidationConfig, check_arena
from astra_synth.errors import Rejection
from astra_synth.runs.stage import StageContext

SYSTEM_PROMPT = (
    "You are a careful assistant with tools. Call the tools you need with exact arguments, use earlier "
    "results as inputs to later calls, and answer concisely."
)
SYSTEM_PROMPT_ZH = (
    "你是一个谨慎的助手，可以调用工具。请用准确的参数调用所需工具，"
    "把前面的结果作为后续调用的输入，并简洁作答。"
)


def to_arena(item: MergedInstance, arena_id: str, *, model: str, run_id: str) -> Arena:
    """The arena record of a merged instance (sub-questions without a tool stay as leaf sub-tasks)."""
    served = {sid: (tool, call) for tool in item.arena_tools for sid, call in tool.calls.items()}
    subtasks = []
    for s in item.sub_questions:
        tool_call = served.get(s.id)
        subtasks.append(
            SubTask(
                id=s.id,
                question=s.question,
                answer=s.answer,
                parents=s.parents,
                hop_level=s.hop_level,
                needs_tool=tool_call is not None,
                kind=s.kind if tool_call else None,
                tool=tool_call[0].spec.name if tool_call else None,
                golden_call=tool_call[1] if tool_call else None,
            )
        )
    return Arena(
        id=arena_id,
        language=item.language,
        domain=item.domain,
        scenario_type=item.scenario_type,
        messages=[
            ChatMessage(role="system", content=SYSTEM_PROMPT_ZH if item.language == "zh" else SYSTEM_PROMPT),
            ChatMessage(role="user", content=item.main_question),
        ],
        tools=[ToolSchema(function=t.spec) for t in item.arena_tools],
        tool_sources={t.spec.name: ToolSource.of(t.source, t.spec.name) for t in item.arena_tools},
        subtasks=subtasks,
        final_answer=item.final_answer,
        provenance=Provenance(
            method="synthesized",
            licence="CC-BY-4.0 (synthetic; seeds from the run's config)",
            model=model,
            run_id=run_id,
            source=str(item.seed.get("source") or item.seed.get("mode") or ""),
        ),
    )


class ArenaCheckStage:
    """MergedInstance → Arena with a passing report card, or a rejection naming the failed checks."""

    name = "arena_check"
    version = "1"
    input_model = MergedInstance

    def __init__(self, *, model: str, run_id: str, validation: ValidationConfig | None = None) -> None:
        self.model = model
        self.run_id = run_id
        self.validation = validation or ValidationConfig()

    async def process(self, item: MergedInstance, ctx: StageContext) -> Arena:
        assert ctx.sandbox is not None, "arena_check needs a sandbox"
        try:
            arena = to_arena(item, f"arena-{ctx.item_id[:16]}", model=self.model, run_id=self.run_id)
        except ValueError as exc:
            raise Rejection("invalid_arena", str(exc)[:1000]) from exc
        card = await asyncio.to_thread(check_arena, arena, ctx.sandbox, self.validation)
        arena = arena.model_copy(update={"report": card})
        if not card.passed:
            why = [f"{c.name}: {c.detail}" for c in card.failures]
            if not card.replay_ok:
                why.append(f"replay rewards {card.replay_rewards}")
            over = {k: v for k, v in card.probe_rewards.items() if v > self.validation.max_probe_reward}
            if over:
                why.append(f"probe rewards over {self.validation.max_probe_reward}: {over}")
            raise Rejection("arena_check_failed", "; ".join(why)[:2000])
        return arena
