"""Contamination firewall: planted near-copies of real BFCL-v3 multi-turn tasks, tools and golden calls are
caught with the right reason, τ²-bench / ACEBench files work as benchmarks, clean project data passes, and
the CLI's exit codes say which happened."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from astra_synth.arenas.records import Arena, ChatMessage, read_arenas, write_arenas
from astra_synth.cli import app
from astra_synth.config import ContaminationConfig
from astra_synth.evaluation.bfcl import BFCL_EVAL_VERSION, ready_bfcl_venv
from astra_synth.firewall import benchmarks
from astra_synth.firewall.benchmarks import (
    BenchmarkFormatError,
    BenchmarkItem,
    BenchmarkSource,
    Call,
    Probe,
    ToolDoc,
    load_benchmark_file,
    load_bfcl_multi_turn,
)
from astra_synth.firewall.contamination import Firewall
from astra_synth.firewall.index import BenchmarkIndex, cached_index, make_embedder
from astra_synth.firewall.probes import arena_probe, chat_probe
from astra_synth.firewall.signals import Signal
from astra_synth.llm.embeddings import Embedder, VectorCache
from astra_synth.testing.scripts import notes_server, notes_trajectory

NGRAM_ONLY = ContaminationConfig(embedder="none")
SAMPLE = Path(__file__).parents[2] / "examples" / "arenas.sample.jsonl"


@pytest.fixture(scope="module")
def sample_arenas() -> list[Arena]:
    return read_arenas(SAMPLE)


@pytest.fixture(scope="module")
def bfcl() -> BenchmarkSource:
    return load_bfcl_multi_turn()


@pytest.fixture(scope="module")
def items(bfcl: BenchmarkSource) -> dict[str, BenchmarkItem]:
    return {i.id: i for i in bfcl.items}


@pytest.fixture(scope="module")
def firewall(bfcl: BenchmarkSource) -> Firewall:
    """Every BFCL multi-turn item, n-grams only (the embedding check has its own tests)."""
    return Firewall(BenchmarkIndex.build([bfcl], NGRAM_ONLY), NGRAM_ONLY, None, progress=False)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    pytest.importorskip("sentence_transformers")
    loaded = make_embedder("local")
    assert loaded is not None
    return loaded


def _reasons(firewall: Firewall, *probes: Probe) -> dict[str, Signal]:
    return {v.id: v.reason for v in firewall.check(probes).verdicts}


def _tool(items: dict[str, BenchmarkItem], name: str) -> ToolDoc:
    return next(t for i in items.values() for t in i.tools if t.name == name)


def _reworded(tool: ToolDoc, name: str) -> dict[str, Any]:
    """The tool as an OpenAI tool under ``name``: properties and ``required`` reversed, every description
    rewritten, BFCL's ``dict`` type spelled ``object``."""
    props = tool.parameters["properties"]
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": "Reworded description.",
            "parameters": {
                "type": "object",
                "properties": {k: {**v, "description": f"the {k}"} for k, v in reversed(list(props.items()))},
                "required": list(reversed(tool.parameters.get("required", []))),
            },
        },
    }


# --- BFCL: tasks, tools, calls ---


def test_bfcl_loads_all_four_multi_turn_categories(bfcl: BenchmarkSource) -> None:
    assert len(bfcl.items) == 800
    base0 = next(i for i in bfcl.items if i.id == "multi_turn_base_0")
    assert base0.texts[0].startswith("Move 'final_report.pdf'")
    assert base0.calls[:2] == [
        Call(name="cd", arguments={"folder": "document"}),
        Call(name="mkdir", arguments={"dir_name": "temp"}),
    ]
    sort_call = next(
        c for c in base0.calls if c.name == "sort"
    )  # positional in BFCL: sort('final_report.pdf')
    assert sort_call.arguments == {"file_name": "final_report.pdf"}
    assert {t.name for t in base0.tools} >= {"cd", "grep", "post_tweet"}


