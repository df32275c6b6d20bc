"""Benchmark items for the contamination firewall: what an evaluation set asks, offers and expects.

Every source is reduced to the same record, :class:`BenchmarkItem` (texts, tool docs, golden calls), so the
firewall compares one shape. Sources:

* **BFCL-v3 multi-turn** from the pinned ``bfcl-eval`` (``bfcl.BFCL_EVAL_VERSION``):
  the user turns, the tool docs of the involved classes and the ground-truth calls of the four multi-turn
  categories. Read from the BFCL venv when one is built, else from the pinned wheel, downloaded once
  (``pip download --no-deps``, a few MB) into the cache dir and read as a zip: an export never has to build
  the venv. BFCL is evaluation data: it is only ever *compared against*, never fed to synthesis or training.
* **Files the user points to**, format detected from the content:

  - τ²-bench tasks: a JSON list of ``{id, user_scenario: {instructions: str | {field: str}},
    evaluation_criteria: {actions: [{name, arguments}]}}`` (``tasks.json`` of a domain);
  - tool docs (τ²-bench or any benchmark's tools): a JSON list of OpenAI tools ``{type: function,
    function: {name, parameters}}`` or bare ``{name, parameters}`` docs; for τ²-bench, dump
    ``[t.openai_schema for t in get_environment().get_tools()]`` of a domain;
  - ACEBench: JSON lines (or a JSON list) of ``{id?, question, function: [tool doc], ground_truth?}``, where
    ``question`` is a string or a list of turns of ``{role, content}`` messages (so BFCL-format files load
    too) and ``ground_truth`` is ``{name: {arg: value}}`` or a list of those; answer files
    (``possible_answer/``: ``{id, ground_truth}``) load as call sequences.

  These shapes are our reading of the public repositories (τ²-bench ``data/tau2/domains/*/tasks.json``,
  ACEBench ``data_all/data_en/*.json``); unknown extra fields are ignored, missing required ones are errors
  naming the file, the line or item, and what was expected.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from astra_synth.config import cache_root
from astra_synth.errors import InputError
from astra_synth.evaluation.bfcl import (
    BFCL_EVAL_VERSION,
    CATEGORIES,
    DATA_PREFIX,
    BfclError,
    _run,
    ready_bfcl_venv,
)
from astra_synth.runs.jsonl import describe_errors

BFCL_LABEL = f"bfcl-v3-multi-turn (bfcl-eval {BFCL_EVAL_VERSION})"
_BFCL_CLASS_DOCS = {
    "GorillaFileSystem": "gorilla_file_system.json",
    "MathAPI": "math_api.json",
    "MessageAPI": "message_api.json",
    "TwitterAPI": "posting_api.json",
    "TicketAPI": "ticket_api.json",
    "TradingBot": "trading_bot.json",
    "TravelAPI": "travel_booking.json",
    "VehicleControlAPI": "vehicle_control.json",
}
"""The multi-turn classes and their tool-doc files (BFCL's mapping without the memory/web-search ones)."""


class BenchmarkFormatError(InputError):
    """A benchmark file that fits none of the known formats; the message names file, line or item, and why."""


class ToolDoc(BaseModel):
    """A tool as a benchmark or a dataset offers it; only the name and the parameter schema are compared."""

    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class Call(BaseModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Probe(BaseModel):
    """One item reduced to what contamination is judged on: its texts, its tools and its calls in order."""

    id: str
    texts: list[str] = Field(default_factory=list)
    tools: list[ToolDoc] = Field(default_factory=list)
    calls: list[Call] = Field(default_factory=list)


class BenchmarkItem(Probe):
    benchmark: str = Field(description="Source label, e.g. the BFCL version or tau2:<file>.")


class BenchmarkSource(BaseModel):
    """A loaded source: its label, the items, and a hash of the raw bytes read (keys the index cache)."""

    label: str
    items: list[BenchmarkItem]
    sha256: str


# --- BFCL ---------------------------------------------------------------------------------------------------


def _bfcl_wheel() -> Path:
    """The pinned bfcl-eval wheel in the cache dir, downloaded once (no dependencies, no install)."""
    folder = cache_root() / "bfcl-wheel"
    pattern = f"bfcl_eval-{BFCL_EVAL_VERSION}-*.whl"
    if not (found := sorted(folder.glob(pattern))):
        folder.mkdir(parents=True, exist_ok=True)
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                f"bfcl-eval=={BFCL_EVAL_VERSION}",
                "-d",
                str(folder),
            ],
            f"downloading bfcl-eval=={BFCL_EVAL_VERSION} for the contamination firewall (network to PyPI; "
            "or build the BFCL venv with `make bfcl-venv`, or set contamination.bfcl: false)",
        )
        found = sorted(folder.glob(pattern))
        if not found:
            raise BfclError(f"pip download left no {pattern} in {folder}")
    return found[0]


