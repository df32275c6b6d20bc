"""The SFT set: OpenAI-format JSONL, a Hugging Face parquet copy, and a provenance sidecar.

``sft.jsonl``: one ``{"id", "messages", "tools"}`` per line, messages in the canonical chat format (assistant
turns merged: ``content`` + ``reasoning_content`` + ``tool_calls`` with arguments as JSON strings; results as
``role: tool`` with ``tool_call_id``). ``sft.parquet`` holds the same rows with a fixed message schema and
``tools`` as a JSON string, because tool parameter schemas differ from tool to tool and a columnar type
cannot hold them all. ``provenance.jsonl`` keeps, per id, where the item came from and every score: chain
origin and verification, the five task scores, the rollout's status and routes, the seven judge dimensions
with their status. The publish step (:mod:`astra_synth.export.publish`) runs the contamination firewall first
and passes only the rows it kept.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from astra_synth.agent.chat import arguments_string
from astra_synth.runs.jsonl import write_bytes_atomic
from astra_synth.trajectories.judge import JudgedTrajectory

_TOOL_CALL = pa.struct(
    [
        ("id", pa.string()),
        ("type", pa.string()),
        ("function", pa.struct([("name", pa.string()), ("arguments", pa.string())])),
    ]
)
_MESSAGE = pa.struct(
    [
        ("role", pa.string()),
        ("content", pa.string()),
        ("reasoning_content", pa.string()),
        ("tool_calls", pa.list_(_TOOL_CALL)),
        ("tool_call_id", pa.string()),
    ]
)
PARQUET_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("messages", pa.list_(_MESSAGE)),
        ("tools", pa.string()),
        ("server_id", pa.string()),
        ("score", pa.float64()),
    ]
)


class ExportSummary(BaseModel):
    rows: int
    messages: int
    tool_calls: int
    mean_score: float | None
    dimension_means: dict[str, float]
    roles: dict[str, int]
    files: dict[str, str]


def canonical_message(message: dict[str, Any]) -> dict[str, Any]:
    """Only the fields of the chat format, with tool-call arguments as JSON strings. A missing ``content``
    becomes ``""``: chat templates concatenate it, and ``None`` breaks many of them."""
    out: dict[str, Any] = {"role": message["role"], "content": message.get("content") or ""}
    if message.get("reasoning_content"):
        out["reasoning_content"] = message["reasoning_content"]
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": str(call.get("id")),
                "type": "function",
                "function": {
                    "name": call.get("function", {}).get("name", ""),
                    "arguments": arguments_string(call.get("function", {}).get("arguments")),
                },
            }
            for call in message["tool_calls"]
        ]
    if message["role"] == "tool":
        out["tool_call_id"] = message.get("tool_call_id")
    return out


def sft_row(item_id: str, item: JudgedTrajectory) -> dict[str, Any]:
    return {"id": item_id, "messages": [canonical_message(m) for m in item.messages], "tools": item.tools}


def provenance_row(item_id: str, item: JudgedTrajectory) -> dict[str, Any]:
    task = item.task
    return {
        "id": item_id,
        "server_id": task.server.id,
        "server_title": task.server.title,
        "domain": task.server.domain,
        "source": task.server.source,
        "license": task.server.license,
        "task": {
            "mode": task.mode,
            "question": task.question,
            "target_tools": task.target_tools,
            "chain": task.chain,
            "chain_origin": task.chain_origin,
            "augmentation": task.augmentation,
            "original_question": task.original_question,
            "persona": task.persona,
            "verification": task.verification.model_dump() if task.verification else None,
            "scores": task.scores.model_dump() if task.scores else None,
        },
        "rollout": {
            "status": item.status,
            "llm_calls": item.llm_calls,
            "tool_calls": item.tool_calls,
            "tool_failures": item.tool_failures,
            "execution": item.execution,
            "seconds": item.seconds,
        },
        "judge": item.judge.model_dump(),
    }


def _parquet_row(row: dict[str, Any], item: JudgedTrajectory) -> dict[str, Any]:
    messages = [
        {
            "role": m["role"],
            "content": m.get("content"),
            "reasoning_content": m.get("reasoning_content"),
            "tool_calls": m.get("tool_calls"),
            "tool_call_id": m.get("tool_call_id"),
        }
        for m in row["messages"]
    ]
    return {
        "id": row["id"],
        "messages": messages,
        "tools": json.dumps(row["tools"], ensure_ascii=False),
        "server_id": item.task.server.id,
        "score": item.judge.overall,
    }


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in rows)


def export_sft(
    items: list[tuple[str, JudgedTrajectory]],
    out_dir: Path,
    *,
    parquet: bool = True,
) -> ExportSummary:
    """Write the three files (atomically, so a crash never leaves half a file) and summarise them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [sft_row(i, t) for i, t in items]
    files = {"sft": out_dir / "sft.jsonl", "provenance": out_dir / "provenance.jsonl"}
    write_bytes_atomic(files["sft"], _jsonl(rows))
    write_bytes_atomic(files["provenance"], _jsonl([provenance_row(i, t) for i, t in items]))
    if parquet:
        files["parquet"] = out_dir / "sft.parquet"
        table = pa.Table.from_pylist(
            [_parquet_row(r, t) for r, (_, t) in zip(rows, items, strict=True)], schema=PARQUET_SCHEMA
        )
        tmp = files["parquet"].with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        tmp.replace(files["parquet"])
    roles = Counter(m["role"] for r in rows for m in r["messages"])
    dims: dict[str, list[float]] = {}
    for _, t in items:
        for name, result in t.judge.dimensions.items():
            if result.score is not None:
                dims.setdefault(name, []).append(result.score)
    scores = [t.judge.overall for _, t in items]
    return ExportSummary(
        rows=len(rows),
        messages=sum(roles.values()),
        tool_calls=sum(len(m.get("tool_calls") or []) for r in rows for m in r["messages"]),
        mean_score=round(sum(scores) / len(scores), 4) if scores else None,
        dimension_means={k: round(sum(v) / len(v), 4) for k, v in sorted(dims.items())},
        roles=dict(roles),
        files={k: str(v) for k, v in files.items()},
    )
