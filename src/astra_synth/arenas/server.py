"""The arena server: an arena corpus as an OpenEnv environment over WebSocket, many sessions at once.

Each ``/ws`` connection is one session with its own :class:`~astra_synth.arenas.runtime.ArenaEnv` (the
reward lives there); every session's tool code runs in the one shared sandbox executor. The wire format is
OpenEnv 0.10's (:mod:`astra_synth.arenas.env_protocol`), so openenv's ``EnvClient`` and the stacks built on
it (TRL, SkyRL, torchforge) play our arenas, and the ``/{env}/splits|tasks|num_tasks|task|task_range``
routes are its TaskProvider API (a split is an arena file, named by its stem). What a model gets wrong — an
unknown tool, malformed arguments, an oversized message, too many calls — comes back as an observation with
an error; only a protocol error (a frame that is not JSON, an unknown type) is an error frame, as in openenv.
With distractors (a :class:`~astra_synth.arenas.distractors.DistractorSampler` per split, built once at
start-up; per split so that a training episode is never offered a held-out arena's tools) every reset adds
the irrelevant tools drawn for (sampler seed, arena id, ``episode``) to the arena's own, shuffled in by the
seed, and names them in the observation's metadata; calling one runs it in the sandbox and costs precision,
as in GRPO. A session idle longer than ``idle_timeout_s`` is closed. When ``ASTRA_ARENAS_TOKEN`` is set
every route requires it as a bearer token; a refused WebSocket is never accepted, so nothing runs.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import signal
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from astra_synth.agent.chat import parse_openai_calls
from astra_synth.arenas.distractors import DistractorSampler
from astra_synth.arenas.env_protocol import (
    ENV_NAME,
    TOKEN_ENV,
    ArenaAction,
    ArenaObservation,
    ArenaState,
    ResetRequest,
    error_frame,
)
from astra_synth.arenas.records import Arena, read_arenas
from astra_synth.arenas.runtime import ArenaEnv, EnvConfig, ExtraTool
from astra_synth.config import StrictModel
from astra_synth.errors import InputError
from astra_synth.sandbox.executor import ToolExecutor


class ArenaServerConfig(StrictModel):
    """Session limits; ``env`` is every episode's ``ArenaEnv`` config (sandbox limit, reward)."""

    max_sessions: int = Field(default=64, ge=1, description="WebSocket sessions open at once.")
    idle_timeout_s: float = Field(default=600.0, gt=0, description="A silent session is closed after this.")
    max_message_bytes: int = Field(default=1_000_000, ge=1024, description="Larger actions are refused.")
    max_calls_per_step: int = Field(default=32, ge=1)
    max_turns: int = Field(default=32, ge=1, description="Tool-calling steps; the last one ends the episode.")
    env: EnvConfig = Field(default_factory=EnvConfig)


class ArenaTask(BaseModel):
    """One task of the TaskProvider API: enough to pick and describe an arena without its tool code."""

    arena_id: str
    split: str
    index: int
    domain: str
    family: str | None
    question: str


