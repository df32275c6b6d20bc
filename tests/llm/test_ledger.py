"""Ledger: per-stage sums, prices, budget caps and call reservations."""

from __future__ import annotations

import pytest

from astra_synth.config import BudgetConfig
from astra_synth.llm.ledger import BudgetExceeded, Ledger


def test_sums_per_stage_with_ledger_or_endpoint_prices() -> None:
    ledger = Ledger(usd_per_1k_prompt=1.0, usd_per_1k_completion=2.0)
    ledger.record("judge", 1000, 500, 0.5)
    ledger.record("judge", 0, 0, 0.1, cost_usd=0.25)  # priced by its endpoint
    ledger.record_cached("judge")
    ledger.record_failure("walk", 1.5)
    judge = ledger.by_stage()["judge"]
    assert (judge.calls, judge.cached_calls, judge.total_tokens) == (2, 1, 1500)
    assert judge.cost_usd == pytest.approx(2.25)
    assert ledger.total().failed_calls == 1 and ledger.total().latency_s == pytest.approx(2.1)


def test_token_cap() -> None:
    ledger = Ledger(BudgetConfig(max_tokens=100))
    ledger.record("s", 60, 30, 0.0)
    ledger.check_budget()
    ledger.record("s", 5, 5, 0.0)
    with pytest.raises(BudgetExceeded, match="token budget"):
        ledger.check_budget()


def test_reserved_calls_count_toward_the_call_cap_until_released() -> None:
    ledger = Ledger(BudgetConfig(max_calls=2))
    with ledger.reserve_call():
        with ledger.reserve_call(), pytest.raises(BudgetExceeded, match="2 in flight"), ledger.reserve_call():
            pass
        with pytest.raises(RuntimeError), ledger.reserve_call():
            raise RuntimeError("a failed call frees its slot")
        with ledger.reserve_call():
            ledger.record("s", 1, 1, 0.0)
    with ledger.reserve_call():
        pass  # one done, none in flight
    ledger.record("s", 1, 1, 0.0)
    with pytest.raises(BudgetExceeded, match="2 done"), ledger.reserve_call():
        pass
