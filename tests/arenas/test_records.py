"""Arena records refuse what the released ASTRA rows got wrong, and say where."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from astra_synth.arenas.records import Arena, ToolSource, read_arenas, write_arenas
from astra_synth.errors import InputError

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arenas.sample.jsonl"


@pytest.fixture
def raw() -> dict[str, Any]:
    """The HR arena as plain JSON: two layers, three tools, a sub-task with two parents."""
    line = next(x for x in SAMPLE.read_text(encoding="utf-8").splitlines() if "hr-unpaid-leave" in x)
    data: dict[str, Any] = json.loads(line)
    return data


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        Arena.model_validate(data)
    return str(info.value)


def test_sample_file_round_trips(tmp_path: Path) -> None:
    arenas = read_arenas(SAMPLE)
    assert len(arenas) == 12
    assert {a.language for a in arenas} == {"en", "zh"} and sum(a.language == "zh" for a in arenas) == 2
    assert {a.scenario_type for a in arenas} == {
        "single-hop",
        "parallel-single-hop",
        "multi-hop",
        "parallel-multi-hop",
    }
    assert all(a.provenance.method == "hand-written" for a in arenas)
    out = tmp_path / "again.jsonl"
    write_arenas(out, arenas)
    assert read_arenas(out) == arenas
    assert '"depends_on"' in out.read_text(encoding="utf-8")  # the spec's field name on disk


def test_duplicate_tool_names_are_refused(raw: dict[str, Any]) -> None:
    raw["tools"].append(copy.deepcopy(raw["tools"][0]))
    assert "duplicate tool names: ['count_working_days']" in _error(raw)


def test_tool_sources_must_match_tools_and_hashes(raw: dict[str, Any]) -> None:
    missing = copy.deepcopy(raw)
    del missing["tool_sources"]["get_daily_rate"]
    assert "do not match the tool names" in _error(missing)
    tampered = copy.deepcopy(raw)
    tampered["tool_sources"]["get_daily_rate"]["source"] += "\n# edited after hashing\n"
    assert "sha256 does not match the source" in _error(tampered)
    renamed = copy.deepcopy(raw)
    renamed["tool_sources"]["get_daily_rate"] = ToolSource.of(
        "def other():\n    return 1\n", "other"
    ).model_dump()
    assert "entrypoint is 'other'" in _error(renamed)


def test_subtask_dag_is_checked_by_id(raw: dict[str, Any]) -> None:
    unknown = copy.deepcopy(raw)
    unknown["subtasks"][2]["depends_on"] = ["s1", "s9"]
    assert "depends on unknown id 's9'" in _error(unknown)
    cycle = copy.deepcopy(raw)
    cycle["subtasks"][0]["depends_on"] = ["s3"]
    assert "dependency cycle" in _error(cycle)
    shape = copy.deepcopy(raw)
    shape["scenario_type"] = "multi-hop"
    assert "the sub-task DAG is 'parallel-multi-hop'" in _error(shape)


def test_golden_calls_must_fit_their_tool(raw: dict[str, Any]) -> None:
    wrong_tool = copy.deepcopy(raw)
    wrong_tool["subtasks"][0]["golden_call"]["name"] = "get_daily_rate"
    assert "golden call names 'get_daily_rate', the sub-task's tool is 'count_working_days'" in _error(
        wrong_tool
    )
    bad_args = copy.deepcopy(raw)
    bad_args["subtasks"][1]["golden_call"]["arguments"] = {"employee": "E-7731"}
    assert "unknown ['employee'], missing ['employee_id']" in _error(bad_args)
    no_call = copy.deepcopy(raw)
    del no_call["subtasks"][1]["golden_call"]
    assert "must name its tool and golden call" in _error(no_call)


def test_schema_and_provenance_rules(raw: dict[str, Any]) -> None:
    untyped = copy.deepcopy(raw)
    untyped["tools"][1]["function"]["parameters"]["properties"]["employee_id"] = {"description": "id"}
    assert "no valid JSON Schema type" in _error(untyped)
    synthesized = copy.deepcopy(raw)
    synthesized["provenance"] = {"method": "synthesized", "licence": "Apache-2.0"}
    assert "records its model and run_id" in _error(synthesized)
    synthesized["provenance"].update(model="glm-4.6", run_id="run-1")
    assert Arena.model_validate(synthesized).provenance.model == "glm-4.6"


def test_reading_reports_file_line_and_field(tmp_path: Path, raw: dict[str, Any]) -> None:
    bad = copy.deepcopy(raw)
    bad["language"] = "fr"
    path = tmp_path / "arenas.jsonl"
    path.write_text(
        json.dumps(raw) + "\n" + json.dumps(bad) + "\n" + json.dumps(raw) + "\n", encoding="utf-8"
    )
    with pytest.raises(InputError) as info:
        read_arenas(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: invalid Arena: field 'language': Input should be 'en' or 'zh'")
    assert f"{path}:3" not in message.split("\n")[0]
    path.write_text(json.dumps(raw) + "\n" + json.dumps(raw) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="duplicate arena ids"):
        read_arenas(path)
    with pytest.raises(InputError, match="cannot read"):
        read_arenas(tmp_path / "missing.jsonl")
