"""The report in a real browser: every page of the pipelines, demo and empty reports loads from file://
without a console error, an exception or a failed load, and the overview gets a screenshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.browser import page_problems, screenshot


@pytest.mark.timeout(240)
def test_every_page_loads_clean_and_the_overview_is_captured(
    reports: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The harness must see problems when there are some: a page with one of each.
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<script>console.error("boom")</script><img src="missing.png"><script>undefined_fn()</script>'
    )
    pages = sorted(p for folder in reports.values() for p in folder.glob("*.html"))
    assert len(pages) >= 6  # overview + viewers of the pipelines run, demo overview + arena cards, empty
    found = page_problems([bad.as_uri(), *(p.as_uri() for p in pages)], tmp_path / "profile")
    problems = found.pop(bad.as_uri())
    assert any("boom" in p for p in problems), problems
    assert any("failed load" in p or "missing.png" in p for p in problems), problems
    assert any("undefined_fn" in p for p in problems), problems
    assert found == {p.as_uri(): [] for p in pages}

    shot = tmp_path / "overview.png"
    screenshot((reports["pipelines"] / "index.html").as_uri(), shot)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a rendered page, not a blank frame
    with capsys.disabled():
        print(f"\nreport overview screenshot: {shot}")
