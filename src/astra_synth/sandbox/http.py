"""Remote execution: the executor behind HTTP, its client, and a SandboxFusion adapter.

``create_app`` serves any local executor (normally the fork server of the machine it runs on) with a
batch endpoint, because an RL step issues many calls at once and one round trip should carry them.
``HttpExecutor`` is the matching client; it uploads tool sources when the server says it lacks them.
``SandboxFusionExecutor`` drives bytedance's SandboxFusion ``/run_code`` for users who already run one
(a fresh interpreter per call there: fine for verification, too slow for the inner loop of RL).

Optional shared secret: when ``ASTRA_SANDBOX_TOKEN`` is set in the environment, the server requires it as
a bearer token and the client sends it (secrets only from the environment, never argv or files).
"""

from __future__ import annotations

import hmac
import json
import os
import signal
from typing import Any

import httpx
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from astra_synth.sandbox.calls import SourceKeepingExecutor, check_args, from_answer
from astra_synth.sandbox.executor import SandboxLimits, ToolCall, ToolExecutor, ToolResult

TOKEN_ENV = "ASTRA_SANDBOX_TOKEN"
RESULT_MARKER = "\x1eRESULT"
_CLIENT_SLACK_S = 30.0  # the HTTP timeout exceeds the batch's worst-case run time by this much


class LoadRequest(BaseModel):
    source: str


class LoadResponse(BaseModel):
    env_id: str


class BatchRequest(BaseModel):
    calls: list[ToolCall] = Field(max_length=4096)


class BatchResponse(BaseModel):
    results: list[ToolResult] = Field(default_factory=list)
    missing_envs: list[str] = Field(default_factory=list, description="Env ids to load before retrying.")


def create_app(executor: ToolExecutor, token: str | None = None) -> Starlette:
    """The service: ``POST /v1/load``, ``POST /v1/execute_batch``, ``GET /v1/health``."""
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    loaded: set[str] = set()

    def authorised(request: Request) -> bool:
        if not token:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    async def parse(request: Request, model: type[BaseModel]) -> Any:
        if not authorised(request):
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
        try:
            return model.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)

    async def load(request: Request) -> JSONResponse:
        body = await parse(request, LoadRequest)
        if isinstance(body, JSONResponse):
            return body
        env_id = await run_in_threadpool(executor.load, body.source)
        loaded.add(env_id)
        return JSONResponse(LoadResponse(env_id=env_id).model_dump())

    async def execute_batch(request: Request) -> JSONResponse:
        body = await parse(request, BatchRequest)
        if isinstance(body, JSONResponse):
            return body
        missing = sorted({c.env_id for c in body.calls} - loaded)
        if missing:
            return JSONResponse(BatchResponse(missing_envs=missing).model_dump(), status_code=409)
        results = await run_in_threadpool(executor.execute_batch, body.calls)
        return JSONResponse(BatchResponse(results=results).model_dump())

    async def health(request: Request) -> JSONResponse:
        if not authorised(request):
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
        refusal = executor.refusal
        return JSONResponse(
            {"ok": refusal is None, "tier": getattr(executor, "tier", None), "refusal": refusal}
        )

    return Starlette(
        routes=[
            Route("/v1/load", load, methods=["POST"]),
            Route("/v1/execute_batch", execute_batch, methods=["POST"]),
            Route("/v1/health", health, methods=["GET"]),
        ]
    )


def serve(executor: ToolExecutor, host: str = "127.0.0.1", port: int = 8790) -> None:
    """Run the service until SIGINT/SIGTERM (uvicorn, one process; the executor holds the parallelism).

    uvicorn re-raises the signal after its graceful shutdown; turning SIGTERM into SystemExit lets the
    caller's ``with executor`` block still stop the workers and remove their scratch space.
    """
    import uvicorn

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        uvicorn.run(create_app(executor), host=host, port=port, log_level="warning")
    finally:
        signal.signal(signal.SIGTERM, previous)


class _RemoteExecutor(SourceKeepingExecutor):
    """Shared client parts: sources kept locally, one HTTP client, failures become ToolResults."""

    def __init__(self, base_url: str, limits: SandboxLimits | None = None) -> None:
        super().__init__(limits)
        headers = {"authorization": f"Bearer {os.environ[TOKEN_ENV]}"} if os.environ.get(TOKEN_ENV) else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers)

    def execute(
        self, env_id: str, fn: str, args: dict[str, Any], timeout_s: float | None = None
    ) -> ToolResult:
        return self.execute_batch([ToolCall(env_id=env_id, fn=fn, args=args, timeout_s=timeout_s)])[0]

    def _http_timeout(self, calls: list[ToolCall]) -> float:
        """Worst case: the server runs the batch on one worker, call after call."""
        return sum((c.timeout_s or self.limits.timeout_s) for c in calls) + _CLIENT_SLACK_S

    def close(self) -> None:
        self._client.close()


