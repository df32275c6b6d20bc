"""Headless Chromium over the DevTools protocol: load pages and collect what went wrong on each.

Console output alone misses failed loads and uncaught exceptions, so the page's Runtime, Log and Network
events are all watched: a console error or assertion, an uncaught exception, a log entry at level error
(e.g. "Failed to load resource") and a failed network load each count as a problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run")
LOAD_TIMEOUT_S = 30.0


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        raise RuntimeError("chromium is not installed: run `make system-deps` (Debian package `chromium`)")
    return found


def screenshot(url: str, out: Path, *, width: int = 1280, height: int = 1600) -> None:
    """Chromium's own ``--screenshot`` of one page."""
    subprocess.run(
        [chromium(), *FLAGS, f"--window-size={width},{height}", f"--screenshot={out}", url],
        check=True,
        capture_output=True,
        timeout=120,
    )


class _Session:
    """One page target, attached flat: commands carry its sessionId, events come back on one socket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.loaded = asyncio.Event()
        self.session: str | None = None

    async def pump(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            elif data.get("method") == "Page.loadEventFired":
                self.loaded.set()
            elif "method" in data:
                self.events.append(data)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[call_id] = future
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        await self.ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(future, LOAD_TIMEOUT_S)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))


def _problem(event: dict[str, Any]) -> str | None:
    method, params = event["method"], event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        return "console error: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        return f"uncaught exception: {details.get('exception', {}).get('description', details.get('text'))}"
    if method == "Log.entryAdded" and params["entry"].get("level") == "error":
        return f"log error: {params['entry'].get('text')} {params['entry'].get('url', '')}"
    if method == "Network.loadingFailed":
        return f"failed load: {params.get('errorText')}"
    return None


async def _problems(urls: list[str], profile: Path) -> dict[str, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        chromium(),
        *FLAGS,
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        ws_url = None
        while ws_url is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), LOAD_TIMEOUT_S)).decode()
            if not line:
                raise RuntimeError("chromium exited before it opened its DevTools port")
            if match := re.search(r"DevTools listening on (ws://\S+)", line):
                ws_url = match.group(1)
        drain = asyncio.create_task(proc.stderr.read())  # keep the pipe from filling up
        found: dict[str, list[str]] = {}
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
            page = _Session(ws)
            pump = asyncio.create_task(page.pump())
            target = await page.call("Target.createTarget", url="about:blank")
            attached = await page.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
            page.session = attached["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                await page.call(f"{domain}.enable")
            for url in urls:
                page.events.clear()
                page.loaded.clear()
                nav = await page.call("Page.navigate", url=url)
                problems = [f"navigation failed: {nav['errorText']}"] if nav.get("errorText") else []
                await asyncio.wait_for(page.loaded.wait(), LOAD_TIMEOUT_S)
                await asyncio.sleep(0.2)  # late console messages and failed sub-resources
                problems += [p for e in page.events if (p := _problem(e))]
                found[url] = problems
            pump.cancel()
        drain.cancel()
        return found
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def page_problems(urls: list[str], profile: Path) -> dict[str, list[str]]:
    """Load each URL in one headless Chromium; URL → the problems seen while it loaded (empty: clean)."""
    return asyncio.run(_problems(urls, profile))
