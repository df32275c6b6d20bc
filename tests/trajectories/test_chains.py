"""Chain verification filters: structure, per-parameter data flow, vote, back-translation; all fail closed."""

from __future__ import annotations

from typing import Any

import pytest

from astra_synth.errors import Rejection
from astra_synth.testing.scripted import ScriptedLLM, invalid_json_reply, json_reply
from astra_synth.tools.spec import ServerRecord
from astra_synth.trajectories.chains import ChainsConfig, ChainsStage, recovery_problem
from astra_synth.trajectories.records import ChainSeed, ParamSource

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
    assert (v.back_translation_agree, v.back_translation_total) == (2, 2)  # 2 of 3 decide: round 3 unasked
    assert v.back_translation_chains == [CHAIN, CHAIN]
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


@pytest.mark.parametrize(
    "plan",
    [
        ["search_notes", "share_note", "read_note"],  # read and share both need only the search: independent
        ["search_notes", "share_note"],  # the request already says what the note says: reading is skipped
        ["search_notes", "read_note", "read_note", "share_note"],  # one added look-up
    ],
)
async def test_back_translation_accepts_reordered_independent_skipped_and_added_steps(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord, plan: list[str]
) -> None:
    scripted_llm.on(BACK, json_reply({"plan": "p", "chain": plan}))
    _script_passing(scripted_llm)
    out = await ChainsStage().process(_seed(notes_server), make_ctx("chains"))
    assert out.verification is not None and out.verification.back_translation_agree == 2


@pytest.mark.parametrize(
    ("plan", "why"),
    [
        (["read_note", "search_notes", "share_note"], "1 needs 0"),
        (["share_note"], "left out steps \\['0:search_notes', '1:read_note'\\]"),
        (["search_notes", "read_note", "read_note", "read_note", "share_note"], "added calls"),
    ],
)
async def test_back_translation_rejects_a_plan_that_breaks_the_data_flow_or_drifts_far(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord, plan: list[str], why: str
) -> None:
    scripted_llm.on(BACK, json_reply({"plan": "p", "chain": plan}))
    _script_passing(scripted_llm)
    with pytest.raises(Rejection, match=rf"chain_back_translation: 0/2 .*2 of 3 needed.*{why}"):
        await ChainsStage().process(_seed(notes_server), make_ctx("chains"))


async def test_back_translation_is_a_majority_of_rounds_that_each_ask_anew(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    wrong = json_reply({"plan": "p", "chain": ["share_note", "search_notes"]})
    right = json_reply({"plan": "p", "chain": CHAIN})
    scripted_llm.on(BACK, wrong, right, right)
    _script_passing(scripted_llm)
    out = await ChainsStage().process(_seed(notes_server), make_ctx("chains"))
    v = out.verification
    assert v is not None and (v.back_translation_agree, v.back_translation_total) == (2, 3)
    forward = [r for r in scripted_llm.chat_requests() if FORWARD in r["messages"][0]["content"]]
    assert len({(r["seed"], r["temperature"]) for r in forward}) == 3
    assert (
        "State in the request the value of every one of: search_notes.query, share_note.email"
        in (forward[0]["messages"][0]["content"])
    )


async def test_without_dataflow_verdicts_the_kept_steps_keep_their_order(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    scripted_llm.on(BACK, json_reply({"plan": "p", "chain": ["search_notes", "share_note", "read_note"]}))
    _script_passing(scripted_llm)
    config = ChainsConfig(dataflow=False, vote_samples=0)
    with pytest.raises(Rejection, match=r"chain_back_translation.*2 needs 1"):
        await ChainsStage(config).process(_seed(notes_server), make_ctx("chains"))


async def test_checks_can_be_switched_off_and_server_only_seeds_pass(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    off = ChainsConfig(dataflow=False, vote_samples=0, back_translation_rounds=0)
    out = await ChainsStage(off).process(_seed(notes_server), make_ctx("chains"))
    assert out.verification is not None and out.verification.votes_total == 0
    server_only = ChainSeed(server=notes_server, origin="server_only", num_tools=2)
    assert await ChainsStage().process(server_only, make_ctx("chains")) == server_only
    assert scripted_llm.chat_requests() == []


def test_recovery_on_the_review_walk_through_library_chain() -> None:
    """search_books -> get_availability -> place_hold; a request naming the pickup branch makes a careful
    planner skip the availability look-up, which no longer kills the chain."""
    chain = ["search_books", "get_availability", "place_hold"]
    flow = [
        ParamSource(step=0, tool="search_books", parameter="query", source="task"),
        ParamSource(step=1, tool="get_availability", parameter="isbn", source="tool_output", from_step=0),
        ParamSource(step=2, tool="place_hold", parameter="member_id", source="task"),
        ParamSource(step=2, tool="place_hold", parameter="isbn", source="tool_output", from_step=0),
        ParamSource(step=2, tool="place_hold", parameter="pickup_branch", source="tool_output", from_step=1),
    ]
    limits = {"max_skipped": 1, "max_extra": 1}
    assert recovery_problem(chain, chain, flow, **limits) is None
    assert recovery_problem(chain, ["search_books", "place_hold"], flow, **limits) is None
    assert recovery_problem(chain, ["search_books", "place_hold", "get_availability"], flow, **limits) == (
        "calls a step before the step it needs (2 needs 1)"
    )
    assert recovery_problem(chain, ["search_books", "place_hold"], flow, max_skipped=0, max_extra=1) == (
        "left out steps ['1:get_availability']"
    )
    assert recovery_problem(chain, [*chain, "list_loans"], flow, **limits) is None
    assert recovery_problem(chain, [*chain, "list_loans", "renew_loan"], flow, **limits) == (
        "added calls ['list_loans', 'renew_loan']"
    )