class ArenaCorpus:
    """Arenas by split, in file order, and by id (ids are unique over all splits)."""

    def __init__(self, splits: dict[str, list[Arena]]) -> None:
        self.splits = splits
        self.all = [a for arenas in splits.values() for a in arenas]
        self.by_id: dict[str, Arena] = {}
        self.split_of: dict[str, str] = {}
        for name, arenas in splits.items():
            for arena in arenas:
                if arena.id in self.by_id:
                    raise InputError(f"arena id {arena.id!r} is in more than one split")
                self.by_id[arena.id] = arena
                self.split_of[arena.id] = name
        if not self.all:
            raise InputError("the arena corpus is empty")

    @classmethod
    def from_files(cls, paths: Sequence[Path]) -> ArenaCorpus:
        """One split per file, named by its stem (``train.jsonl`` → ``train``)."""
        splits: dict[str, list[Arena]] = {}
        for path in paths:
            if path.stem in splits:
                raise InputError(f"two arena files name the split {path.stem!r}")
            splits[path.stem] = read_arenas(path)
        return cls(splits)

    def pick(self, request: ResetRequest) -> Arena:
        """The arena a reset asks for; a ValueError says why none fits."""
        if request.arena_id is not None:
            if request.arena_id not in self.by_id:
                raise ValueError(f"unknown arena id {request.arena_id!r}")
            return self.by_id[request.arena_id]
        if request.split is not None or request.index is not None:
            if request.split is None or request.index is None:
                raise ValueError("a reset by task gives both split and index")
            return self.split(request.split)[self._index(request.split, request.index)]
        if request.seed is not None:
            return self.all[request.seed % len(self.all)]
        raise ValueError("reset needs arena_id, split and index, or seed")

    def split(self, name: str) -> list[Arena]:
        if name not in self.splits:
            raise ValueError(f"unknown split {name!r}; splits: {sorted(self.splits)}")
        return self.splits[name]

    def _index(self, split: str, index: int) -> int:
        if not 0 <= index < len(self.splits[split]):
            raise ValueError(f"split {split!r} has {len(self.splits[split])} tasks; index {index} is out")
        return index

    def task(self, split: str, index: int) -> ArenaTask:
        arena = self.split(split)[self._index(split, index)]
        question = next((m.content or "" for m in reversed(arena.messages) if m.role == "user"), "")
        return ArenaTask(
            arena_id=arena.id,
            split=split,
            index=index,
            domain=arena.domain,
            family=arena.family,
            question=question,
        )


class ArenaSession:
    """One WebSocket session's episode. Synchronous (the sandbox is): the server calls it in a thread."""

    def __init__(
        self,
        corpus: ArenaCorpus,
        executor: ToolExecutor,
        config: ArenaServerConfig,
        distractors: Mapping[str, DistractorSampler] | None = None,
    ) -> None:
        self.corpus = corpus
        self.executor = executor
        self.config = config
        self.distractors = distractors or {}
        self.env: ArenaEnv | None = None
        self.state = ArenaState()

    def reset(self, data: dict[str, Any]) -> ArenaObservation:
        request = ResetRequest.model_validate(data)
        try:
            arena = self.corpus.pick(request)
        except ValueError as exc:
            return ArenaObservation(error=str(exc))
        seed = request.seed or 0
        extra: list[ExtraTool] = []
        metadata: dict[str, Any] = {}
        sampler = self.distractors.get(self.corpus.split_of[arena.id])
        if sampler is not None:
            draw = sampler.sample(arena, episode=request.episode)
            extra = sampler.extra_tools(draw)
            metadata["distractors"] = draw.model_dump()
        self.env = ArenaEnv(arena, self.executor, self.config.env, extra, seed=seed)
        messages, tools = self.env.reset()
        self.state = ArenaState(
            episode_id=request.episode_id or uuid.uuid4().hex, arena_id=arena.id, seed=seed
        )
        return ArenaObservation(arena_id=arena.id, messages=messages, tools=tools, metadata=metadata)

    def step(self, data: dict[str, Any]) -> ArenaObservation:
        env = self.env
        if env is None or self.state.done:
            return ArenaObservation(error="no episode is running: reset first", done=self.state.done)
        try:
            action = ArenaAction.model_validate(data)
        except ValidationError as exc:
            return ArenaObservation(arena_id=env.arena.id, error=f"invalid action: {_first_error(exc)}")
        if len(action.tool_calls) > self.config.max_calls_per_step:
            limit = self.config.max_calls_per_step
            error = f"{len(action.tool_calls)} tool calls in one step; the limit is {limit}"
            return ArenaObservation(arena_id=env.arena.id, error=error)
        self.state.step_count += 1
        if not action.tool_calls:
            return self._finish(env, action.content)
        calls = parse_openai_calls(action.tool_calls)
        messages = env.step(calls)
        executed = env.calls[len(env.calls) - len(calls) :]
        self.state.calls = len(env.calls)
        observation = ArenaObservation(
            arena_id=env.arena.id, messages=messages, call_ok=[c.ok for c in executed]
        )
        if self.state.step_count >= self.config.max_turns:
            final = self._finish(env, None)
            return observation.model_copy(
                update={"done": True, "reward": final.reward, "metadata": final.metadata}
            )
        return observation

    def refuse(self, error: str) -> ArenaObservation:
        """An action that never reached the episode (e.g. too large to read)."""
        return ArenaObservation(
            arena_id=self.env.arena.id if self.env else "", error=error, done=self.state.done
        )

    def _finish(self, env: ArenaEnv, final: str | None) -> ArenaObservation:
        breakdown = env.reward(final)
        self.state.done = True
        return ArenaObservation(
            arena_id=env.arena.id,
            done=True,
            reward=breakdown.reward,
            metadata={
                "recall": breakdown.recall,
                "precision": breakdown.precision,
                "reward": breakdown.model_dump(),
            },
        )


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "action"
    return f"{where}: {err['msg']}"


