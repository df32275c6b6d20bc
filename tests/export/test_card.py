"""Dataset cards of real pipeline runs: the front matter is valid Hub YAML and every number in the card is
the manifests' number."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
import yaml

from astra_synth.export.card import build_card, render_card, write_card
from astra_synth.export.licences import UNKNOWN, server_licence
from astra_synth.export.redact import REDACTED, redact
from astra_synth.llm.ledger import StageUsage
from astra_synth.runs.manifest import ContaminationSummary, Manifest
from astra_synth.runs.rundir import open_run
from astra_synth.runs.summary import read_summary, write_summary
from astra_synth.tools.spec import ServerRecord, StdioTransport
from tests.export.conftest import RunCopy, split_card


def section(body: str, title: str) -> str:
    """The text of one ``## title`` section."""
    return body.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def manifests(run: Path, *subruns: str) -> list[tuple[str, Manifest]]:
    return [(s, Manifest.model_validate_json((run / s / "manifest.json").read_bytes())) for s in subruns]


def assert_matches_manifests(run: Path, card: Path, subruns: tuple[str, ...], parquet: Path) -> str:
    """The checks both pipelines share; returns the card's body."""
    front, body = split_card(card.read_text(encoding="utf-8"))
    rows = pq.read_metadata(parquet).num_rows
    assert rows > 0
    assert front["dataset_info"]["splits"] == [{"name": "train", "num_examples": rows}]
    assert front["configs"][0]["data_files"] == [{"split": "train", "path": parquet.name}]
    # Our feature YAML is exactly what `datasets` derives from the parquet schema.
    expected = datasets.Features.from_arrow_schema(pq.read_schema(parquet))._to_yaml_list()
    assert front["dataset_info"]["features"] == expected
    assert front["size_categories"] == ["n<1K"] and front["license"] == "other"

    filtering, cost = section(body, "Filtering statistics"), section(body, "Cost")
    total = StageUsage()
    hashes = 0
    for _, m in manifests(run, *subruns):
        for s in m.stages:
            c, u = s.counts, s.usage
            counts = (
                f"| {m.pipeline} | {s.name} | {c.inputs} | {c.ok} | {c.rejected} | {c.errors} | {c.outputs} |"
            )
            assert counts in filtering, counts
            usage = f"| {m.pipeline} | {s.name} | {u.calls} | {u.cached_calls} | {u.failed_calls} | "
            usage += f"{u.prompt_tokens} | {u.completion_tokens} | unknown |"
            assert usage in cost, usage
            total = total + u
            for name, digest in s.prompt_hashes.items():
                assert f"| {m.pipeline} | {s.name} | {name} | `{digest}` |" in body
                hashes += 1
    assert hashes > 5
    assert total.calls > 0
    assert f"| **total** |  | {total.calls} | {total.cached_calls} | {total.failed_calls} | " in cost
    assert f"{total.calls / rows:.2f} calls" in cost
    # The config block is the first manifest's config, redacted, and holds no local path.
    config = yaml.safe_load(section(body, "Generation").split("```yaml\n")[1].split("```")[0])
    assert config == redact(manifests(run, subruns[0])[0][1].config)
    assert str(run.parent) not in body and str(Path.home()) + "/" not in body
    return body


def test_trajectories_card_written_by_the_pipeline_matches_its_manifests(trajectories_run: Path) -> None:
    card = trajectories_run / "sft" / "README.md"
    body = assert_matches_manifests(
        trajectories_run, card, ("synth", "rollout"), trajectories_run / "sft" / "sft.parquet"
    )
    # the run-level dedupe between the sub-runs, with its reason counts from the run summary
    dedupe = read_summary(trajectories_run).filter("dedupe")
    assert dedupe is not None
    kept, dropped = len(dedupe.kept), len(dedupe.dropped)
    row = f"| trajectories | dedupe | {kept + dropped} | {kept} | {dropped} | 0 | {kept} | 0 (0) |"
    assert f"{row} duplicate (exact): 3 |" in section(body, "Filtering statistics")
    sources = section(body, "Sources and licences")
    # the notes server has no licence and is emulated: the card says unknown rather than guessing
    assert (
        f"| tool server | notes | tool documents (results emulated by the generator model) | {UNKNOWN} | 5 |"
        in (sources)
    )
    assert "| personas | personas.jsonl |" in sources
    assert "- Tool results in the rollouts: emulated: 10" in sources
    # whatever the publish step's firewall recorded (it may be switched off) is what the card says
    recorded = read_summary(trajectories_run).contamination
    text = section(body, "Benchmark contamination")
    if recorded is None:
        assert "**Not checked**" in text and "(it was not checked against any)" in body
    else:
        assert f"- Items checked: {recorded.checked}\n- Items dropped: {recorded.dropped}" in text


