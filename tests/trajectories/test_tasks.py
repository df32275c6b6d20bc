"""Task generation: chain-conditioned and server-only, with unusable samples dropped and none → reject."""

from __future__ import annotations

import json

import pytest

from astra_synth.errors import Rejection
from astra_synth.testing.scripted import ScriptedLLM, invalid_json_reply, json_reply, reasoning_overflow_reply
from astra_synth.tools.spec import ServerRecord
from astra_synth.trajectories.records import ChainSeed, ChainVerification
from astra_synth.trajectories.tasks import TaskGenConfig, TasksStage, clean_question, names_a_tool

from .conftest import ContextFactory

CHAIN = ["search_notes", "read_note"]


def test_tool_names_are_found_as_whole_words(notes_server: ServerRecord) -> None:
    assert names_a_tool(notes_server, "Please run Read_Note on my diary") == "read_note"
    assert names_a_tool(notes_server, "read the note about my trip") is None
    assert clean_question("  <question>Find my note</question> ") == "Find my note"
    assert clean_question("<a>x</b>") == "<a>x</b>"


async def test_chain_seed_gives_chain_tasks_with_the_verified_hint(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    scripted_llm.on(
        "exactly these 2 tools",
        json_reply({"server_analysis": "notes", "question": "Find my note about Lisbon and show it to me."}),
        json_reply({"server_analysis": "notes", "question": "Search read_note for Lisbon."}),
    )
    seed = ChainSeed(
        server=notes_server,
        origin="walk",
        chain=CHAIN,
        num_tools=2,
        verification=ChainVerification(implied_task="Look up a note and open it"),
    )
    tasks = await TasksStage().process(seed, make_ctx("tasks"))
    assert [t.question for t in tasks] == ["Find my note about Lisbon and show it to me."]  # 2nd names a tool
    task = tasks[0]
    assert (task.mode, task.target_tools, task.chain, task.chain_origin) == ("chain", CHAIN, CHAIN, "walk")
    assert task.verification is not None
    prompt = scripted_llm.chat_requests()[0]["messages"][0]["content"]
    assert "search_notes -> read_note" in prompt and "Look up a note and open it" in prompt


async def test_server_only_tasks_need_the_requested_number_of_known_tools(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    scripted_llm.on(
        "needs exactly 2 of these tools",
        json_reply({"target_tools": ["search_notes", "erase_disk"], "question": "q1"}),  # schema: re-asked
        json_reply({"target_tools": ["search_notes", "search_notes"], "question": "q2"}),  # not distinct
        json_reply({"target_tools": ["search_notes", "share_note"], "question": "Send Bo my gym plan."}),
    )
    seed = ChainSeed(server=notes_server, origin="server_only", num_tools=2)
    tasks = await TasksStage(TaskGenConfig(samples=2)).process(seed, make_ctx("tasks"))
    schema = scripted_llm.chat_requests()[0]["response_format"]["json_schema"]["schema"]
    assert "erase_disk" not in json.dumps(schema) and "share_note" in json.dumps(schema)
    assert [(t.mode, t.question, t.target_tools) for t in tasks] == [
        ("server", "Send Bo my gym plan.", ["search_notes", "share_note"])
    ]


async def test_no_usable_sample_rejects(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    scripted_llm.on("exactly these", invalid_json_reply())
    seed = ChainSeed(server=notes_server, origin="proposed", chain=CHAIN, num_tools=2)
    with pytest.raises(Rejection, match="no_valid_task"):
        await TasksStage(TaskGenConfig(samples=1)).process(seed, make_ctx("tasks"))


async def test_samples_crowded_out_by_reasoning_reject_with_that_reason(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    scripted_llm.on("exactly these", reasoning_overflow_reply())
    seed = ChainSeed(server=notes_server, origin="proposed", chain=CHAIN, num_tools=2)
    with pytest.raises(Rejection) as info:
        await TasksStage(TaskGenConfig(samples=2)).process(seed, make_ctx("tasks"))
    assert info.value.reason == "truncated_by_reasoning"
