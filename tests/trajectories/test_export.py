"""Export: OpenAI-format JSONL, parquet that loads in `datasets`, provenance with every score, and a render
through the embedded model's own chat template (read offline from its GGUF)."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2.sandbox
import pytest
from datasets import Dataset

from astra_synth.testing.scripts import judged_notes_trajectory
from astra_synth.tools.spec import ServerRecord
from astra_synth.trajectories.export import export_sft
from astra_synth.trajectories.judge import DIMENSIONS


@pytest.fixture
def exported(tmp_path: Path, notes_server: ServerRecord) -> Path:
    items = [
        ("a1", judged_notes_trajectory(notes_server)),
        ("a2", judged_notes_trajectory(notes_server, "Die Notiz sagt: Tram buchen.")),
    ]
    summary = export_sft(items, tmp_path / "out")
    assert summary.rows == 2 and summary.tool_calls == 4
    assert summary.roles == {"system": 2, "user": 2, "assistant": 6, "tool": 4}
    assert (
        summary.dimension_means["final_answer"] == 1.0
        and "tool_context_planning" not in summary.dimension_means
    )
    return tmp_path / "out"


def test_jsonl_is_openai_chat_format(exported: Path) -> None:
    rows = [json.loads(line) for line in (exported / "sft.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a1", "a2"]
    messages = rows[0]["messages"]
    first_call = messages[2]["tool_calls"][0]
    assert first_call["function"] == {"name": "search_notes", "arguments": '{"query": "Lisbon"}'}
    assert messages[2]["content"] == "I'll search."
    assert messages[4]["content"] == "" and messages[4]["reasoning_content"].startswith("The search")
    assert messages[3] == {"role": "tool", "content": '["n7"]', "tool_call_id": "c1"}
    assert rows[0]["tools"][0]["function"]["name"] == "search_notes"


def test_provenance_keeps_every_score(exported: Path) -> None:
    rows = [json.loads(line) for line in (exported / "provenance.jsonl").read_text().splitlines()]
    first = rows[0]
    assert first["id"] == "a1" and first["server_id"] == "notes"
    assert set(first["judge"]["dimensions"]) == set(DIMENSIONS)
    assert first["judge"]["dimensions"]["tool_context_planning"]["status"] == "not_applicable"
    assert first["task"]["scores"]["question_quality"]["score"] == 4
    assert first["rollout"]["status"] == "completed" and first["task"]["chain_origin"] == "walk"


def test_parquet_and_jsonl_load_in_datasets(exported: Path, tmp_path: Path) -> None:
    parquet = Dataset.from_parquet(str(exported / "sft.parquet"), cache_dir=str(tmp_path / "hf"))
    assert isinstance(parquet, Dataset)
    assert parquet.num_rows == 2 and parquet[0]["id"] == "a1"
    row = parquet[0]
    assert row["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"query": "Lisbon"}'
    assert json.loads(row["tools"])[1]["function"]["name"] == "read_note"
    assert row["score"] == 1.0
    jsonl = Dataset.from_json(str(exported / "sft.jsonl"), cache_dir=str(tmp_path / "hf"))
    assert isinstance(jsonl, Dataset)
    assert jsonl.num_rows == 2 and jsonl[1]["messages"][-1]["content"] == "Die Notiz sagt: Tram buchen."


@pytest.mark.slow
def test_rows_render_through_the_embedded_models_chat_template(exported: Path) -> None:
    import llama_cpp

    from astra_synth.llm.local import bundled_gguf

    model = llama_cpp.Llama(model_path=str(bundled_gguf()), vocab_only=True, verbose=False)
    template = model.metadata["tokenizer.chat_template"]
    render = jinja2.sandbox.ImmutableSandboxedEnvironment().from_string(template).render
    row = json.loads((exported / "sft.jsonl").read_text().splitlines()[0])
    text = render(messages=row["messages"], tools=row["tools"], add_generation_prompt=False)
    assert text.count("<|im_start|>") == len(row["messages"])
    assert '<|im_start|>tool\n["n7"]<|im_end|>' in text and text.rstrip().endswith("tram tour.<|im_end|>")
    assert len(model.tokenize(text.encode("utf-8"), add_bos=False, special=True)) > 50