def test_a_run_without_a_contamination_check_says_so(trajectories_run: Path) -> None:
    run = open_run(trajectories_run)
    card = build_card(run, data_file="sft.parquet").model_copy(update={"contamination": None})
    _, body = split_card(render_card(card))
    text = section(body, "Benchmark contamination")
    assert text.strip() == "**Not checked**: no benchmark-contamination check ran on this export."
    assert "(it was not checked against any)" in body


def test_arenas_card_written_by_the_pipeline_matches_its_manifests(arenas_run: Path) -> None:
    body = assert_matches_manifests(
        arenas_run, arenas_run / "README.md", ("qa", "synth"), arenas_run / "arenas.parquet"
    )
    selection = read_summary(arenas_run).filter("selection")
    assert selection is not None
    kept = len(selection.kept)
    assert f"| arenas | selection | {kept + len(selection.dropped)} | {kept} |" in body
    assert "| QA seeds (plain) | Travel |" in section(body, "Sources and licences")
    assert "Licence in each arena's provenance: CC-BY-4.0" in body
    assert "| QA generation, verification, tool synthesis | scripted | OpenAI-compatible endpoint |" in body


def test_contamination_summary_is_in_the_card(trajectories_run: Path, run_copy: RunCopy) -> None:
    """Read from the run summary, the one place the publish step records it."""
    run = run_copy(trajectories_run)
    summary = ContaminationSummary(
        checked=7,
        dropped=2,
        by_reason={"tool_signature": 1, "task_ngram": 1},
        benchmarks=["bfcl-v3-multi-turn", "tau2-airline"],
        method="ngram",
        thresholds={"ngram_containment": 0.5},
    )
    write_summary(run, read_summary(run).model_copy(update={"contamination": summary}))
    _, body = split_card(write_card(run).read_text(encoding="utf-8"))
    text = section(body, "Benchmark contamination")
    assert "Not checked" not in text
    for line in (
        "- Items checked: 7",
        "- Items dropped: 2",
        "- Benchmarks compared against: bfcl-v3-multi-turn, tau2-airline",
        "- Text similarity method: ngram",
        "- Thresholds: ngram_containment=0.5",
        "| tool_signature | 1 |",
        "| task_ngram | 1 |",
    ):
        assert line in text, line
    assert "(it was not checked against any)" not in body


def test_redact_removes_secrets_and_local_paths_but_keeps_numbers(monkeypatch: Any) -> None:
    monkeypatch.setenv("VENDOR_API_KEY", "k3y-from-the-environment")
    config = {
        "endpoint": {
            "api_key_env": "OPENAI_API_KEY",  # the name of a variable: kept
            "api_key": "plain-text-key",
            "base_url": "https://user:pw@llm.example.com:8443/v1?token=abc",
            "model": "k3y-from-the-environment",  # a secret env value pasted anywhere
            "max_tokens": 512,
        },
        "servers": "/home/alice/project/servers.jsonl",
        "cmd": "stdio: /home/alice/bin/server --db ~/data/x.db",
        "headers": [{"Authorization": "Bearer sk-1234567890abcdef"}],
        "relative": "examples/personas.jsonl",
    }
    out = redact(config)
    assert out["endpoint"] == {
        "api_key_env": "OPENAI_API_KEY",
        "api_key": REDACTED,
        "base_url": "https://llm.example.com:8443/v1",
        "model": REDACTED,
        "max_tokens": 512,
    }
    assert out["servers"] == "<local>/servers.jsonl"
    assert out["cmd"] == "stdio: <local>/server --db <local>/x.db"
    assert out["headers"] == [{"Authorization": REDACTED}]
    assert out["relative"] == "examples/personas.jsonl"


def test_server_licence_prefers_the_record_then_the_installed_package() -> None:
    def server(**kw: Any) -> ServerRecord:
        return ServerRecord(id="s", title="S", tools=[], **kw)

    stdio = StdioTransport(command="python", args=["-m", "mcp_server_time"])
    assert server_licence(server(transport=stdio)) == "MIT (from the mcp-server-time package metadata)"
    assert server_licence(server(transport=stdio, license="GPL-3.0")) == "GPL-3.0"
    assert server_licence(server()) == UNKNOWN  # emulated tool documents from the user
    unknown = StdioTransport(command="python", args=["-m", "no_such_module_here"])
    assert server_licence(server(transport=unknown)) == UNKNOWN
