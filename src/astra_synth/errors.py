"""Exceptions shared across layers."""

from __future__ import annotations


class Rejection(Exception):
    """An item failed a check: recorded in ``rejects.jsonl`` with its stage, id, reason and detail.

    Stages may raise it (or any subclass) instead of returning ``Rejected``; the runner records both alike.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class InputError(ValueError):
    """Bad input data; the message names the file, the line and the field."""