class ArenaServer:
    """Sessions over one corpus and one executor; :meth:`app` is the Starlette application.
    ``distractors`` (a sampler by split name; optional) offers seeded distractor tools with every reset."""

    def __init__(
        self,
        corpus: ArenaCorpus,
        executor: ToolExecutor,
        config: ArenaServerConfig | None = None,
        token: str | None = None,
        distractors: Mapping[str, DistractorSampler] | None = None,
    ) -> None:
        self.corpus = corpus
        self.executor = executor
        self.config = config or ArenaServerConfig()
        self.distractors = distractors or {}
        self.token = token if token is not None else os.environ.get(TOKEN_ENV)
        self.sessions = 0

    def authorised(self, conn: HTTPConnection) -> bool:
        if not self.token:
            return True
        given = conn.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode())

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                WebSocketRoute("/ws", self._websocket),
                Route("/health", self._health, methods=["GET"]),
                Route("/list_environments", self._environments, methods=["GET"]),
                Route("/{env}/splits", self._splits, methods=["GET"]),
                Route("/{env}/{method}", self._tasks, methods=["POST"]),
            ]
        )

    async def _websocket(self, ws: WebSocket) -> None:
        if not self.authorised(ws):
            await ws.close(code=1008, reason="missing or wrong bearer token")  # before accept: HTTP 403
            return
        await ws.accept()
        if self.sessions >= self.config.max_sessions:
            message = f"the server is at its limit of {self.config.max_sessions} sessions"
            await ws.send_json(error_frame(message, "CAPACITY_REACHED"))
            await ws.close(code=1013)
            return
        self.sessions += 1
        session = ArenaSession(self.corpus, self.executor, self.config, self.distractors)
        try:
            await self._serve_session(ws, session)
        except WebSocketDisconnect:
            pass
        finally:
            self.sessions -= 1

    async def _serve_session(self, ws: WebSocket, session: ArenaSession) -> None:
        while True:
            try:
                raw = await asyncio.wait_for(ws.receive_text(), timeout=self.config.idle_timeout_s)
            except TimeoutError:
                message = f"session closed after {self.config.idle_timeout_s:g} s without a message"
                await ws.send_json(error_frame(message, "SESSION_ERROR"))
                await ws.close(code=1000)
                return
            reply = await self._answer(session, raw)
            if reply is None:
                await ws.close(code=1000)
                return
            await ws.send_text(json.dumps(reply, ensure_ascii=False))

    async def _answer(self, session: ArenaSession, raw: str) -> dict[str, Any] | None:
        """The reply frame to one client frame; None for ``close``."""
        if len(raw.encode()) > self.config.max_message_bytes:
            error = f"message of {len(raw.encode())} bytes; the limit is {self.config.max_message_bytes}"
            return session.refuse(error).frame()
        try:
            message = json.loads(raw)
        except json.JSONDecodeError as exc:
            return error_frame(f"Invalid JSON: {exc}", "INVALID_JSON")
        kind = message.get("type") if isinstance(message, dict) else None
        data = message.get("data", {}) if isinstance(message, dict) else {}
        if not isinstance(data, dict):
            return error_frame("data must be a JSON object", "VALIDATION_ERROR")
        try:
            if kind == "reset":
                return (await asyncio.to_thread(session.reset, data)).frame()
            if kind == "step":
                return (await asyncio.to_thread(session.step, data)).frame()
        except ValidationError as exc:
            return error_frame(f"invalid {kind}: {_first_error(exc)}", "VALIDATION_ERROR")
        except RuntimeError as exc:  # the sandbox refused to run tool code: not the model's fault
            return error_frame(str(exc), "EXECUTION_ERROR")
        if kind == "state":
            return {"type": "state", "data": session.state.model_dump()}
        if kind == "close":
            return None
        return error_frame(f"Unknown message type: {kind}", "UNKNOWN_TYPE")

    async def _health(self, request: Request) -> JSONResponse:
        if not self.authorised(request):
            return _refused()
        refusal = self.executor.refusal
        body = {
            "status": "healthy" if refusal is None else "unhealthy",
            "sessions": self.sessions,
            "max_sessions": self.config.max_sessions,
            "arenas": len(self.corpus.all),
            "distractors_per_band": max((d.config.k_per_band for d in self.distractors.values()), default=0),
            "refusal": refusal,
        }
        return JSONResponse(body, status_code=200 if refusal is None else 503)

    async def _environments(self, request: Request) -> JSONResponse:
        return JSONResponse([ENV_NAME]) if self.authorised(request) else _refused()

    async def _splits(self, request: Request) -> JSONResponse:
        if not self.authorised(request):
            return _refused()
        if request.path_params["env"].lower() != ENV_NAME:
            return JSONResponse({"detail": f"unknown environment {request.path_params['env']!r}"}, 404)
        return JSONResponse([{"name": name, "type": _split_type(name)} for name in self.corpus.splits])

    async def _tasks(self, request: Request) -> JSONResponse:
        """openenv's ``tasks``, ``num_tasks``, ``task`` and ``task_range`` routes."""
        if not self.authorised(request):
            return _refused()
        env, method = request.path_params["env"], request.path_params["method"]
        if env.lower() != ENV_NAME or method not in ("tasks", "num_tasks", "task", "task_range"):
            return JSONResponse({"detail": f"no route /{env}/{method}"}, 404)
        try:
            body = await request.json()
            split = str(body["split"])
            n = len(self.corpus.split(split))
            if method == "num_tasks":
                return JSONResponse({"num_tasks": n})
            if method == "task":
                return JSONResponse({"task": self.corpus.task(split, int(body["index"])).model_dump()})
            start, stop = (body.get("start"), body.get("stop")) if method == "task_range" else (None, None)
            tasks = [self.corpus.task(split, i).model_dump() for i in range(n)[slice(start, stop)]]
            key = {"tasks": tasks, "env_name": ENV_NAME} if method == "tasks" else {"tasks": tasks}
            return JSONResponse(key)
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"detail": f"bad task request: {exc}"}, 400)


def _split_type(name: str) -> str:
    return name if name in ("train", "validation", "test") else "validation"


def _refused() -> JSONResponse:
    return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)


def serve_arenas(server: ArenaServer, host: str = "127.0.0.1", port: int = 8791) -> None:
    """Run until SIGINT/SIGTERM; on either, uvicorn stops taking sessions and closes the open ones (within
    10 s), then the caller's ``with executor`` block stops the sandbox workers."""
    import uvicorn

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        uvicorn.run(
            server.app(),
            host=host,
            port=port,
            log_level="warning",
            ws_max_size=4 * server.config.max_message_bytes,
            timeout_graceful_shutdown=10,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
