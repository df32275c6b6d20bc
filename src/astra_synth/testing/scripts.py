"""Scripted "competent model" answers and small configs for both pipelines, shared by the tests that run a
pipeline end to end against :class:`~astra_synth.testing.scripted.ScriptedLLM` (see docs/testing.md).

Pipeline A (trajectories): :func:`notes_server`, :func:`trajectories_config`, :func:`answer_trajectories`,
and records as its stages produce them (:func:`notes_trajectory`, :func:`judged_notes_trajectory`).
Pipeline B (arenas): :func:`script_arenas`, :func:`arenas_config`, and :func:`script_porto` (the bundled
Porto seed as a careful strong model answers it: prose answers, mixed number spellings). Every prompt is
answered as a good model would, so a run finishes with known counts; tests change one answer to exercise a
filter.
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


def arenas_config(
    server: ScriptedLLM, directory: Path, sources: list[SeedSource] | None = None, **kw: Any
) -> ArenasConfig:
    """A pipeline B config on ``server`` (scripted with :func:`script_arenas`): two plain travel seeds unless
    ``sources`` names others, the subprocess sandbox, every verified instance kept, the cache at
    ``directory/cache.sqlite`` (shared by every run of the test, so a rerun elsewhere costs zero calls);
    ``kw`` sets more fields."""
    plain = [SeedSource(mode="plain", domain="Travel", min_hops=3, max_hops=3, repeats=2)]
    return ArenasConfig(
        endpoint=server.endpoint(schema_mode="llama_cpp"),
        cache_path=directory / "cache.sqlite",
        executor="subprocess",
        qa={"sources": plain if sources is None else sources},
        selection={"percentile": 0},
        **kw,
    )


# --- pipeline B: the Porto seed, answered as a careful strong model would (docs/prompt review) ----------

PORTO_QA = {
    "main_question": (
        "What is the total price in USD of 3 nights at the cheapest 4-star hotel in Porto from 12 to 15 May "
        "2026, converted at the exchange rate of that day?"
    ),
    "final_answer": (
        "Hotel Carris Porto Ribeira at 118 EUR per night; 3 nights cost 354 EUR, which at 1.0865 USD per EUR "
        "on 12 May 2026 is 384.62 USD."
    ),
    "sub_questions": [
        {
            "id": 1,
            "question": (
                "Which is the cheapest 4-star hotel in Porto for 12-15 May 2026, and what is its nightly "
                "rate?"
            ),
            "answer": "Hotel Carris Porto Ribeira, 118 EUR per night",
            "depends_on": [],
            "hop_level": 1,
        },
        {
            "id": 2,
            "question": "What is the EUR to USD exchange rate on 12 May 2026?",
            "answer": "1.0865",
            "depends_on": [],
            "hop_level": 1,
        },
        {
            "id": 3,
            "question": "What is the total for 3 nights at 118 EUR per night?",
            "answer": "354 EUR",
            "depends_on": [1],
            "hop_level": 2,
        },
        {
            "id": 4,
            "question": "How much is 354 EUR in USD at 1.0865 USD per EUR?",
            "answer": "384.62 USD",
            "depends_on": [2, 3],
            "hop_level": 3,
        },
    ],
}
_CURRENCY = ["EUR", "USD", "GBP"]


def _param(name: str, kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "description": description, **extra}


# Per sub-question: (a phrase of its question, tool document, the call as the model writes it, code).
# The calls mix number spellings as models do: an int where a rate is integral, 354.0 copied from a total.
PORTO_TOOLS: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    (
        "cheapest 4-star hotel",
        {
            "name": "search_hotels",
            "description": "Find the cheapest hotel in a city for a stay, optionally of a given star rating.",
            "parameters": [
                _param("city", "string", "City name"),
                _param("check_in", "string", "Check-in date, YYYY-MM-DD"),
                _param("check_out", "string", "Check-out date, YYYY-MM-DD"),
                _param("stars", "integer", "Star rating", required=False),
            ],
        },
        {"city": "Porto", "check_in": "2026-05-12", "check_out": "2026-05-15", "stars": 4},
        """def search_hotels(city, check_in, check_out, stars=None):
    import datetime
    hotels = {
        "porto": [("Hotel Carris Porto Ribeira", 4, 118), ("Pestana Vintage Porto", 5, 205),
                  ("Hotel da Bolsa", 3, 84), ("Eurostars Porto Douro", 4, 131)],
        "lisbon": [("Hotel Avenida Palace", 5, 240), ("Hotel Lisboa Plaza", 4, 142)],
    }
    key = city.strip().lower()
    if key not in hotels:
        raise ValueError(f"unknown city: {city}")
    start = datetime.date.fromisoformat(check_in)
    end = datetime.date.fromisoformat(check_out)
    if end <= start:
        raise ValueError("check_out must be after check_in")
    found = [h for h in hotels[key] if stars is None or h[1] == stars]
    if not found:
        raise ValueError(f"no {stars}-star hotel in {city}")
    name, grade, rate = min(found, key=lambda h: h[2])
    return {"hotel": name, "stars": grade, "nightly_rate": rate, "currency": "EUR",
            "summary": f"{name}, {rate} EUR per night"}