def _bfcl_reader() -> Callable[[str], str]:
    """Reads a file under ``bfcl_eval/data/`` from the venv if built, else from the wheel."""
    venv = ready_bfcl_venv()
    if venv is not None:
        data_dir = venv.data_dir
        return lambda rel: (data_dir / rel).read_text(encoding="utf-8")
    wheel = _bfcl_wheel()

    def read(rel: str) -> str:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(f"bfcl_eval/data/{rel}").decode("utf-8")

    return read


def _json_lines(text: str, where: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except ValueError as exc:
                raise BenchmarkFormatError(f"{where}:{number}: not a JSON line ({exc})") from exc


def _parse_call(source: str, docs: dict[str, ToolDoc], where: str) -> Call:
    """A BFCL ground-truth call string (``mv(source='a', destination='b')``) as a :class:`Call`; positional
    arguments take the doc's parameter names in order."""
    try:
        node = ast.parse(source.strip(), mode="eval").body
        if not isinstance(node, ast.Call):
            raise ValueError("not a call")
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        params = list(docs[name].parameters.get("properties", {})) if name in docs else []
        arguments = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        for i, arg in enumerate(node.args):
            arguments[params[i] if i < len(params) else f"_{i}"] = ast.literal_eval(arg)
    except (SyntaxError, ValueError) as exc:
        raise BenchmarkFormatError(
            f"{where}: expected a Python call literal, got {source!r} ({exc})"
        ) from exc
    return Call(name=name, arguments=arguments)


def _turn_texts(question: Any) -> list[str]:
    """User texts of a question: a string, or turns (lists) of ``{role, content}`` messages."""
    if isinstance(question, str):
        return [question]
    texts: list[str] = []
    for turn in question if isinstance(question, list) else []:
        for message in turn if isinstance(turn, list) else [turn]:
            if isinstance(message, dict) and message.get("role", "user") == "user":
                content = message.get("content")
                if isinstance(content, str) and content.strip():
                    texts.append(content)
    return texts


def load_bfcl_multi_turn() -> BenchmarkSource:
    """The four BFCL-v3 multi-turn categories of the pinned version, one item per entry."""
    read = _bfcl_reader()
    digest = hashlib.sha256()
    docs: dict[str, list[ToolDoc]] = {}
    for cls, file in _BFCL_CLASS_DOCS.items():
        text = read(f"multi_turn_func_doc/{file}")
        digest.update(text.encode())
        docs[cls] = [ToolDoc.model_validate(d) for _, d in _json_lines(text, file)]
    items: list[BenchmarkItem] = []
    for category in CATEGORIES:
        name = f"{DATA_PREFIX}_{category}.json"
        questions, answers = read(name), read(f"possible_answer/{name}")
        digest.update(questions.encode() + answers.encode())
        truth = {e["id"]: e["ground_truth"] for _, e in _json_lines(answers, f"possible_answer/{name}")}
        for _number, entry in _json_lines(questions, name):
            tools = [t for cls in entry.get("involved_classes", []) for t in docs.get(cls, [])]
            by_name = {t.name: t for t in tools}
            where = f"possible_answer/{name} ({entry['id']})"
            calls = [_parse_call(c, by_name, where) for turn in truth.get(entry["id"], []) for c in turn]
            items.append(
                BenchmarkItem(
                    benchmark=BFCL_LABEL,
                    id=str(entry["id"]),
                    texts=_turn_texts(entry["question"]),
                    tools=tools,
                    calls=calls,
                )
            )
    return BenchmarkSource(label=BFCL_LABEL, items=items, sha256=digest.hexdigest())


# --- user-provided files ------------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _ToolIn(_In):
    name: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)


class _OpenAIToolIn(_In):
    type: Literal["function"]
    function: _ToolIn


class _Tau2Action(_In):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class _Tau2Criteria(_In):
    actions: list[_Tau2Action] | None = None


class _Tau2Scenario(_In):
    instructions: str | dict[str, Any]


class _Tau2Task(_In):
    id: str | int
    user_scenario: _Tau2Scenario
    evaluation_criteria: _Tau2Criteria | None = None


class _AceEntry(_In):
    id: str | int | None = None
    question: str | list[Any] | None = None
    function: list[_ToolIn] = Field(default_factory=list)
    ground_truth: dict[str, Any] | list[Any] | None = None


Format = Literal["tau2-tasks", "tools", "acebench"]