def _failed(calls: list[ToolCall], error: str) -> list[ToolResult]:
    return [ToolResult(ok=False, status="crashed", error=error) for _ in calls]


class HttpExecutor(_RemoteExecutor):
    """Client of ``create_app``: one round trip per batch; sources are uploaded when the server asks."""

    def _upload(self, env_id: str) -> None:
        response = self._client.post("/v1/load", json={"source": self._sources[env_id]})
        response.raise_for_status()
        remote = LoadResponse.model_validate(response.json()).env_id
        if remote != env_id:
            raise RuntimeError(f"server computed env id {remote}, expected {env_id}")

    def execute_batch(self, calls: list[ToolCall]) -> list[ToolResult]:
        if not calls:
            return []
        unknown = [c.env_id for c in calls if c.env_id not in self._sources]
        if unknown:
            return [
                ToolResult(ok=False, status="invalid", error="unknown env id: load the tool source first")
                if c.env_id in unknown
                else ToolResult(ok=False, status="invalid", error="batch has an unknown env id")
                for c in calls
            ]
        body = BatchRequest(calls=calls).model_dump(mode="json")
        try:
            for _ in range(2):  # the server lacks some sources (new or restarted): upload them, retry once
                response = self._client.post(
                    "/v1/execute_batch", json=body, timeout=self._http_timeout(calls)
                )
                if response.status_code != 409:
                    break
                for env_id in BatchResponse.model_validate(response.json()).missing_envs:
                    self._upload(env_id)
            response.raise_for_status()
            results = BatchResponse.model_validate(response.json()).results
        except (httpx.HTTPError, ValidationError, RuntimeError, ValueError) as exc:
            return _failed(calls, f"sandbox service failed: {exc}")
        if len(results) != len(calls):
            return _failed(calls, f"sandbox service answered {len(results)} results for {len(calls)} calls")
        return results


# Constant harness appended to the tool source: the function name and arguments arrive on stdin as JSON,
# so nothing from a request is ever spliced into code.
_FUSION_HARNESS = """
import json as _astra_json, sys as _astra_sys
_astra_request = _astra_json.loads(_astra_sys.stdin.read())
try:
    _astra_result = globals()[_astra_request["fn"]](**_astra_request["args"])
    _astra_answer = {"status": "ok", "result": _astra_result, "error": None}
except Exception as _astra_exc:
    _astra_error = type(_astra_exc).__name__ + ": " + str(_astra_exc)
    _astra_answer = {"status": "error", "result": None, "error": _astra_error}
try:
    _astra_text = _astra_json.dumps(_astra_answer, allow_nan=False)
except (TypeError, ValueError) as _astra_exc:
    _astra_text = _astra_json.dumps({"status": "invalid", "error": "result is not JSON-serialisable"})
print("\\x1eRESULT" + _astra_text)
"""


class SandboxFusionExecutor(_RemoteExecutor):
    """Adapter for SandboxFusion's ``POST /run_code`` (python): one request per call."""

    def execute_batch(self, calls: list[ToolCall]) -> list[ToolResult]:
        return [self._run(call) for call in calls]

    def _run(self, call: ToolCall) -> ToolResult:
        source = self._sources.get(call.env_id)
        problem = check_args(call.fn, call.args) if source is not None else "unknown env id"
        if problem or source is None:
            return ToolResult(ok=False, status="invalid", error=problem)
        timeout = call.timeout_s or self.limits.timeout_s
        payload = {
            "code": source + "\n" + _FUSION_HARNESS,
            "language": "python",
            "run_timeout": timeout,
            "compile_timeout": 10,
            "stdin": json.dumps({"fn": call.fn, "args": call.args}),
        }
        try:
            response = self._client.post("/run_code", json=payload, timeout=timeout + _CLIENT_SLACK_S)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return ToolResult(ok=False, status="crashed", error=f"SandboxFusion failed: {exc}")
        run = body.get("run_result") or {}
        cpu_ms = float(run.get("execution_time") or 0.0) * 1000.0
        if run.get("status") == "TimeLimitExceeded":
            return ToolResult(
                ok=False, status="timeout", error=f"wall-clock limit of {timeout:g} s", cpu_ms=cpu_ms
            )
        for line in str(run.get("stdout") or "").split("\n"):  # not splitlines(): it splits at \x1e
            if line.startswith(RESULT_MARKER):
                result = from_answer(line[len(RESULT_MARKER) :].encode(), cpu_ms)
                if result is not None:
                    return result
        detail = str(run.get("stderr") or body.get("message") or body.get("status"))[-500:]
        return ToolResult(
            ok=False, status="crashed", error=f"no result from SandboxFusion: {detail}", cpu_ms=cpu_ms
        )
