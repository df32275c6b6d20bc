import io

from rich.console import Console

from astra_synth.runs.manifest import StageCounts
from astra_synth.runs.progress import RunProgress


def test_silent_when_not_a_terminal() -> None:
    out = io.StringIO()
    with RunProgress(console=Console(file=out)) as progress:
        assert not progress.enabled
        progress.stage("graph", 10).update(StageCounts(inputs=10, ok=3), tokens=120)
    assert out.getvalue() == ""


def test_disabled_explicitly_even_on_a_terminal() -> None:
    out = io.StringIO()
    with RunProgress(enabled=False, console=Console(file=out, force_terminal=True)) as progress:
        progress.stage("graph", 10).update(StageCounts(inputs=10, ok=3), tokens=120)
    assert out.getvalue() == ""


def test_terminal_shows_counts_and_tokens_per_stage() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with RunProgress(console=console) as progress:
        assert progress.enabled
        bar = progress.stage("graph", 10)
        bar.update(StageCounts(inputs=10, ok=6, rejected=2, errors=1), tokens=12345)
    text = out.getvalue()
    assert "graph" in text and "9/10" in text
    assert "ok 6" in text and "rej 2" in text and "err 1" in text and "tok 12,345" in text
