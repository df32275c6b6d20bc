"""Task generation: chain-conditioned and server-only, with unusable samples dropped and none → reject."""

from __future__ import annotations

import json

import pytest

from astra_synth.errors import Rejection
from astra_synth.testing.scripted import ScriptedLLM, invalid_json_reply, json_reply, reasoning_overflow_reply
from astra_synth.tools.spec import ServerRecord
from astra_synth.trajectories.records import ChainSeed, ChainVerification, ParamSource
from astra_synth.trajectories.tasks import TaskGenConfig, TasksStage, clean_question, names_a_tool

from .conftest import ContextFactory

CHAIN = ["search_notes", "read_note"]


def test_tool_names_are_found_as_whole_words(notes_server: ServerRecord) -> None:
    assert names_a_tool(notes_server, "Please run Read_Note on my diary") == "read_note"
    assert names_a_tool(notes_server, "read the note about my trip") is None
    assert clean_question("  <question>Find my note</question> ") == "Find my note"


def test_a_single_word_tool_name_counts_only_when_written_as_code(notes_server: ServerRecord) -> None:
    tools = [notes_server.tools[0].model_copy(update={"name": n}) for n in ("search", "getWeather")]
    server = notes_server.model_copy(update={"tools": tools})
    assert names_a_tool(server, "Search for my notes about Lisbon and translate them") is None
    assert names_a_tool(server, "Run `search` on Lisbon") == "search"
    assert names_a_tool(server, "call search(Lisbon) for me") == "search"
    assert names_a_tool(server, "use getweather for Porto") == "getWeather"


async def test_the_chain_prompt_asks_for_the_values_of_every_tool_not_only_the_first(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    chain = ["search_notes", "share_note"]
    scripted_llm.on("exactly these 2 tools", json_reply({"question": "Send Ann (ann@x.org) my Lisbon note."}))
    flow = [
        ParamSource(step=0, tool="search_notes", parameter="query", source="task"),
        ParamSource(step=1, tool="share_note", parameter="note_id", source="tool_output", from_step=0),
        ParamSource(step=1, tool="share_note", parameter="email", source="task"),
    ]
    seed = ChainSeed(
        server=notes_server,
        origin="walk",
        chain=chain,
        num_tools=2,
        verification=ChainVerification(dataflow=flow),
    )
    await TasksStage().process(seed, make_ctx("tasks"))
    prompt = scripted_llm.chat_requests()[0]["messages"][0]["content"]
    assert "not only the first one's" in prompt
    assert "- State in the request the value of every one of: search_notes.query, share_note.email." in prompt
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
