"""``mcp-server-sqlite`` from PyPI, an mcp 1.x server, run from its own pinned venv and driven by our mcp 2.x
client: the build, the handshake across protocol versions, the import, real calls and their error answers."""

from __future__ import annotations

import ast
import sqlite3
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from astra_synth.cli import app
from astra_synth.tools.mcp import McpSession
from astra_synth.tools.registry import load_servers
from astra_synth.tools.server_venvs import CONSTRAINTS_DIR, ServerVenv, ensure_server_venv
from astra_synth.tools.spec import StdioTransport
from astra_synth.venvs import PinnedVenv, VenvError, ensure_venv, read_marker

pytestmark = pytest.mark.slow  # the first run on a machine builds the venv from PyPI (about 40 s)

SERVER = "mcp-server-sqlite"
LOCK = CONSTRAINTS_DIR / f"{SERVER}.txt"
TOOLS = {"read_query", "write_query", "create_table", "list_tables", "describe_table", "append_insight"}
EXAMPLES = Path(__file__).parents[2] / "examples" / "servers" / "servers.jsonl"
runner = CliRunner()


@pytest.fixture(scope="session")
def sqlite_venv() -> ServerVenv:
    return ensure_server_venv(SERVER)


@pytest.fixture
def sqlite_stdio(sqlite_venv: ServerVenv, tmp_path: Path) -> StdioTransport:
    return StdioTransport(command=str(sqlite_venv.executable), args=["--db-path", str(tmp_path / "shop.db")])


def _rows(text: str) -> object:
    """The server answers rows as a Python repr, not JSON."""
    return ast.literal_eval(text)


def test_the_venv_holds_exactly_the_pinned_set_on_mcp_1x(sqlite_venv: ServerVenv) -> None:
    pinned = {line for line in LOCK.read_text().splitlines() if line and not line.startswith("#")}
    assert {"mcp==1.30.0", "mcp-server-sqlite==2025.4.25"} <= pinned
    freeze = subprocess.run(
        [str(sqlite_venv.python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    )
    assert set(freeze.stdout.split()) == pinned
    assert ensure_server_venv(SERVER) == sqlite_venv  # the marker is reused, nothing rebuilt


def test_a_marker_from_another_lock_is_stale(sqlite_venv: ServerVenv, tmp_path: Path) -> None:
    marker = "astra-server-venv.json"
    (tmp_path / marker).write_text(sqlite_venv.model_copy(update={"lock_sha256": "0" * 64}).model_dump_json())
    assert read_marker(tmp_path, marker, ServerVenv, LOCK, server=SERVER) is None
    (tmp_path / marker).write_text(sqlite_venv.model_dump_json())
    assert read_marker(tmp_path, marker, ServerVenv, LOCK, server=SERVER) == sqlite_venv
    assert read_marker(tmp_path, marker, ServerVenv, LOCK, server="other") is None


def test_server_venv_command_prints_the_executable(sqlite_venv: ServerVenv) -> None:
    result = runner.invoke(app, ["tools", "server-venv", SERVER])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(sqlite_venv.executable)
    assert f"import-mcp --out REGISTRY -- {sqlite_venv.executable}" in result.stderr
    unknown = runner.invoke(app, ["tools", "server-venv", "mcp-server-nope"])
    assert unknown.exit_code == 1
    assert "'mcp-server-nope'" in unknown.output and f"known: {SERVER}" in unknown.output


def test_import_mcp_lists_its_real_tools_as_in_the_example_record(
    sqlite_stdio: StdioTransport, tmp_path: Path
) -> None:
    out = tmp_path / "registry.jsonl"
    args = ["tools", "import-mcp", "--out", str(out), "--id", "mcp-sqlite", "--domain", "data", "--"]
    result = runner.invoke(app, [*args, sqlite_stdio.command, *sqlite_stdio.args])
    assert result.exit_code == 0, result.output
    [server] = load_servers(out)
    assert {t.name for t in server.tools} == TOOLS
    assert server.transport == sqlite_stdio
    describe = server.tool("describe_table")
    assert describe is not None and describe.parameters["required"] == ["table_name"]
    [example] = [s for s in load_servers(EXAMPLES) if s.id == "mcp-sqlite"]
    assert example.tools == server.tools


async def test_handshake_falls_back_to_the_servers_protocol_version(sqlite_stdio: StdioTransport) -> None:
    async with McpSession(sqlite_stdio) as session:
        client = await session.connect()
        assert client.server_info.name == "sqlite"
        # mcp 2.3 first asks server/discover (2026-07-28); mcp 1.30 refuses it, so they settle on its latest.
        assert client.protocol_version == "2025-11-25"


async def test_create_insert_and_read_back(sqlite_stdio: StdioTransport, tmp_path: Path) -> None:
    async with McpSession(sqlite_stdio) as s:
        created = await s.call(
            "create_table", {"query": "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL)"}
        )
        assert (created.is_error, created.text) == (False, "Table created successfully")
        inserted = await s.call(
            "write_query", {"query": "INSERT INTO books (title) VALUES ('Dune'), ('Emma')"}
        )
        assert _rows(inserted.text) == [{"affected_rows": 2}]
        read = await s.call("read_query", {"query": "SELECT id, title FROM books ORDER BY id"})
        assert not read.is_error
        assert _rows(read.text) == [{"id": 1, "title": "Dune"}, {"id": 2, "title": "Emma"}]
        assert _rows((await s.call("list_tables", {})).text) == [{"name": "books"}]
        columns = _rows((await s.call("describe_table", {"table_name": "books"})).text)
        assert isinstance(columns, list)
        assert [(c["name"], c["type"], c["pk"]) for c in columns] == [
            ("id", "INTEGER", 1),
            ("title", "TEXT", 0),
        ]
    with sqlite3.connect(tmp_path / "shop.db") as db:  # the server wrote the real file
        assert db.execute("SELECT title FROM books ORDER BY id").fetchall() == [("Dune",), ("Emma",)]


async def test_bad_sql_is_an_answer_and_the_session_goes_on(sqlite_stdio: StdioTransport) -> None:
    async with McpSession(sqlite_stdio) as s:
        missing = await s.call("read_query", {"query": "SELECT * FROM missing"})
        # the server catches sqlite errors and answers them as text, without the error flag
        assert (missing.is_error, missing.text) == (False, "Database error: no such table: missing")
        wrong_tool = await s.call("write_query", {"query": "SELECT 1"})
        assert wrong_tool.text == "Error: SELECT queries are not allowed for write_query"
        no_query = await s.call("read_query", {})  # mcp 1.30 checks arguments against the schema
        assert no_query.is_error
        assert no_query.text == "Input validation error: 'query' is a required property"
        assert _rows((await s.call("list_tables", {})).text) == []
        assert s.reconnects == 0


def test_a_failed_pip_install_is_a_clear_error_and_leaves_no_marker(tmp_path: Path) -> None:
    lock = tmp_path / "bad.txt"
    lock.write_text("mcp-server-sqlite==1999.1.1\n")
    with pytest.raises(VenvError) as info:
        ensure_venv(tmp_path / "venv", lock, marker="marker.json", model=PinnedVenv, label="the test venv")
    message = str(info.value)
    assert message.startswith(f"creating the test venv at {tmp_path / 'venv'}")
    assert "pip install -r bad.txt (needs network to PyPI) failed (exit 1)" in message
    assert "mcp-server-sqlite==1999.1.1" in message  # pip's own words, from the output tail
    assert not (tmp_path / "venv" / "marker.json").exists()
