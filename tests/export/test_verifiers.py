"""``astra export verifiers``: the package it writes, and verifiers 0.4.0's own ``vf-eval`` playing it
against a real arena server — a scripted model replaying the golden calls scores 1.0, the embedded
llama.cpp model plays a whole rollout."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from astra_synth.arenas.golden import golden_turns
from astra_synth.arenas.records import Arena, read_arenas
from astra_synth.arenas.server import ArenaCorpus, ArenaServer, ArenaServerConfig
from astra_synth.cli import app
from astra_synth.config import EndpointConfig
from astra_synth.errors import InputError
from astra_synth.export.verifiers import VerifiersVenv, ensure_verifiers_venv, export_verifiers, vf_eval
from astra_synth.sandbox import get_executor
from astra_synth.testing.scripted import Reply, ScriptedLLM, text_reply, tool_call_reply
from astra_synth.testing.servers import ThreadedServer
from astra_synth.venvs import VenvError

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arenas.sample.jsonl"
PLAYED = ["travel-flight-duration", "ecommerce-cheapest-mouse-order"]
TOKEN = "vf-test-token"


def test_export_writes_an_installable_taskset_package(tmp_path: Path) -> None:
    result = export_verifiers([SAMPLE], tmp_path / "out", server="ws://10.0.0.5:8791", name="my-arenas")
    package = tmp_path / "out" / "my_arenas"
    assert (result.taskset_id, result.module, result.tasks) == ("my-arenas", "my_arenas", 12)
    assert sorted(p.name for p in package.iterdir()) == [
        "__init__.py",
        "__main__.py",
        "export.json",
        "tasks.jsonl",
    ]
    assert json.loads((package / "export.json").read_text()) == {"server": "ws://10.0.0.5:8791"}
    rows = [json.loads(line) for line in (package / "tasks.jsonl").read_text().splitlines()]
    arenas = read_arenas(SAMPLE)
    assert [r["arena_id"] for r in rows] == [a.id for a in arenas]
    assert rows[0]["prompt"] == [m.model_dump() for m in arenas[0].messages]
    # what the model must not see stays on the server: no tool code, golden calls or answers
    text = (package / "tasks.jsonl").read_text()
    assert arenas[0].final_answer not in text and "def " not in text
    pyproject = (tmp_path / "out" / "pyproject.toml").read_text()
    assert 'name = "my-arenas"' in pyproject and '"verifiers==0.4.0"' in pyproject


def test_the_package_builds_as_a_wheel_with_its_data(tmp_path: Path) -> None:
    export_verifiers([SAMPLE], tmp_path / "out")
    args = ["wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "whl")]
    subprocess.run(
        [sys.executable, "-m", "pip", *args, str(tmp_path / "out")], check=True, capture_output=True
    )
    [wheel] = (tmp_path / "whl").glob("astra_arenas-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        f"astra_arenas/{f}" for f in ("__init__.py", "__main__.py", "tasks.jsonl", "export.json")
    } <= names


def test_export_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="duplicate arena ids"):
        export_verifiers([SAMPLE, SAMPLE], tmp_path / "a")
    with pytest.raises(InputError, match="--name"):
        export_verifiers([SAMPLE], tmp_path / "b", name="Astra_Arenas")
    with pytest.raises(InputError, match="--server"):
        export_verifiers([SAMPLE], tmp_path / "c", server="127.0.0.1:8791")
    export_verifiers([SAMPLE], tmp_path / "d")
    with pytest.raises(InputError, match="not empty"):
        export_verifiers([SAMPLE], tmp_path / "d")
    assert export_verifiers([SAMPLE], tmp_path / "d", force=True).tasks == 12


def test_cli_writes_the_package_and_refuses_a_full_folder(tmp_path: Path) -> None:
    args = ["export", "verifiers", str(SAMPLE), "--out", str(tmp_path / "out"), "--server", "ws://h:1"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "12 arenas" in done.output and "taskset astra-arenas" in done.output
    assert (tmp_path / "out" / "astra_arenas" / "tasks.jsonl").is_file()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "not empty" in again.output


@pytest.fixture(scope="module")
def venv() -> VerifiersVenv:
    return ensure_verifiers_venv()  # built once per machine (network to PyPI the first time)


@pytest.fixture(scope="module")
def arena_server() -> Iterator[str]:
    """``astra arenas serve`` on the sample arenas, requiring a bearer token (the taskset sends it)."""
    with pytest.MonkeyPatch.context() as mp, get_executor() as sandbox:
        mp.setenv("ASTRA_ARENAS_TOKEN", TOKEN)
        corpus = ArenaCorpus.from_files([SAMPLE])
        with ThreadedServer(ArenaServer(corpus, sandbox, ArenaServerConfig(), token=TOKEN).app()) as server:
            yield server.ws_url


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory, arena_server: str) -> Path:
    out = tmp_path_factory.mktemp("vf") / "taskset"
    export_verifiers([SAMPLE], out, server=arena_server)
    return out


def golden_player(arenas: list[Arena]) -> Any:
    """A model that plays each arena's golden turns, then its final answer (found by the user question)."""
    by_question = {a.messages[-1].content: a for a in arenas}

    def answer(body: dict[str, Any]) -> Reply:
        messages = body["messages"]
        arena = by_question[next(m["content"] for m in messages if m["role"] == "user")]
        turns = golden_turns(arena)
        done = sum(1 for m in messages if m["role"] == "assistant")
        if done < len(turns):
            calls = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in turns[done]]
            return tool_call_reply(*calls)
        return text_reply(arena.final_answer)

    return answer


