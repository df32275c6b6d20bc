"""An evaluation's output folder belongs to one run: results of two models or settings must never mix."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ValidationError

from astra_synth.runs.jsonl import write_json_atomic


def claim_out_dir(
    record: Path, identity: BaseModel, *, unrecorded: Path, what: str, error: type[Exception]
) -> None:
    """Record ``identity`` in ``record`` so a rerun resumes the same run, and refuse the folder when it holds
    another run (another identity, or results at ``unrecorded`` written without a record). The message names
    the settings that differ; ``what`` names the benchmark in it."""
    if record.is_file():
        try:
            previous = type(identity).model_validate_json(record.read_text(encoding="utf-8"))
        except ValidationError as exc:
            raise error(f"{record}: unreadable run record; use another --out ({exc})") from exc
        if previous != identity:
            changed = [k for k in type(identity).model_fields if getattr(previous, k) != getattr(identity, k)]
            raise error(
                f"{record.parent} holds a {what} run with other settings ({', '.join(changed)} differ); "
                "use another --out"
            )
    elif unrecorded.exists():
        raise error(f"{record.parent} holds {what} results this command did not record; use another --out")
    write_json_atomic(record, identity.model_dump(mode="json"))