def _validate(model: type[_In], data: Any, where: str, expected: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BenchmarkFormatError(f"{where}: expected {expected}: {describe_errors(exc)}") from exc


def _tool(data: Any, where: str) -> ToolDoc:
    if isinstance(data, dict) and data.get("type") == "function":
        doc = _validate(_OpenAIToolIn, data, where, "an OpenAI tool {type, function: {name, parameters}}")
        return ToolDoc(name=doc.function.name, parameters=doc.function.parameters)
    bare = _validate(_ToolIn, data, where, "a tool doc {name, parameters}")
    return ToolDoc(name=bare.name, parameters=bare.parameters)


def _tau2_item(data: Any, where: str, label: str) -> BenchmarkItem:
    task = _validate(_Tau2Task, data, where, "a τ²-bench task {id, user_scenario: {instructions}, …}")
    instructions = task.user_scenario.instructions
    texts = (
        [instructions]
        if isinstance(instructions, str)
        else [v for k, v in instructions.items() if k != "domain" and isinstance(v, str) and v.strip()]
    )
    actions = (task.evaluation_criteria.actions or []) if task.evaluation_criteria else []
    return BenchmarkItem(
        benchmark=label,
        id=str(task.id),
        texts=texts,
        calls=[Call(name=a.name, arguments=a.arguments) for a in actions],
    )


def _ace_calls(truth: dict[str, Any] | list[Any] | None, where: str) -> list[Call]:
    calls: list[Call] = []
    for part in truth if isinstance(truth, list) else [truth] if truth else []:
        if not isinstance(part, dict):
            raise BenchmarkFormatError(
                f"{where}: expected ground_truth {{name: {{arg: value}}}}, got {part!r}"
            )
        for name, arguments in part.items():
            calls.append(Call(name=name, arguments=arguments if isinstance(arguments, dict) else {}))
    return calls


def _ace_item(data: Any, where: str, label: str, fallback_id: str) -> BenchmarkItem:
    entry = _validate(_AceEntry, data, where, "an ACEBench entry {question, function: [tool doc], …}")
    return BenchmarkItem(
        benchmark=label,
        id=str(entry.id) if entry.id is not None else fallback_id,
        texts=_turn_texts(entry.question),
        tools=[ToolDoc(name=t.name, parameters=t.parameters) for t in entry.function],
        calls=_ace_calls(entry.ground_truth, where),
    )


def _detect(first: Any) -> Format:
    if isinstance(first, dict) and "user_scenario" in first:
        return "tau2-tasks"
    if isinstance(first, dict) and ("question" in first or "ground_truth" in first):
        return "acebench"
    if isinstance(first, dict) and ("function" in first or "parameters" in first):
        return "tools"
    raise BenchmarkFormatError(
        "expected τ²-bench tasks (objects with user_scenario), ACEBench entries or answers (objects with "
        "question or ground_truth) or "
        f"tool docs (objects with function or name + parameters); the first item has keys "
        f"{sorted(first) if isinstance(first, dict) else type(first).__name__}"
    )


def load_benchmark_file(path: Path) -> BenchmarkSource:
    """Items of a user-provided benchmark file (format detected from its first item)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BenchmarkFormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    text = raw.decode("utf-8", errors="replace")
    try:
        whole = json.loads(text)
    except ValueError:  # not one JSON document: JSON lines
        entries = [(f"{path}:{n}", e) for n, e in _json_lines(text, str(path))]
    else:
        if isinstance(whole, dict):  # JSON lines with a single line
            whole = [whole]
        if not isinstance(whole, list):
            raise BenchmarkFormatError(
                f"{path}: expected a JSON list or JSON lines, got a {type(whole).__name__}"
            )
        entries = [(f"{path}: item {i}", e) for i, e in enumerate(whole)]
    if not entries:
        raise BenchmarkFormatError(f"{path}: no items")
    try:
        kind = _detect(entries[0][1])
    except BenchmarkFormatError as exc:
        raise BenchmarkFormatError(f"{entries[0][0]}: {exc}") from None
    label = f"{kind}:{path.name}"
    items: list[BenchmarkItem]
    if kind == "tau2-tasks":
        items = [_tau2_item(e, where, label) for where, e in entries]
    elif kind == "acebench":
        items = [_ace_item(e, where, label, f"{path.name}#{i}") for i, (where, e) in enumerate(entries)]
    else:
        items = [BenchmarkItem(benchmark=label, id=path.name, tools=[_tool(e, w) for w, e in entries])]
    return BenchmarkSource(label=label, items=items, sha256=hashlib.sha256(raw).hexdigest())