@pytest.mark.slow
@pytest.mark.timeout(900)  # the first run on a machine builds the venv and the harness's uv environment
def test_vf_eval_golden_replay_scores_one(venv: VerifiersVenv, package: Path, tmp_path: Path) -> None:
    with ScriptedLLM(handler=golden_player(read_arenas(SAMPLE))) as llm:
        report = vf_eval(
            package,
            tmp_path / "eval",
            base_url=llm.base_url,
            model="golden",
            tasks=PLAYED,
            max_turns=8,
            venv=venv,
        )
    assert sorted(r.task for r in report.rollouts) == sorted(PLAYED)
    arenas = {a.messages[-1].content: a for a in read_arenas(SAMPLE)}
    for body in llm.chat_requests():
        arena = arenas[next(m["content"] for m in body["messages"] if m["role"] == "user")]
        # the model sees the arena's tools verbatim (names unprefixed, the exact JSON schemas) ...
        assert sorted(body["tools"], key=lambda t: t["function"]["name"]) == sorted(
            (t.model_dump(mode="json") for t in arena.tools), key=lambda t: t["function"]["name"]
        )
        # ... and the results the server's sandbox computed for its calls
        assert all("Error" not in str(m["content"]) for m in body["messages"] if m["role"] == "tool")
    for rollout in report.rollouts:
        assert rollout.ok and not rollout.errors, rollout
        assert rollout.reward == pytest.approx(1.0)
        assert [rollout.metrics["recall"], rollout.metrics["precision"]] == [pytest.approx(1.0)] * 2
        assert rollout.stop == "agent_completed"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_vf_eval_runs_the_embedded_model(
    venv: VerifiersVenv, package: Path, embedded_endpoint: EndpointConfig, tmp_path: Path
) -> None:
    assert embedded_endpoint.base_url is not None
    report = vf_eval(
        package,
        tmp_path / "eval",
        base_url=embedded_endpoint.base_url,
        model=embedded_endpoint.model,
        tasks=PLAYED[:1],
        max_tokens=48,
        max_turns=2,
        venv=venv,
    )
    [rollout] = report.rollouts
    assert rollout.task == PLAYED[0] and rollout.ok and not rollout.errors, rollout
    assert rollout.reward is not None and 0.0 <= rollout.reward <= 1.0
    assert set(rollout.metrics) >= {"recall", "precision", "calls"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("server", "token", "error"),
    [
        ("ws://127.0.0.1:9", TOKEN, "arena server at ws://127.0.0.1:9 is not reachable"),
        (None, "wrong-token", "answered 401 .is \\$ASTRA_ARENAS_TOKEN the server's token"),
    ],
)
def test_a_server_that_cannot_play_fails_the_run_at_once(
    venv: VerifiersVenv,
    package: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: str | None,
    token: str,
    error: str,
) -> None:
    """Checked when the taskset loads, not minutes later by verifiers' tool-server probe."""
    monkeypatch.setenv("ASTRA_ARENAS_TOKEN", token)
    with ScriptedLLM() as llm, pytest.raises(VenvError, match=error):
        vf_eval(package, tmp_path / "eval", base_url=llm.base_url, model="m", server=server, venv=venv)
    assert not llm.requests  # no rollout started
