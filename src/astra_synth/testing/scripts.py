"""Scripted "competent model" answers and small configs for both pipelines, shared by the tests that run a
pipeline end to end against :class:`~astra_synth.testing.scripted.ScriptedLLM` (see docs/testing.md).

Pipeline A (trajectories): :func:`notes_server`, :func:`trajectories_config`, :func:`answer_trajectories`,
and records as its stages produce them (:func:`notes_trajectory`, :func:`judged_notes_trajectory`).
Pipeline B (arenas): :func:`script_arenas`, :func:`arenas_config`. Every prompt is answered as a good model
would, so a run finishes with known counts; tests change one answer to exercise a filter.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from astra_synth.arenas.pipeline import ArenasConfig
from astra_synth.arenas.seeds import SeedSource
from astra_synth.testing.scripted import Reply, ScriptedLLM, json_reply, text_reply, tool_call_reply
from astra_synth.tools.registry import write_servers
from astra_synth.tools.spec import ServerRecord, ToolSpec
from astra_synth.trajectories.judge import DIMENSIONS, DimensionResult, JudgedTrajectory, JudgeReport
from astra_synth.trajectories.records import Rating, Task, TaskScores, Trajectory

# --- pipeline A -------------------------------------------------------------------------------------------


def _tool(name: str, description: str, **params: str) -> ToolSpec:
    required = [p for p in params if not p.startswith("opt_")]
    return ToolSpec(
        name=name,
        description=description,
        parameters={
            "type": "object",
            "properties": {p: {"type": "string", "description": d} for p, d in params.items()},
            "required": required,
        },
    )


def notes_server() -> ServerRecord:
    """A four-tool note-taking service (search → read → update/share is a natural chain), the server that
    :func:`answer_trajectories` plays."""
    return ServerRecord(
        id="notes",
        title="Notes",
        description="A personal note-taking service.",
        domain="productivity",
        tools=[
            _tool("search_notes", "Find notes whose text matches a query; returns note ids.", query="Words"),
            _tool("read_note", "Return the title and text of a note.", note_id="Id from search_notes"),
            _tool("update_note", "Replace the text of a note.", note_id="Note id", text="New text"),
            _tool("share_note", "Share a note with a person by email.", note_id="Note id", email="Address"),
        ],
    )


PERSONA = {
    "id": "p01",
    "age": 34,
    "occupation": "nurse",
    "education": "nursing degree",
    "description": "Writes short messages from her phone between shifts.",
    "skills": ["triage"],
    "interests": ["travel"],
}
"""The one persona :func:`trajectories_config` gives the augment stage."""


CHAIN = ["search_notes", "read_note"]
GOOD_SCORES = {
    "question_quality": "excellent",
    "scenario_realism": "realistic",
    "tool_necessity": "essential",
    "selection_difficulty": "medium",
    "selection_uniqueness": "quite unique",
}


def _ids(body: dict[str, Any], pattern: str) -> list[str]:
    """Call ids / round ids named in the judge prompt, so the scripted judge answers every one."""
    text = body["messages"][0]["content"]
    if pattern == "calls":
        return list(dict.fromkeys(re.findall(r"call (call_\w+):", text)))
    return re.findall(r"^(r\d+): message", text, re.MULTILINE)


def answer_trajectories(body: dict[str, Any]) -> Reply | dict[str, Any]:
    """A competent model for pipeline A: every prompt type answered in its schema (set it as
    ``ScriptedLLM.handler``); the rollout agent searches, then reads the Lisbon note of
    :func:`notes_server`."""
    first = body["messages"][0]["content"]
    last = body["messages"][-1]
    if first.startswith("You are a capable assistant"):  # the rollout agent
        if last["role"] == "user":
            return tool_call_reply(("search_notes", {"query": "Lisbon"}))
        if "read_note" not in json.dumps(body["messages"]):
            return tool_call_reply(("read_note", {"note_id": "n7"}))
        return text_reply("Your Lisbon note says: book the tram tour.")
    if first.startswith("You simulate a real software service"):
        ids = (
            {"ids": ["n7"]} if "search_notes(" in body["messages"][1]["content"].split("call:")[-1] else None
        )
        return {"status": "ok", "result": ids or {"title": "Lisbon", "text": "book the tram tour"}}
    table: list[tuple[str, Any]] = [
        ("Propose up to", {"chains": [{"task": "Open my Lisbon note", "chain": CHAIN}]}),
        (
            "every required argument",
            {
                "parameters": [
                    {"step": 0, "tool": "search_notes", "parameter": "query", "source": "task"},
                    {
                        "step": 1,
                        "tool": "read_note",
                        "parameter": "note_id",
                        "source": "tool_output",
                        "from_step": 0,
                    },
                ]
            },
        ),
        ("You review a workflow", {"is_valid": True, "task": "Open my Lisbon note"}),
        ("Someone called these tools", {"valid": True, "query": "Show me my note about Lisbon."}),
        ("A user asks:", {"plan": "search then read", "chain": CHAIN}),
        (
            "exactly these 2 tools",
            {"server_analysis": "notes", "question": "Show me what my Lisbon note says."},
        ),
        (
            "needs exactly 2 of these tools",
            {"target_tools": CHAIN, "question": "What did I write about Porto?"},
        ),
        (
            "completely different situations",
            {"variations": [{"question": "Show me what my sourdough note says."}]},
        ),
        ("harder versions", {"variations": [{"question": "Before 5pm, show me my Lisbon note."}]}),
        ("as this person would write it", {"variations": [{"question": "hey, what's in my lisbon note"}]}),
        ("You rate a user request", {d: {"rating": v} for d, v in GOOD_SCORES.items()}),
        ("Judge only its FIRST", {"verdict": "pass"}),
        ("Judge its INITIAL PLAN", {"verdict": "pass"}),
        ("must show that it understood", {"rounds": [{"id": i, "verdict": "pass"} for i in _ids(body, "r")]}),
        ("after having seen", {"rounds": [{"id": i, "verdict": "pass"} for i in _ids(body, "r")]}),
        (
            "outcome of each tool call",
            {"calls": [{"id": i, "status": "success"} for i in _ids(body, "calls")]},
        ),
        ("was necessary", {"calls": [{"id": i, "necessary": True} for i in _ids(body, "calls")]}),
        ("You grade the final answer", {"correctness": "pass", "summary": "pass"}),
    ]
    for marker, answer in table:
        if marker in first:
            return json_reply(answer)
    raise AssertionError(f"unscripted prompt: {first[:200]}")


def trajectories_config(directory: Path, server: ServerRecord, **overrides: Any) -> Path:
    """Write a small pipeline A config (YAML) for ``server`` into ``directory`` and return its path: the
    server registry, one persona, three walks, one augmentation per mode, no emulated failures; ``overrides``
    replace top-level keys."""
    write_servers(directory / "servers.jsonl", [server])
    personas = directory / "personas.jsonl"
    personas.write_text(json.dumps(PERSONA) + "\n", encoding="utf-8")
    data: dict[str, Any] = {
        "servers": "servers.jsonl",
        "concurrency": 4,
        "graph": {"max_walks_per_server": 3, "server_only_tool_counts": [2]},
        "augment": {"personas": str(personas), "variations": 1},
        "emulator": {"failure_rate": 0.0},
        **overrides,
    }
    path = directory / "traj.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _tool_call(call_id: str, name: str, args: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def notes_trajectory(
    server: ServerRecord, final: str = "Your Lisbon note says: book the tram tour."
) -> Trajectory:
    """A completed rollout on :func:`notes_server`: search, read, then ``final`` as the answer."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What does my note about Lisbon say?"},
        {
            "role": "assistant",
            "content": "I'll search.",
            "tool_calls": [_tool_call("c1", "search_notes", '{"query": "Lisbon"}')],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '["n7"]'},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [_tool_call("c2", "read_note", '{"note_id": "n7"}')],
        },
        {
            "role": "tool",
            "tool_call_id": "c2",
            "content": '{"title": "Lisbon", "text": "book the tram tour"}',
        },
        {"role": "assistant", "content": final},
    ]
    task = Task(
        server=server,
        mode="chain",
        question=messages[1]["content"],
        target_tools=["search_notes", "read_note"],
        chain=["search_notes", "read_note"],
        chain_origin="walk",
    )
    return Trajectory(
        task=task,
        messages=messages,
        tools=[t.openai() for t in server.tools],
        status="completed",
        llm_calls=3,
        tool_calls=2,
    )