def test_without_a_venv_bfcl_is_read_from_the_pinned_wheel(
    bfcl: BenchmarkSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh machine reads BFCL straight from the wheel's zip; this one holds the venv, so the test zips
    the venv's data files in the wheel's layout where the download would have put it."""
    venv = ready_bfcl_venv()
    if venv is None:
        pytest.skip("no BFCL venv to take the data from (make bfcl-venv)")
    folder = tmp_path / "bfcl-wheel"
    folder.mkdir()
    with zipfile.ZipFile(folder / f"bfcl_eval-{BFCL_EVAL_VERSION}-py3-none-any.whl", "w") as zf:
        for path in venv.data_dir.rglob("*.json"):
            if "multi_turn" in str(rel := path.relative_to(venv.data_dir)):
                zf.write(path, f"bfcl_eval/data/{rel}")
    monkeypatch.setenv("ASTRA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(benchmarks, "ready_bfcl_venv", lambda: None)
    assert load_bfcl_multi_turn() == bfcl


def test_planted_task_with_small_edits_is_caught_by_ngrams(
    firewall: Firewall, items: dict[str, BenchmarkItem]
) -> None:
    original = " ".join(items["multi_turn_base_1"].texts)
    planted = original.replace("the", "that", 2).replace("Could you", "Can you")
    assert planted != original
    report = firewall.check([Probe(id="planted", texts=["Hi! " + planted])])
    assert report.dropped_ids == {"planted"}
    (verdict,) = report.verdicts
    assert verdict.reason == "text_ngram"
    matched = items[verdict.hits[0].ref.split("#")[1]]  # base_1 or a variant of it in another category
    assert matched.texts[0] == items["multi_turn_base_1"].texts[0]
    assert verdict.hits[0].score >= NGRAM_ONLY.ngram_containment


def test_one_borrowed_phrase_is_not_contamination(
    firewall: Firewall, items: dict[str, BenchmarkItem]
) -> None:
    phrase = " ".join(items["multi_turn_base_0"].texts[0].split()[:9])  # one 8-gram and a bit
    text = f"{phrase} and then summarise the quarterly numbers for the finance team in a short table please"
    assert _reasons(firewall, Probe(id="p", texts=[text])) == {}


def test_renamed_reordered_gorilla_file_system_tools_are_caught(
    firewall: Firewall, items: dict[str, BenchmarkItem]
) -> None:
    """Three GorillaFileSystem tools under namespaced names with reordered, reworded schemas: each alone is
    too generic to count (``grep(file_name, pattern)``), three of them are that API."""
    tools = [_reworded(_tool(items, n), f"gorilla_fs__{n}") for n in ("grep", "tail", "diff")]
    copied = chat_probe("copied-fs", [], tools)
    one = chat_probe("one-fs-tool", [], tools[:1])
    assert _reasons(firewall, copied, one) == {"copied-fs": "tool_overlap"}


def test_distinctive_tool_caught_by_signature_and_renamed_one_by_schema(
    firewall: Firewall, items: dict[str, BenchmarkItem]
) -> None:
    book = _tool(items, "book_flight")
    same_name = chat_probe("camel", [], [_reworded(book, "TravelAPI.BookFlight")])
    renamed = chat_probe("renamed", [], [_reworded(book, "reserve_plane_seat")])
    assert _reasons(firewall, same_name, renamed) == {"camel": "tool_signature", "renamed": "tool_schema"}


def test_golden_call_sequence_needs_three_matching_calls(
    firewall: Firewall, items: dict[str, BenchmarkItem]
) -> None:
    calls = items["multi_turn_base_0"].calls[:3]  # cd(document) → mkdir(temp) → mv(final_report.pdf, temp)
    shouted = [
        Call(name=c.name, arguments={k: str(v).upper() for k, v in c.arguments.items()}) for c in calls
    ]
    other_args = [*calls[:2], Call(name=calls[2].name, arguments={"source": "x.txt", "destination": "temp"})]
    probes = [
        Probe(id="copied", calls=shouted),
        Probe(id="two-calls", calls=calls[:2]),
        Probe(id="other-arguments", calls=other_args),
    ]
    report = firewall.check(probes)
    assert {v.id: v.reason for v in report.verdicts} == {"copied": "call_sequence"}
    assert report.verdicts[0].hits[0].detail == "cd → mkdir → mv"


def test_paraphrase_is_caught_by_embeddings_not_by_ngrams(
    bfcl: BenchmarkSource, embedder: Embedder, tmp_path: Path
) -> None:
    """A reworded request shares few 8-grams; its embedding still sits next to the original's."""
    subset = BenchmarkSource(label=bfcl.label, items=bfcl.items[:5], sha256="subset")
    config = ContaminationConfig()
    fw = Firewall(
        BenchmarkIndex.build([subset], config), config, embedder, VectorCache(tmp_path), progress=False
    )
    paraphrase = (
        "Please move the file 'final_report.pdf' inside the document directory into a 'temp' directory "
        "within document. Make sure the directory gets created"
    )
    unrelated = "How many minutes does flight TP 207 from Lisbon to Boston take according to its schedule?"
    report = fw.check([Probe(id="para", texts=[paraphrase]), Probe(id="clean", texts=[unrelated])])
    assert report.summary.method == "ngram+local:all-MiniLM-L6-v2"
    (verdict,) = report.verdicts
    assert verdict.id == "para" and [h.signal for h in verdict.hits] == ["text_embedding"]
    assert verdict.hits[0].ref.endswith("#multi_turn_base_0") and verdict.hits[0].score >= 0.9


# --- clean project data ---


def test_clean_sample_arenas_and_trajectories_pass_with_embeddings(
    bfcl: BenchmarkSource, embedder: Embedder, sample_arenas: list[Arena], tmp_path: Path
) -> None:
    """The full check (all of BFCL, embeddings on; vectors cached per machine) drops nothing of ours."""
    config = ContaminationConfig()
    fw = Firewall(cached_index([bfcl], config, tmp_path), config, embedder, progress=False)
    trajectory = notes_trajectory(notes_server())
    probes = [arena_probe(a) for a in sample_arenas]
    probes.append(chat_probe("notes", trajectory.messages, trajectory.tools))
    report = fw.check(probes)
    assert report.summary.checked == len(sample_arenas) + 1
    assert report.summary.dropped == 0 and report.verdicts == []
    assert any(p.calls for p in probes) and all(p.texts and p.tools for p in probes)


def test_index_is_cached_by_content(bfcl: BenchmarkSource, tmp_path: Path) -> None:
    first = cached_index([bfcl], NGRAM_ONLY, tmp_path)
    (path,) = tmp_path.glob("index-*.json")
    assert cached_index([bfcl], NGRAM_ONLY, tmp_path) == first
    other = cached_index([bfcl], ContaminationConfig(embedder="none", ngram=13), tmp_path)
    assert other.key != first.key and len(list(tmp_path.glob("index-*.json"))) == 2
    assert path.name == f"index-{first.key}.json"


# --- τ²-bench, ACEBench and tool-doc files ---

TAU2_TASKS = [
    {
        "id": "7",
        "description": {"purpose": "exchange"},
        "user_scenario": {
            "persona": None,
            "instructions": {
                "domain": "retail",
                "reason_for_call": "You want to exchange the blue running shoes from order #W2378156 for the "
                "same pair in size 10 because the ones you received are too small for you.",
                "known_info": "You are Yusuf Rossi in zip code 19122.",
            },
        },
        "evaluation_criteria": {
            "actions": [
                {"action_id": "7_0", "name": "find_user_id_by_name_zip", "arguments": {"zip": "19122"}},
                {"action_id": "7_1", "name": "get_order_details", "arguments": {"order_id": "#W2378156"}},
                {"action_id": "7_2", "name": "exchange_delivered_order_items", "arguments": {"item": "A"}},
            ]
        },
    }
]
TAU2_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "exchange_delivered_order_items",
            "description": "Exchange items of a delivered order.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "item_ids": {"type": "array", "items": {"type": "string"}},
                    "new_item_ids": {"type": "array", "items": {"type": "string"}},
                    "payment_method_id": {"type": "string"},
                },
                "required": ["order_id", "item_ids", "new_item_ids", "payment_method_id"],
            },
        },
    }
]
ACE_ENTRIES = [
    {
        "id": "normal_single_turn_single_function_3",
        "question": "user: I need the air quality index for Lyon on 2024-05-12 and for Porto that day.",
        "function": [
            {
                "name": "AirQuality_getIndex",
                "description": "Air quality index of a city on a date.",
                "parameters": {
                    "type": "dict",
                    "properties": {"city": {"type": "string"}, "date": {"type": "string"}},
                    "required": ["city", "date"],
                },
            }
        ],
        "ground_truth": {"AirQuality_getIndex": {"city": "Lyon", "date": "2024-05-12"}},
    },
    {"question": "user: Book me a table for two at 8pm.", "function": []},
]


