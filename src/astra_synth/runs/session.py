"""One session: the parts every command wires before it talks to a model, opened together, closed in order.

``async with RunSession(...) as s`` starts the endpoint (the embedded llama.cpp server when the endpoint has
no base URL), checks that it answers (:func:`~astra_synth.llm.preflight.check_endpoint` raises
``EndpointUnavailable`` naming the URL), then the sandbox executor when one is asked for, the response cache,
the usage ledger and the LLM client, and closes them in reverse: the client before the cache it writes to,
the embedded server last.
:meth:`RunSession.for_run` applies the run-directory rules (where the cache lives, where usage persists).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Self

from pydantic import Field

from astra_synth.config import BudgetConfig, EndpointConfig, StrictModel, cache_root
from astra_synth.llm.cache import ResponseCache
from astra_synth.llm.client import LLMClient
from astra_synth.llm.ledger import Ledger
from astra_synth.llm.local import LocalServerConfig, endpoint_session
from astra_synth.llm.preflight import check_endpoint
from astra_synth.sandbox import get_executor
from astra_synth.sandbox.executor import ToolExecutor

CACHE_FILE = "llm_cache.sqlite"
"""The run's LLM response cache, in the run directory (see :func:`run_cache_path`)."""
USAGE_FILE = "usage.json"
"""What the run has spent over all its sessions; the budget caps count it (see :class:`Ledger`)."""
SHARED_CACHE_FILE = "llm.sqlite"
"""The machine-wide cache under ``$ASTRA_CACHE_DIR`` that arena runs used before the run-dir default."""


class PipelineConfig(StrictModel):
    """What every pipeline's config starts with: the model endpoint, the spending cap, the LLM cache, the
    seed and the per-stage concurrency (pipeline A's and B's configs extend it)."""

    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    cache_path: Path | None = Field(
        default=None,
        description="LLM response cache (SQLite); default run_dir/llm_cache.sqlite, so a run is "
        "self-contained and a resume costs zero calls. Point several runs at one file to share answers.",
    )
    seed: int = 0
    concurrency: int = Field(default=8, ge=1, description="Items in flight per stage.")


def run_cache_path(run_dir: Path, configured: Path | None = None) -> Path:
    """Where a run's LLM cache lives: ``configured`` if set, else ``run_dir/llm_cache.sqlite``.

    The run directory is the default so a run is self-contained (copy, resume, delete it as one folder), its
    cost is what it spent itself rather than what another run happened to pay for, and runs (and tests) do
    not share answers unless told to (point ``cache_path`` at one file for that). A run directory written
    before this rule (stage manifests but no run-dir cache, and the shared ``$ASTRA_CACHE_DIR/llm.sqlite``
    present) keeps the shared cache it was written with, so its resume still costs zero calls.
    """
    if configured is not None:
        return configured
    own = run_dir / CACHE_FILE
    shared = cache_root() / SHARED_CACHE_FILE
    if not own.exists() and shared.exists() and any(run_dir.glob("*/manifest.json")):
        return shared
    return own


class RunSession:
    """Endpoint + sandbox + cache + ledger + LLM client for one command; ``llm``, ``ledger``, ``sandbox`` and
    ``endpoint`` are usable inside ``async with``."""

    def __init__(
        self,
        endpoint: EndpointConfig,
        *,
        budget: BudgetConfig | None = None,
        cache_path: Path | None = None,
        usage_path: Path | None = None,
        executor: str | None = None,
        server: LocalServerConfig | None = None,
    ) -> None:
        """``cache_path``/``usage_path`` None: no cache / usage kept in memory only; ``executor`` None: no
        sandbox; ``server`` configures the embedded server when ``endpoint`` has no base URL."""
        self._config = endpoint
        self._budget = budget
        self._cache_path = cache_path
        self._usage_path = usage_path
        self._executor = executor
        self._server = server
        self._stack: AsyncExitStack | None = None
        self._sandbox: ToolExecutor | None = None
        self.endpoint = endpoint
        self.ledger = Ledger(budget)
        self._llm: LLMClient | None = None

    @classmethod
    def for_run(cls, run_dir: Path, config: PipelineConfig, *, executor: str | None = None) -> RunSession:
        """A pipeline run's session: cache at :func:`run_cache_path`, usage persisted in ``run_dir``."""
        return cls(
            config.endpoint,
            budget=config.budget,
            cache_path=run_cache_path(run_dir, config.cache_path),
            usage_path=run_dir / USAGE_FILE,
            executor=executor,
        )

    @property
    def llm(self) -> LLMClient:
        if self._llm is None:
            raise RuntimeError("RunSession.llm is only usable inside `async with`")
        return self._llm

    @property
    def sandbox(self) -> ToolExecutor:
        if self._sandbox is None:
            raise RuntimeError("RunSession has no sandbox: pass executor= and use it inside `async with`")
        return self._sandbox

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            self.endpoint = stack.enter_context(endpoint_session(self._config, self._server))
            await check_endpoint(self.endpoint)  # a dead or wrong endpoint fails here, before any work
            if self._executor is not None:
                self._sandbox = stack.enter_context(get_executor(self._executor))
            cache = None
            if self._cache_path is not None:
                cache = ResponseCache(self._cache_path)
                stack.callback(cache.close)
            self.ledger = Ledger(
                self._budget,
                self.endpoint.usd_per_1k_prompt_tokens,
                self.endpoint.usd_per_1k_completion_tokens,
                path=self._usage_path,
            )
            self._llm = await stack.enter_async_context(
                LLMClient(self.endpoint, ledger=self.ledger, cache=cache)
            )
            self._stack = stack.pop_all()  # opened: closing now belongs to __aexit__
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        self._llm = self._sandbox = None
        if stack is not None:
            await stack.aclose()