""",
    ),
    (
        "exchange rate on",
        {
            "name": "get_exchange_rate",
            "description": "The reference exchange rate between two currencies on a date.",
            "parameters": [
                _param("base_currency", "string", "Currency converted from", enum=_CURRENCY),
                _param("quote_currency", "string", "Currency converted to", enum=_CURRENCY),
                _param("date", "string", "Date, YYYY-MM-DD"),
            ],
        },
        {"base_currency": "EUR", "quote_currency": "USD", "date": "2026-05-12"},
        """def get_exchange_rate(base_currency, quote_currency, date):
    import datetime
    rates = {("EUR", "USD", "2026-05-12"): 1.0865, ("EUR", "USD", "2026-05-11"): 1.0841,
             ("EUR", "GBP", "2026-05-12"): 0.8563, ("USD", "EUR", "2026-05-12"): 0.9204}
    day = datetime.date.fromisoformat(date).isoformat()
    key = (base_currency.upper(), quote_currency.upper(), day)
    if key not in rates:
        raise ValueError(f"no rate for {base_currency}/{quote_currency} on {date}")
    return {"base": key[0], "quote": key[1], "date": day, "rate": rates[key]}
""",
    ),
    (
        "total for 3 nights",
        {
            "name": "calculate_stay_cost",
            "description": "Total cost of a hotel stay from its nightly rate and the number of nights.",
            "parameters": [
                _param("nightly_rate", "number", "Rate per night"),
                _param("nights", "integer", "Number of nights"),
                _param("currency", "string", "Currency of the rate", enum=_CURRENCY),
            ],
        },
        {"nightly_rate": 118, "nights": 3, "currency": "EUR"},
        """def calculate_stay_cost(nightly_rate, nights, currency):
    if currency not in ("EUR", "USD", "GBP"):
        raise ValueError(f"unknown currency: {currency}")
    if nightly_rate <= 0 or nights < 1:
        raise ValueError("the rate and the number of nights must be positive")
    total = round(nightly_rate * nights, 2)
    return {"total": total, "currency": currency, "summary": f"{total:.2f} {currency}"}
""",
    ),
    (
        "in USD at",
        {
            "name": "convert_amount",
            "description": "Convert an amount of money at a given exchange rate.",
            "parameters": [
                _param("amount", "number", "Amount to convert"),
                _param("rate", "number", "Units of the target currency per unit of the amount's currency"),
                _param("target_currency", "string", "Currency converted to", enum=_CURRENCY),
            ],
        },
        {"amount": 354.0, "rate": 1.0865, "target_currency": "USD"},
        """def convert_amount(amount, rate, target_currency):
    if target_currency not in ("EUR", "USD", "GBP"):
        raise ValueError(f"unknown currency: {target_currency}")
    if amount < 0 or rate <= 0:
        raise ValueError("the amount must be non-negative and the rate positive")
    converted = round(amount * rate, 2)
    return {"amount": converted, "currency": target_currency, "summary": f"{converted:.2f} {target_currency}"}
""",
    ),
]


def _porto_tool(body: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any], str]:
    """The Porto tool a prompt is about: by its sub-question, or by its tool name once documented."""
    text = body["messages"][0]["content"]
    question = text.split("Question:")[-1].strip().split("\n")[0]  # not the parents' questions after it
    for tool in PORTO_TOOLS:
        if tool[0] in question:
            return tool
    for tool in PORTO_TOOLS:
        if f'"{tool[1]["name"]}"' in text or f"`{tool[1]['name']}`" in text:
            return tool
    raise AssertionError(f"no Porto tool for prompt: {text[:300]}")


def script_porto(server: ScriptedLLM, qa: dict[str, Any] = PORTO_QA) -> None:
    """A careful strong model on the bundled Porto seed (``examples/seeds/questions.en.jsonl``, first line):
    prose answers with units, four tools (two lookups, two calculators), ints where a number is integral,
    code that formats money. ``qa`` replaces the QA reply (e.g. one with arithmetic slips)."""
    server.on("You write realistic, multi-step user requests", json_reply(qa))
    kinds = ["lookup", "lookup", "compute", "compute"]
    server.on(
        "You decide, for each sub-question",
        json_reply(
            {"decisions": [{"id": f"q{i}", "needs_tool": True, "kind": k} for i, k in enumerate(kinds, 1)]}
        ),
    )
    for prompt in (
        "You check the dependency links",
        "You check that each sub-question",
        "You check the execution",
    ):
        server.on(prompt, _verdicts)
    server.on("You check whether the sub-questions", json_reply({"complete": True}))
    server.on("You design one reusable API tool", lambda body: json_reply(_porto_tool(body)[1]))
    server.on("You refine an API tool document", lambda body: json_reply(_porto_tool(body)[1]))
    server.on("Write the call of the tool below", lambda body: json_reply(_porto_tool(body)[2]))
    server.on("Implement the API tool below", lambda body: json_reply({"code": _porto_tool(body)[3]}))
    server.on(
        "You group the sub-questions",
        json_reply(
            {"clusters": [{"intent": t[1]["name"], "ids": [f"q{i}"]} for i, t in enumerate(PORTO_TOOLS, 1)]}
        ),
    )