@pytest.fixture
def benchmark_files(tmp_path: Path) -> list[Path]:
    tasks, tools, ace = tmp_path / "tasks.json", tmp_path / "tools.json", tmp_path / "acebench.jsonl"
    tasks.write_text(json.dumps(TAU2_TASKS), encoding="utf-8")
    tools.write_text(json.dumps(TAU2_TOOLS), encoding="utf-8")
    ace.write_text("".join(json.dumps(e) + "\n" for e in ACE_ENTRIES), encoding="utf-8")
    return [tasks, tools, ace]


def test_tau2_and_acebench_files_load(benchmark_files: list[Path]) -> None:
    tasks, tools, ace = (load_benchmark_file(p) for p in benchmark_files)
    assert tasks.label == "tau2-tasks:tasks.json" and tasks.items[0].id == "7"
    assert len(tasks.items[0].texts) == 2 and [c.name for c in tasks.items[0].calls] == [
        "find_user_id_by_name_zip",
        "get_order_details",
        "exchange_delivered_order_items",
    ]
    assert (
        tools.label == "tools:tools.json" and tools.items[0].tools[0].name == "exchange_delivered_order_items"
    )
    assert [i.id for i in ace.items] == ["normal_single_turn_single_function_3", "acebench.jsonl#1"]
    answers = benchmark_files[2].with_name("answers.jsonl")  # ACEBench keeps answers in possible_answer/
    answers.write_text(json.dumps({"id": "n1", "ground_truth": [{"Lyon_weather": {"day": 1}}]}) + "\n")
    assert load_benchmark_file(answers).items[0].calls == [Call(name="Lyon_weather", arguments={"day": 1})]
    assert ace.items[0].calls == [
        Call(name="AirQuality_getIndex", arguments={"city": "Lyon", "date": "2024-05-12"})
    ]


