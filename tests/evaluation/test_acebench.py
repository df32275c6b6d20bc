"""``astra eval acebench``: ground-truth replay scores 100 %, a silent endpoint 0, strict catches leniency.

The fixture under ``data/acebench`` is ours, written in ACEBench's record format; the integration test
replays the ground truth of the real English data where ``../shared/benchmarks/acebench/data_en`` exists.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from astra_synth.cli import app
from astra_synth.errors import InputError
from astra_synth.evaluation.acebench import (
    AGENT,
    NORMAL,
    RESULTS_FILE,
    SPECIAL,
    AceBenchConfig,
    AceItem,
    NotRun,
    evaluate_acebench,
    load_category,
    result_for,
    summarise,
)
from astra_synth.evaluation.acebench_checker import ParseError, check_normal, parse_calls, strip_suffix
from astra_synth.evaluation.endpoint_errors import ErrorPolicy
from astra_synth.llm.client import LLMClient
from astra_synth.testing.scripted import ScriptedLLM, server_error_reply, text_reply

FIXTURE = Path(__file__).parent / "data" / "acebench"
FIXTURE_CATEGORIES = sorted(
    name
    for p in FIXTURE.glob("data_*.json")
    if (name := p.name[len("data_") : -len(".json")]) in NORMAL + SPECIAL
)
REAL_DATA = Path(__file__).resolve().parents[2] / "../shared/benchmarks/acebench/data_en"


def render(item: AceItem) -> str:
    """The answer a perfect model gives: the expected calls as ``[Api(k=v)]`` or the special sentence."""
    truth = item.answer.ground_truth
    if item.category == "special_irrelevant":
        return '["Due to the limitations of the function, I cannot solve this problem."]'
    if isinstance(truth, dict) and item.category == "special_incomplete":
        (api, names), *_ = truth.items()
        return f'["Missing necessary parameters ({", ".join(names)}) for the api ({api})"]'
    if isinstance(truth, dict) and item.category == "special_error_param":
        values = ", ".join(v for vs in truth.values() for v in vs)
        keys = ", ".join(truth)
        return f'["There is incorrect value ({values}) for the parameters ({keys}) in the history."]'
    expected = truth[0] if isinstance(truth, list) else truth
    assert isinstance(expected, dict)
    calls = (
        f"{strip_suffix(name)}(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"
        for name, args in expected.items()
    )
    return "[" + ", ".join(calls) + "]"


def fixture_items() -> list[AceItem]:
    return [item for c in FIXTURE_CATEGORIES for item in load_category(FIXTURE, c)]


def oracle(items: list[AceItem]) -> Any:
    """Answers each request with the ground truth of the item whose dialogue it carries."""
    by_history = {item.question.question.strip(): item for item in items}

    def handler(body: dict[str, Any]) -> Any:
        user = body["messages"][-1]["content"]
        item = next(item for history, item in by_history.items() if user.endswith(history))
        return text_reply(render(item))

    return handler


@pytest.fixture
async def llm(scripted_llm: ScriptedLLM) -> AsyncIterator[LLMClient]:
    async with LLMClient(scripted_llm.endpoint()) as client:
        yield client


def config(**kw: Any) -> AceBenchConfig:
    return AceBenchConfig(categories=[*FIXTURE_CATEGORIES, *AGENT], **kw)


async def test_ground_truth_replay_scores_100_and_resumes(
    scripted_llm: ScriptedLLM, llm: LLMClient, tmp_path: Path
) -> None:
    items = fixture_items()
    scripted_llm.on(".*", oracle(items))
    report = await evaluate_acebench(FIXTURE, tmp_path, llm, config())
    assert {s.category for s in report.categories} == set(FIXTURE_CATEGORIES)
    for score in report.categories:
        assert score.original.accuracy == score.strict.accuracy == 1.0, score
    mt = next(s for s in report.categories if s.category == "normal_multi_turn_user_adjust")
    assert mt.dialogues == 2 and mt.original.process_accuracy == 1.0
    assert report.original.overall == report.strict.overall == 1.0
    assert report.original.agent is None and "not comparable" in report.original.overall_label
    assert [n.category for n in report.not_run] == list(AGENT)
    assert "--acebench-repo" in report.not_run[0].reason
    assert len(scripted_llm.chat_requests()) == len(items)
    assert all(r["temperature"] == 0.0 for r in scripted_llm.chat_requests())
    again = await evaluate_acebench(FIXTURE, tmp_path, llm, config())
    assert len(scripted_llm.chat_requests()) == len(items)  # resumed: nothing asked twice
    assert again.original.overall == 1.0
    assert (tmp_path / "acebench_report.json").is_file()


async def test_silent_endpoint_scores_zero(scripted_llm: ScriptedLLM, llm: LLMClient, tmp_path: Path) -> None:
    scripted_llm.on(".*", text_reply("I am not sure what you mean."))
    report = await evaluate_acebench(FIXTURE, tmp_path, llm, config())
    assert report.items == len(fixture_items()) and report.errors == 0
    for score in report.categories:
        assert score.original.accuracy == score.strict.accuracy == 0.0, score
    assert report.original.overall == report.strict.overall == 0.0


async def test_endpoint_errors_are_counted_and_retried_on_rerun(
    scripted_llm: ScriptedLLM, llm: LLMClient, tmp_path: Path
) -> None:
    items = [i for i in fixture_items() if i.category == "special_irrelevant"]
    scripted_llm.on(".*", server_error_reply())
    cfg = AceBenchConfig(categories=["special_irrelevant"])
    report = await evaluate_acebench(FIXTURE, tmp_path, llm, cfg)
    assert report.errors == len(items) and report.categories[0].original.accuracy == 0.0
    scripted_llm.reset()
    scripted_llm.on(".*", oracle(items))
    assert (await evaluate_acebench(FIXTURE, tmp_path, llm, cfg)).original.overall == 1.0


async def test_server_breaking_mid_run_is_left_out_only_with_allow_errors(
    scripted_llm: ScriptedLLM, llm: LLMClient, tmp_path: Path
) -> None:
    category = "normal_single_turn_single_function"
    items = [i for i in fixture_items() if i.category == category]
    assert len(items) >= 2
    scripted_llm.on(".*", oracle(items))
    scripted_llm.fail_after(1, server_error_reply())
    cfg = AceBenchConfig(categories=[category], concurrency=1)
    report = await evaluate_acebench(FIXTURE, tmp_path / "scored", llm, cfg)
    failed = len(items) - 1
    assert report.errors == failed and report.error_violation is not None
    assert report.categories[0].original.accuracy == pytest.approx(1 / len(items))
    allowed = cfg.model_copy(update={"errors": ErrorPolicy(allow_errors=True, max_error_rate=1.0)})
    scripted_llm.reset()
    scripted_llm.on(".*", oracle(items))
    scripted_llm.fail_after(1, server_error_reply())
    report = await evaluate_acebench(FIXTURE, tmp_path / "allowed", llm, allowed)
    assert report.errors == failed and report.error_violation is None and report.allow_errors
    assert report.categories[0].original.accuracy == 1.0


async def test_out_dir_of_another_model_is_refused(
    scripted_llm: ScriptedLLM, llm: LLMClient, tmp_path: Path
) -> None:
    (tmp_path / RESULTS_FILE).write_text(
        result_for(fixture_items()[0], "other-model", "[]").model_dump_json() + "\n", encoding="utf-8"
    )
    with pytest.raises(RuntimeError, match="other-model"):
        await evaluate_acebench(FIXTURE, tmp_path, llm, config())


def test_original_is_lenient_where_strict_is_not() -> None:
    [item] = [i for i in fixture_items() if i.question.id == "normal_single_turn_single_function_0"]
    truth = item.answer.ground_truth
    assert isinstance(truth, dict)
    functions = item.question.function
    # A different top-level number and a string that merely contains the expected one.
    planted = "[WeatherApi_getForecast(city='Paris, France', days=5)]"
    assert check_normal(planted, functions, truth, "original").ok
    assert not check_normal(planted, functions, truth, "strict").ok
    # Numbers by value; an extra optional argument fails both; a missing required one too.
    assert check_normal("[WeatherApi_getForecast(city='Paris', days=3.0)]", functions, truth, "strict").ok
    extra = "[WeatherApi_getForecast(city='Paris', days=3, units='metric')]"
    assert not check_normal(extra, functions, truth, "original").ok
    assert not check_normal("[WeatherApi_getForecast(city='Paris')]", functions, truth, "original").ok


def test_optional_ground_truth_argument_may_be_left_out_only_under_original() -> None:
    [item] = [i for i in fixture_items() if i.question.id == "normal_single_turn_single_function_1"]
    truth = item.answer.ground_truth
    assert isinstance(truth, dict)
    answer = "[Hotel_book(hotel='grand-hotel', stay={'checkIn': '2024-03-10', 'checkOut': '2024-03-12'})]"
    assert check_normal(answer, item.question.function, truth, "original").ok
    assert not check_normal(answer, item.question.function, truth, "strict").ok


def test_multi_turn_groups_steps_into_end_and_process_accuracy() -> None:
    items = [i for i in fixture_items() if i.category == "normal_multi_turn_user_adjust"]
    results = {i.question.id: result_for(i, "m", render(i)) for i in items}
    results["normal_multi_turn_user_adjust_0_1"] = result_for(items[1], "m", "[]")
    report = summarise(
        items,
        results,
        model="m",
        data=FIXTURE,
        config=AceBenchConfig(categories=["normal_multi_turn_user_adjust"]),
        not_run=[NotRun(category="agent_multi_step", reason="x")],
        wall_s=0.0,
    )
    [score] = report.categories
    assert score.original.accuracy == 0.5  # dialogue 1 right, dialogue 0 half right
    assert score.original.process_accuracy == 0.75


def test_answers_are_parsed_never_evaluated() -> None:
    for text in ("[__import__('os').system('true')]", "[f(x=open('/etc/passwd'))]", "f(x=1)", "[f(1)]"):
        with pytest.raises(ParseError):
            parse_calls(text)
    assert parse_calls("[a.b(x=-1, y=[1, (2, 3)], z={'k': None})]")[0].name == "a.b"


def test_bad_record_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "possible_answer").mkdir()
    (tmp_path / "data_special_irrelevant.json").write_text(
        '{"id": "special_irrelevant_0", "question": "user: hi", "function": []}\n{"id": 3}\n'
    )
    (tmp_path / "possible_answer" / "data_special_irrelevant.json").write_text("")
    with pytest.raises(InputError, match=r"data_special_irrelevant.json:2: .*question"):
        load_category(tmp_path, "special_irrelevant")


def test_cli_prints_both_scorings_and_result_line(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    scripted_llm.on(".*", oracle(fixture_items()))
    done = CliRunner().invoke(
        app,
        [
            "--base-url",
            scripted_llm.base_url,
            "--model",
            "scripted",
            "eval",
            "acebench",
            "--data",
            str(FIXTURE),
            "--out",
            str(tmp_path),
            "--categories",
            ",".join([*FIXTURE_CATEGORIES, *AGENT]),
            "--scoring",
            "strict",
        ],
    )
    assert done.exit_code == 0, done.output
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT acebench_overall=1.0000 ")
    assert "acebench_special_irrelevant=1.0000" in last and "scoring=strict" in last
    assert "agent_multi_turn: not run" in done.stdout


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"ACEBench data not found at {REAL_DATA}")
def test_real_data_ground_truth_replays_to_100_percent() -> None:
    """All 973 normal/special items of the real English data pass when the model answers the ground truth."""
    failures = []
    total = 0
    for category in NORMAL + SPECIAL:
        for item in load_category(REAL_DATA, category):
            total += 1
            result = result_for(item, "oracle", render(item))
            if not result.original.ok:
                failures.append((item.question.id, result.original.reason))
    assert total == 973
    assert failures == []
