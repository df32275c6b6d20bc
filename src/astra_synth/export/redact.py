"""Scrub a run's config before it is published in a dataset card.

A config may carry an API key pasted where an env-var name belongs, credentials in a URL, or absolute paths
that reveal a user name and machine layout. None of that belongs in a public card, and the data loses nothing
without it: file names are kept, folders are not.
"""

from __future__ import annotations

import os
import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDACTED = "<redacted>"
_SECRET_KEY = re.compile(
    r"(^|_)(api_?key|secret|password|passwd|token|auth|authorization|credentials?|cookie)($|_)", re.I
)
_PATH = re.compile(r"(?<![\w:/.<>-])~?/[^\s'\"]+")
_SECRET_VALUE = re.compile(r"^(sk-|sk_|hf_|ghp_|gho_|github_pat_|xox[abp]-|AKIA|Bearer\s)\S{6,}")


def _secret_env_values() -> set[str]:
    """Values of this process's secret-looking environment variables, to catch one pasted into a config."""
    return {v for k, v in os.environ.items() if _SECRET_KEY.search(k) and len(v) >= 8}


def _clean_string(key: str, value: str, secrets: set[str]) -> str:
    names_a_variable = key.lower().endswith("_env")  # api_key_env holds a variable's name, not its value
    if (_SECRET_KEY.search(key) and not names_a_variable) or _SECRET_VALUE.match(value) or value in secrets:
        return REDACTED
    if "://" in value:
        parts = urlsplit(value)
        if parts.username or parts.password or parts.query:
            host = parts.hostname or ""
            netloc = f"{host}:{parts.port}" if parts.port else host
            return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        return value
    return scrub_paths(value)


def scrub_paths(text: str) -> str:
    """Every absolute or home-relative path in ``text`` cut to ``<local>/<file name>``."""
    return _PATH.sub(lambda m: f"<local>/{PurePosixPath(m.group(0)).name}", text)


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with secrets replaced by ``<redacted>`` and local paths cut to names."""
    secrets = _secret_env_values()

    def walk(node: Any, name: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, name) for v in node]
        if isinstance(node, str):
            return _clean_string(name, node, secrets)
        return node

    return walk(value, "")