def judged_notes_trajectory(
    server: ServerRecord, final: str = "Your Lisbon note says: book the tram tour."
) -> JudgedTrajectory:
    """A judged trajectory as the export receives it: every score set, one dimension not applicable."""
    trajectory = notes_trajectory(server, final)
    trajectory.messages[4]["reasoning_content"] = "The search returned n7; read it."
    trajectory.messages[2]["tool_calls"][0]["function"]["arguments"] = {"query": "Lisbon"}  # an object
    rating = Rating(score=4, level="good")
    task = trajectory.task.model_copy(
        update={"scores": TaskScores(**dict.fromkeys(TaskScores.model_fields, rating))}
    )
    dims = {d: DimensionResult(status="scored", score=1.0) for d in DIMENSIONS}
    dims["tool_context_planning"] = DimensionResult(status="not_applicable")
    judge = JudgeReport(dimensions=dims, overall=1.0, threshold=0.8)
    return JudgedTrajectory(**trajectory.model_dump(exclude={"task"}), task=task, judge=judge)


# --- pipeline B -------------------------------------------------------------------------------------------

QA = {
    "main_question": "Which hotel is cheaper on 12 May 2026, Hotel Aurora or Casa Azul?",
    "final_answer": "Casa Azul (95 EUR) is cheaper than Hotel Aurora (150 EUR).",
    "sub_questions": [
        {
            "id": 1,
            "question": "What is the nightly rate of Hotel Aurora on 2026-05-12?",
            "answer": "150 EUR",
            "depends_on": [],
            "hop_level": 1,
        },
        {
            "id": 2,
            "question": "What is the nightly rate of Casa Azul on 2026-05-12?",
            "answer": "95 EUR",
            "depends_on": [],
            "hop_level": 1,
        },
        {
            "id": 3,
            "question": "Which of the two rates is lower?",
            "answer": "Casa Azul",
            "depends_on": [1, 2],
            "hop_level": 2,
        },
    ],
}
DOC: dict[str, Any] = {
    "name": "get_hotel_rate",
    "description": "Nightly rate of a hotel on a date, in EUR.",
    "parameters": [
        {"name": "hotel", "type": "string", "description": "Hotel name"},
        {"name": "date", "type": "string", "description": "Date, YYYY-MM-DD"},
    ],
}


