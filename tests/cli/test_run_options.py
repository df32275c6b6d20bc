"""The pipelines' shared ``run`` options: a bad config exits 2 naming file and field; global options apply."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from pydantic import Field
from typer.testing import CliRunner

from astra_synth.cli import app
from astra_synth.cli.run_options import load_run_config, print_funnel
from astra_synth.config import EndpointConfig, GlobalOptions, StrictModel, load_config
from astra_synth.runs.summary import RunSummary, StageRow


@pytest.mark.parametrize(
    ("group", "model"), [("arenas", "ArenasConfig"), ("trajectories", "TrajectoriesConfig")]
)
def test_bad_config_exits_2_with_file_and_field(tmp_path: Path, group: str, model: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("concurrencyy: 3\n", encoding="utf-8")
    done = CliRunner().invoke(
        app, [group, "run", "--config", str(config), "--run-dir", str(tmp_path / "run")]
    )
    assert done.exit_code == 2, done.output
    assert f"{config}: invalid configuration for {model}" in done.stderr
    assert "concurrencyy" in done.stderr
    assert not (tmp_path / "run").exists()


class _Cfg(StrictModel):
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)


def test_global_options_override_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text("endpoint: {model: from-file, base_url: http://file/v1}\n", encoding="utf-8")
    probe = typer.Typer()

    @probe.callback()
    def root(ctx: typer.Context, model: str | None = None) -> None:
        ctx.obj = GlobalOptions(model=model)

    @probe.command()
    def show(ctx: typer.Context) -> None:
        cfg = load_run_config(ctx, _Cfg, config)
        typer.echo(f"{cfg.endpoint.model} {cfg.endpoint.base_url}")

    assert CliRunner().invoke(probe, ["show"]).stdout.strip() == "from-file http://file/v1"
    done = CliRunner().invoke(probe, ["--model", "from-flag", "show"])
    assert done.stdout.strip() == "from-flag http://file/v1"


def test_the_thinking_switch_reaches_the_endpoint(tmp_path: Path) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text("endpoint: {model: qwen3, thinking: 'on'}\n", encoding="utf-8")
    assert load_config(_Cfg, config, GlobalOptions().overrides()).endpoint.thinking == "on"
    assert load_config(_Cfg, config, GlobalOptions(thinking="off").overrides()).endpoint.thinking == "off"
    refused = CliRunner().invoke(app, ["--thinking", "maybe", "arenas", "--help"])
    assert refused.exit_code == 2


def test_the_printed_funnel_shows_the_calls_spent_on_rejected_items(
    capsys: pytest.CaptureFixture[str],
) -> None:
    row = StageRow(
        pipeline="arenas.synth",
        stage="arena_check",
        inputs=3,
        ok=1,
        rejected=2,
        llm_calls=7,
        rejected_llm_calls=5,
    )
    summary = RunSummary(pipeline="arenas", status="finished", inputs=3, stages=[row], ok=1, llm_calls=7)
    print_funnel(summary, "arenas")
    assert "7 (5)" in capsys.readouterr().out  # 7 calls at the stage, 5 on the two arenas it rejected
