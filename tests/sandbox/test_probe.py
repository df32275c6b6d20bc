"""The tier probe: what this machine offers, and failing closed when nothing contains the code."""

from __future__ import annotations

import os

import pytest

from astra_synth.sandbox.probe import probe, tier_prefix


@pytest.mark.skipif(os.geteuid() != 0, reason="the project's machines and CI run as root")
def test_root_with_namespaces_gets_t1_and_every_layer_reports() -> None:
    report = probe()
    assert report.tier == "T1" and report.available[0] == "T1"
    names = {layer.name: layer for layer in report.layers}
    expected = {"root", "namespaces", "user namespaces", "landlock", "seccomp", "rootless interpreter"}
    assert expected <= set(names)
    assert names["namespaces"].ok and names["root"].ok
    assert report.refusal() is None and report.refusal("T1") is None


def test_rootless_tiers_run_as_nobody_when_the_caller_is_root() -> None:
    t2, t3 = tier_prefix("T2"), tier_prefix("T3")
    assert "--map-root-user" in t2 and "--net" in t2 and "--pid" in t2
    if os.geteuid() == 0:
        assert t3[:2] == ["setpriv", "--reuid=65534"] and t2[:2] == t3[:2]
    else:
        assert t3 == []


def test_an_interpreter_that_cannot_start_leaves_no_tier() -> None:
    report = probe("/nonexistent/python3")
    assert report.tier is None and report.available == []
    assert report.refusal() is not None and "T1" in (report.refusal("T1") or "")