def test_planted_tau2_and_acebench_copies_are_caught(benchmark_files: list[Path], tmp_path: Path) -> None:
    config = ContaminationConfig(bfcl=False, benchmarks=benchmark_files, embedder="none")
    sources = [load_benchmark_file(p) for p in benchmark_files]
    fw = Firewall(cached_index(sources, config, tmp_path), config, None, progress=False)
    instruction = TAU2_TASKS[0]["user_scenario"]["instructions"]["reason_for_call"]  # type: ignore[index]
    actions = TAU2_TASKS[0]["evaluation_criteria"]["actions"]  # type: ignore[index]
    ace_tool = ACE_ENTRIES[0]["function"][0]  # type: ignore[index]
    probes = [
        Probe(id="tau2-text", texts=[f"Hello, {instruction.lower()} Thanks!"]),
        Probe(id="tau2-calls", calls=[Call(name=a["name"], arguments=a["arguments"]) for a in actions]),
        chat_probe(
            "tau2-tool", [], [_reworded(ToolDoc.model_validate(TAU2_TOOLS[0]["function"]), "swap_items")]
        ),
        chat_probe("ace-tool", [], [{**ace_tool, "name": "air_quality_get_index", "description": "AQI"}]),
        Probe(id="clean", texts=["Book me a table for two at 8pm at a quiet place near the river, please."]),
    ]
    report = fw.check(probes)
    assert {v.id: v.reason for v in report.verdicts} == {
        "tau2-text": "text_ngram",
        "tau2-calls": "call_sequence",
        "tau2-tool": "tool_schema",
        "ace-tool": "tool_signature",
    }
    refs = {v.id: v.hits[0].ref for v in report.verdicts}
    assert refs["tau2-text"] == "tau2-tasks:tasks.json#7"
    assert refs["ace-tool"] == "acebench:acebench.jsonl#AirQuality_getIndex"
    assert report.summary.benchmarks == [
        "tau2-tasks:tasks.json",
        "tools:tools.json",
        "acebench:acebench.jsonl",
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            json.dumps([{"id": "1", "user_scenario": {"instructions": "x"}}, {"id": "2"}]),
            "item 1: expected a τ²",
        ),
        (
            '{"question": "q", "function": []}\n{"question": "q", "function": [{"description": "d"}]}\n',
            ":2: expected",
        ),
        ('{"question": "q"}\nnot json\n', ":2: not a JSON line"),
        (json.dumps([{"prompt": "x"}]), "item 0: expected τ²-bench tasks"),
        (json.dumps({"tasks": []}), "item 0: expected τ²-bench tasks"),
        ("42", "expected a JSON list or JSON lines, got a int"),
    ],
)
def test_malformed_benchmark_files_say_where_and_what(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bench.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=str(path)) as info:
        load_benchmark_file(path)
    assert expected in str(info.value)


