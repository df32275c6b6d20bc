"""Chain verification filters: structure, per-parameter data flow, vote, back-translation; all fail closed."""

from __future__ import annotations

from typing import Any

import pytest

from astra_synth.errors import Rejection
from astra_synth.testing.scripted import ScriptedLLM, invalid_json_reply, json_reply
from astra_synth.tools.spec import ServerRecord
from astra_synth.trajectories.chains import ChainsConfig, ChainsStage
from astra_synth.trajectories.records import ChainSeed

from .conftest import ContextFactory

CHAIN = ["search_notes", "read_note", "share_note"]
DATAFLOW = "every required argument"
VOTE = "You review a workflow"
FORWARD = "Someone called these tools"
BACK = "A user asks:"


def _seed(server: ServerRecord, chain: list[str] = CHAIN) -> ChainSeed:
    return ChainSeed(server=server, origin="walk", chain=chain, num_tools=len(chain))


def _flow(**overrides: Any) -> dict[str, Any]:
    params = [
        {"step": 0, "tool": "search_notes", "parameter": "query", "source": "task", "from_step": None},
        {"step": 1, "tool": "read_note", "parameter": "note_id", "source": "tool_output", "from_step": 0},
        {"step": 2, "tool": "share_note", "parameter": "note_id", "source": "tool_output", "from_step": 0},
        {"step": 2, "tool": "share_note", "parameter": "email", "source": "task", "from_step": None},
    ]
    for index, change in overrides.items():
        params[int(index[1:])].update(change)
    return {"parameters": [p for p in params if not p.get("drop")]}


def _script_passing(llm: ScriptedLLM, *, flow: dict[str, Any] | None = None) -> None:
    llm.on(DATAFLOW, json_reply(flow or _flow()))
    llm.on(VOTE, json_reply({"is_valid": True, "task": "Share my trip note with Ann.", "reason": "ok"}))
    llm.on(FORWARD, json_reply({"valid": True, "query": "Send Ann my note about the trip."}))
    llm.on(BACK, json_reply({"plan": "find, read, share", "chain": CHAIN}))


async def test_a_sound_chain_passes_every_check(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    _script_passing(scripted_llm)
    out = await ChainsStage().process(_seed(notes_server), make_ctx("chains"))
    v = out.verification
    assert v is not None
    assert [(p.step, p.parameter) for p in v.dataflow] == [
        (0, "query"),
        (1, "note_id"),
        (2, "note_id"),
        (2, "email"),
    ]
    assert (v.votes_valid, v.votes_total) == (3, 3)
    assert (v.back_translation_agree, v.back_translation_total) == (1, 1)
    assert v.implied_task == "Share my trip note with Ann."


async def test_unknown_tool_is_rejected_before_any_llm_call(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    with pytest.raises(Rejection, match=r"chain_structure.*unknown tools"):
        await ChainsStage().process(_seed(notes_server, ["search_notes", "delete_all"]), make_ctx("chains"))
    with pytest.raises(Rejection, match=r"chain_structure.*length"):
        await ChainsStage(ChainsConfig(max_len=2)).process(_seed(notes_server), make_ctx("chains"))
    assert scripted_llm.chat_requests() == []


@pytest.mark.parametrize(
    ("flow", "reason"),
    [
        (_flow(p3={"drop": True}), "missing \\[\\(2, 'email'\\)\\]"),
        (_flow(p3={"source": "none"}), "email: no source"),
        (_flow(p1={"from_step": 1}), "from_step 1 is not an earlier step"),
        (_flow(p0={"source": "tool_output", "from_step": 0}), "from_step 0 is not an earlier step"),
        (_flow(p1={"tool": "update_note"}), "step 1 is read_note, not update_note"),
    ],
)
async def test_dataflow_failures_reject(
    scripted_llm: ScriptedLLM,
    make_ctx: ContextFactory,
    notes_server: ServerRecord,
    flow: dict[str, Any],
    reason: str,
) -> None:
    _script_passing(scripted_llm, flow=flow)
    with pytest.raises(Rejection, match=f"chain_dataflow.*{reason}"):
        await ChainsStage().process(_seed(notes_server), make_ctx("chains"))


async def test_garbage_dataflow_judge_rejects(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    scripted_llm.on(DATAFLOW, invalid_json_reply())
    with pytest.raises(Rejection, match="structured_output_invalid"):
        await ChainsStage().process(_seed(notes_server), make_ctx("chains"))


async def test_vote_needs_a_majority_and_garbage_votes_count_against(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    _script_passing(scripted_llm)
    scripted_llm.reset()
    scripted_llm.on(DATAFLOW, json_reply(_flow()))
    yes = json_reply({"is_valid": True, "task": "t"})
    scripted_llm.on(VOTE, yes, invalid_json_reply())  # samples 2 and 3: garbage on every (re-)ask
    with pytest.raises(Rejection, match=r"chain_vote: 1/3"):
        await ChainsStage().process(_seed(notes_server), make_ctx("chains"))


async def test_back_translation_must_recover_the_same_ordered_chain(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    scripted_llm.on(BACK, json_reply({"plan": "p", "chain": ["search_notes", "share_note", "read_note"]}))
    _script_passing(scripted_llm)
    with pytest.raises(Rejection, match=r"chain_back_translation: 0/1"):
        await ChainsStage().process(_seed(notes_server), make_ctx("chains"))


async def test_checks_can_be_switched_off_and_server_only_seeds_pass(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    off = ChainsConfig(dataflow=False, vote_samples=0, back_translation_rounds=0)
    out = await ChainsStage(off).process(_seed(notes_server), make_ctx("chains"))
    assert out.verification is not None and out.verification.votes_total == 0
    server_only = ChainSeed(server=notes_server, origin="server_only", num_tools=2)
    assert await ChainsStage().process(server_only, make_ctx("chains")) == server_only
    assert scripted_llm.chat_requests() == []