def _code(table: dict[str, int]) -> str:
    return (
        "def get_hotel_rate(hotel, date):\n"
        f"    rates = {table!r}\n"
        "    if hotel not in rates or date != '2026-05-12':\n"
        "        raise ValueError(f'no rate for {hotel} on {date}')\n"
        "    return {'hotel': hotel, 'rate': f'{rates[hotel]} EUR'}\n"
    )


def _verdicts(body: dict[str, Any]) -> Reply:
    ids = body["response_format"]["schema"]["$defs"]["Verdict"]["properties"]["id"]["enum"]
    return json_reply({"verdicts": [{"id": i, "ok": True} for i in ids]})


def _call(body: dict[str, Any]) -> Reply:
    question = body["messages"][0]["content"].split("Question:")[1]
    hotel = "Casa Azul" if "Casa Azul" in question else "Hotel Aurora"
    return json_reply({"hotel": hotel, "date": "2026-05-12"})


def script_arenas(server: ScriptedLLM) -> None:
    """A competent model for pipeline B: one hotel-rate question, its tool document, code and checks."""
    server.on("You write realistic, multi-step user requests", json_reply(QA))
    server.on(
        "You decide, for each sub-question",
        json_reply(
            {
                "decisions": [
                    {"id": "q1", "needs_tool": True},
                    {"id": "q2", "needs_tool": True},
                    {"id": "q3", "needs_tool": False},
                ]
            }
        ),
    )
    for prompt in (
        "You check the dependency links",
        "You check that each sub-question",
        "You check the execution",
    ):
        server.on(prompt, _verdicts)
    server.on("You check whether the sub-questions", json_reply({"complete": True}))
    server.on("You design one reusable API tool", json_reply(DOC))
    server.on("You refine an API tool document", json_reply(DOC))
    server.on("Write the call of the tool below", _call)
    server.on(
        "Implement the API tool below",
        json_reply({"code": _code({"Hotel Aurora": 150, "Casa Azul": 95, "Inn": 60})}),
    )
    server.on(
        "You group the sub-questions", json_reply({"clusters": [{"intent": "rate", "ids": ["q1", "q2"]}]})
    )
    server.on(
        "Extend ONLY its data", json_reply({"code": _code({"Hotel Aurora": 150, "Casa Azul": 95, "Inn": 60})})
    )
    server.on(
        "One tool now serves several",
        json_reply({"description": "Nightly rate of a listed hotel on a date."}),
    )


def arenas_config(server: ScriptedLLM, directory: Path, **kw: Any) -> ArenasConfig:
    """A pipeline B config on ``server`` (scripted with :func:`script_arenas`): two plain travel seeds, the
    subprocess sandbox, every verified instance kept, the cache at ``directory/cache.sqlite`` (shared by
    every run of the test, so a rerun elsewhere costs zero calls); ``kw`` sets more fields."""
    return ArenasConfig(
        endpoint=server.endpoint(schema_mode="llama_cpp"),
        cache_path=directory / "cache.sqlite",
        executor="subprocess",
        qa={"sources": [SeedSource(mode="plain", domain="Travel", min_hops=3, max_hops=3, repeats=2)]},
        selection={"percentile": 0},
        **kw,
    )