# --- CLI ---


def _planted_arena(arena: Arena, text: str) -> Arena:
    return arena.model_copy(update={"id": "planted", "messages": [ChatMessage(role="user", content=text)]})


def test_cli_exit_codes_and_json_report(
    sample_arenas: list[Arena], items: dict[str, BenchmarkItem], tmp_path: Path
) -> None:
    clean, dirty, report = tmp_path / "clean.jsonl", tmp_path / "dirty.jsonl", tmp_path / "report.json"
    write_arenas(clean, sample_arenas)
    write_arenas(
        dirty, [*sample_arenas, _planted_arena(sample_arenas[0], items["multi_turn_base_3"].texts[0])]
    )
    runner = CliRunner()
    ok = runner.invoke(app, ["check-contamination", str(clean), "--embedder", "none"])
    assert ok.exit_code == 0, ok.output
    assert "0 of 12" in ok.output
    bad = runner.invoke(app, ["check-contamination", str(dirty), "--embedder", "none", "--json", str(report)])
    assert bad.exit_code == 1, bad.output
    assert "planted: text_ngram" in bad.output
    written = json.loads(report.read_text(encoding="utf-8"))
    assert written["summary"]["dropped"] == 1 and written["verdicts"][0]["id"] == "planted"
    sft = tmp_path / "sft.jsonl"
    sft.write_text(json.dumps({"id": "r1", "messages": "not a list"}) + "\n", encoding="utf-8")
    broken = runner.invoke(app, ["check-contamination", str(sft), "--embedder", "none"])
    assert broken.exit_code == 2 and f"{sft}:1" in broken.output


def test_cli_sft_rows_and_extra_benchmark(benchmark_files: list[Path], tmp_path: Path) -> None:
    """An SFT row that offers τ²'s exchange tool under another name, checked with --benchmark only."""
    trajectory = notes_trajectory(notes_server())
    tool = _reworded(ToolDoc.model_validate(TAU2_TOOLS[0]["function"]), "swap_items")
    rows = [
        {"id": "clean", "messages": trajectory.messages, "tools": trajectory.tools},
        {"id": "copied", "messages": trajectory.messages, "tools": [*trajectory.tools, tool]},
    ]
    sft = tmp_path / "sft.jsonl"
    sft.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    args = ["check-contamination", str(sft), "--no-bfcl", "--embedder", "none", "--format", "sft"]
    result = CliRunner().invoke(app, [*args, *(a for p in benchmark_files for a in ("--benchmark", str(p)))])
    assert result.exit_code == 1, result.output
    assert "copied: tool_schema" in result.output and "clean:" not in result.output
