"""A small real MCP server for tests: over stdio (default) or streamable HTTP (``--http PORT``).

Its tools let tests provoke what live servers do in the wild: answer, hang past a timeout, die mid-session.
"""

from __future__ import annotations

import argparse
import os
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("helper", instructions="Test server: echo, sleep, crash, and a counter that keeps state.")
_counter = {"value": 0}


@server.tool()
def echo(text: str) -> str:
    """Return the given text unchanged."""
    return text


@server.tool()
def add_to_counter(amount: int) -> dict[str, int]:
    """Add an amount to the server's counter and return the new total."""
    _counter["value"] += amount
    return {"total": _counter["value"]}


@server.tool()
def sleep_for(seconds: float) -> str:
    """Block for the given number of seconds, then answer (to provoke client timeouts)."""
    time.sleep(seconds)
    return "awake"


@server.tool()
def process_id() -> int:
    """The operating-system process id of this server."""
    return os.getpid()


@server.tool()
def crash() -> str:
    """Kill this server process at once, as a crashing server would."""
    os._exit(3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None, help="serve streamable HTTP on this port")
    args = parser.parse_args()
    if args.http is None:
        server.run("stdio")
    else:
        import uvicorn

        uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=args.http, log_level="warning")


if __name__ == "__main__":
    main()
