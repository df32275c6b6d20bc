"""Usage ledger: calls, tokens, latency and cost per stage, with a budget cap that stops a run cleanly.

The ledger is the one place that knows what a run has spent. The client records every real (non-cached)
call here *before* returning it, and checks the budget *before* sending, so a cap is never overshot by
more than the calls already in flight. Given a file, the ledger also keeps what the run has spent over all
its sessions there (rewritten on every real call), so a resumed run counts what earlier processes spent
against the cap instead of spending it again. Inside :func:`item_usage` every call is also booked to the
item being processed, so a run can say what its rejected items cost.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from pydantic import BaseModel, Field

from astra_synth.config import BudgetConfig


class BudgetExceeded(RuntimeError):
    """Raised when a run reaches a budget cap; the runner stops scheduling and keeps finished work."""


class StageUsage(BaseModel):
    calls: int = 0
    cached_calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    reasoning_cut_calls: int = Field(
        default=0, description="Calls whose answer the token cap cut off while the model was reasoning."
    )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: StageUsage) -> StageUsage:
        return StageUsage(**{f: getattr(self, f) + getattr(other, f) for f in StageUsage.model_fields})


_ITEM: ContextVar[StageUsage | None] = ContextVar("astra_item_usage", default=None)


@contextmanager
def item_usage() -> Iterator[StageUsage]:
    """Book every call recorded inside the block to one item too. A context variable, so the tasks and
    threads the item starts (which copy the context) share the item's counter."""
    usage = StageUsage()
    token = _ITEM.set(usage)
    try:
        yield usage
    finally:
        _ITEM.reset(token)


def _save(path: Path, spent: StageUsage) -> None:
    """Write ``spent`` atomically (temp file + rename): a kill leaves the previous total, never half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(spent.model_dump_json(), encoding="utf-8")
    os.replace(tmp, path)


class Ledger:
    """Thread-safe accumulator of :class:`StageUsage` keyed by stage name.

    ``total`` and ``by_stage`` are this process's usage; ``spent`` adds what earlier sessions recorded in
    ``path`` (a run's ``usage.json``), and the budget caps apply to ``spent``.
    """

    def __init__(
        self,
        budget: BudgetConfig | None = None,
        usd_per_1k_prompt: float | None = None,
        usd_per_1k_completion: float | None = None,
        *,
        path: Path | None = None,
    ) -> None:
        self.budget = budget or BudgetConfig()
        self.path = path
        self._spent_before = (
            StageUsage.model_validate_json(path.read_text(encoding="utf-8"))
            if path is not None and path.exists()
            else StageUsage()
        )
        self._price = (usd_per_1k_prompt, usd_per_1k_completion)
        self._by_stage: dict[str, StageUsage] = defaultdict(StageUsage)
        self._lock = threading.Lock()
        self._reserve_lock = threading.Lock()  # separate: check_budget takes self._lock
        self._in_flight = 0

    def cost_of(self, prompt_tokens: int, completion_tokens: int) -> float:
        p, c = self._price
        return (prompt_tokens * (p or 0.0) + completion_tokens * (c or 0.0)) / 1000.0

    def record(
        self,
        stage: str,
        prompt_tokens: int,
        completion_tokens: int,
        latency_s: float,
        cost_usd: float | None = None,
        *,
        reasoning_cut: bool = False,
    ) -> None:
        """Add one real call; ``cost_usd`` is the endpoint's own price, else the ledger's prices apply."""
        if cost_usd is None:
            cost_usd = self.cost_of(prompt_tokens, completion_tokens)
        with self._lock:
            for u in (self._by_stage[stage], _ITEM.get()):
                if u is not None:
                    u.calls += 1
                    u.prompt_tokens += prompt_tokens
                    u.completion_tokens += completion_tokens
                    u.latency_s += latency_s
                    u.cost_usd += cost_usd
                    u.reasoning_cut_calls += reasoning_cut
            if self.path is not None:
                _save(self.path, self._spent_before + sum(self._by_stage.values(), StageUsage()))

    def record_cached(self, stage: str) -> None:
        with self._lock:
            for u in (self._by_stage[stage], _ITEM.get()):
                if u is not None:
                    u.cached_calls += 1

    def record_failure(self, stage: str, latency_s: float) -> None:
        with self._lock:
            for u in (self._by_stage[stage], _ITEM.get()):
                if u is not None:
                    u.failed_calls += 1
                    u.latency_s += latency_s

    def total(self) -> StageUsage:
        with self._lock:
            return sum(self._by_stage.values(), StageUsage())

    def spent(self) -> StageUsage:
        """What the run has spent: earlier sessions (from ``path``) plus this process."""
        return self._spent_before + self.total()

    def by_stage(self) -> dict[str, StageUsage]:
        with self._lock:
            return {k: v.model_copy() for k, v in self._by_stage.items()}

    def check_budget(self, *, in_flight: int = 0) -> None:
        """Raise :class:`BudgetExceeded` when a cap is reached by what the run has spent (earlier sessions
        included); ``in_flight`` calls count toward max_calls."""
        b = self.budget
        t = self.spent()
        if b.max_calls is not None and t.calls + in_flight >= b.max_calls:
            raise BudgetExceeded(
                f"LLM call budget reached: {t.calls} done + {in_flight} in flight >= {b.max_calls}"
            )
        if b.max_tokens is not None and t.total_tokens >= b.max_tokens:
            raise BudgetExceeded(f"token budget reached: {t.total_tokens} >= {b.max_tokens}")
        if b.max_cost_usd is not None and t.cost_usd >= b.max_cost_usd:
            raise BudgetExceeded(f"cost budget reached: ${t.cost_usd:.4f} >= ${b.max_cost_usd:.4f}")

    @contextmanager
    def reserve_call(self) -> Iterator[None]:
        """Check the budget, then hold a call slot while the call runs.

        In-flight calls count toward ``max_calls``, so concurrent calls cannot overshoot it. Tokens and cost
        are known only when answers arrive, so those caps are checked, not reserved.
        """
        with self._reserve_lock:
            self.check_budget(in_flight=self._in_flight)
            self._in_flight += 1
        try:
            yield
        finally:
            with self._reserve_lock:
                self._in_flight -= 1
