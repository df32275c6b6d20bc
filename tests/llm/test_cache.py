"""ResponseCache: content keys, persistence, crash safety (a real ``kill -9``), thread safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from astra_synth.llm.cache import ResponseCache, content_key


def test_content_key_is_canonical() -> None:
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})
    assert content_key({"a": 1}) != content_key({"a": 1.5})
    assert content_key({"t": "é"}) != content_key({"t": "e"})


def test_round_trip_and_stats(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "deep" / "llm.sqlite")
    assert cache.get_chat("k") is None
    cache.put_chat("k", {"message": {"role": "assistant", "content": "hi"}, "usage": {"prompt_tokens": 3}})
    assert cache.get_chat("k") == {
        "message": {"role": "assistant", "content": "hi"},
        "usage": {"prompt_tokens": 3},
    }
    vector = [0.1, -2.5e-8, 1 / 3]
    cache.put_embedding("e", vector)
    assert cache.get_embedding("e") == vector  # exact floats, no rounding
    assert cache.get_embedding("missing") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (2, 2)


def test_committed_entries_survive_kill_9(tmp_path: Path) -> None:
    """A writer is killed mid-stream; every put it acknowledged is readable afterwards."""
    path = tmp_path / "llm.sqlite"
    writer = textwrap.dedent(
        f"""
        import sys
        from astra_synth.llm.cache import ResponseCache
        cache = ResponseCache({str(path)!r})
        i = 0
        while True:
            cache.put_chat(f"k{{i}}", {{"i": i, "pad": "x" * 2000}})
            print(i, flush=True)
            i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acknowledged = -1
    for line in proc.stdout:
        acknowledged = int(line)
        if acknowledged >= 200:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    cache = ResponseCache(path)
    assert all(cache.get_chat(f"k{i}") == {"i": i, "pad": "x" * 2000} for i in range(acknowledged + 1))


def test_threads_share_one_cache(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "llm.sqlite")
    wrong: list[str] = []

    def work(t: int) -> None:
        for i in range(50):
            cache.put_chat(f"{t}-{i}", {"v": i})
            if cache.get_chat(f"{t}-{i}") != {"v": i}:
                wrong.append(f"{t}-{i}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert wrong == [] and cache.stats().hits == 400
    reopened = ResponseCache(tmp_path / "llm.sqlite")
    assert reopened.get_chat("7-49") == {"v": 49}
