"""BFCL-v3 multi-turn, fully offline, through the pinned ``bfcl-eval`` wheel in a venv of its own.

BFCL data is for **evaluation only**: never train on it, never feed it to synthesis. Its scores are only
comparable between runs with the same ``bfcl-eval`` version and protocol, so the version is pinned and
written into every summary.

Why a separate venv: ``bfcl-eval``'s metadata pulls sentence-transformers → CUDA torch (+ ~15 nvidia wheels)
and faiss, used only by categories we do not run, and its CLI imports every vendor SDK at start-up. The venv
is created once per machine (``$ASTRA_CACHE_DIR`` or ``~/.cache/astra-synth``, under a file lock) from
``bfcl_constraints.txt``, a complete lock installed with ``--no-deps``. Why a subprocess: BFCL keeps
executable-backend state in module globals and runs its own CLI; we drive that CLI through
``bfcl_runner.py`` with ``BFCL_PROJECT_ROOT`` = the output folder, so BFCL's own result and score files are
what we report from.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from astra_synth.config import EndpointConfig, StrictModel
from astra_synth.evaluation.endpoint_errors import ErrorPolicy
from astra_synth.evaluation.out_dir import claim_out_dir
from astra_synth.runs.jsonl import write_json_atomic
from astra_synth.venvs import PinnedVenv, SideVenv, run_step

BFCL_EVAL_VERSION = "2026.3.23"
DATA_PREFIX = "BFCL_v4"
"""File prefix of this version's data, result and score files (the multi-turn set is BFCL-v3, fixed)."""
Category = Literal[
    "multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context"
]
CATEGORIES: tuple[Category, ...] = (
    "multi_turn_base",
    "multi_turn_miss_func",
    "multi_turn_miss_param",
    "multi_turn_long_context",
)
REGISTRY_NAME = "astra-fc"
"""Our model's name inside BFCL (result folder); no ``_``: BFCL's CSV step maps ``_`` back to ``/``."""
LOCK_FILE = Path(__file__).with_name("bfcl_constraints.txt")
RUNNER = Path(__file__).with_name("bfcl_runner.py")
_VENV_MARKER = "astra-bfcl-venv.json"
_RUN_FILE = "astra_bfcl_run.json"
SUMMARY_FILE = "bfcl_summary.json"
GENERATE_LOG = "bfcl_generate.log"
_INFERENCE_ERROR = "Error during inference"


class BfclError(RuntimeError):
    """BFCL could not be set up or run; the message says which step and shows its output tail."""


class BfclVenv(PinnedVenv):
    """A ready BFCL venv (the marker file written after a successful install)."""

    bfcl_eval_version: str

    @property
    def data_dir(self) -> Path:
        return self.purelib / "bfcl_eval" / "data"


class CategoryScore(BaseModel):
    category: Category
    accuracy: float = Field(ge=0, le=1, description="correct / scored.")
    correct: int
    total: int
    inference_errors: int = Field(
        description="Entries BFCL recorded as failed requests (scored wrong unless allow_errors)."
    )
    scored: int = Field(description="The denominator: total, or total - inference_errors (allow_errors).")


class BfclReport(StrictModel):
    """What ``astra eval bfcl`` prints and writes as ``bfcl_summary.json``."""

    schema_version: int = 1
    bfcl_eval_version: str = BFCL_EVAL_VERSION
    model: str
    endpoint: str = Field(description="The --base-url, or 'embedded'.")
    max_tokens: int | None = Field(description="Cap per response; None = BFCL's protocol (no cap).")
    categories: list[CategoryScore]
    overall: float = Field(
        description="Unweighted mean over the categories run (BFCL's overall counts missing ones as 0)."
    )
    entries: int
    errors: int = Field(description="Entries whose requests failed at the endpoint, over all categories.")
    allow_errors: bool
    error_violation: str | None = Field(description="Why the run failed for endpoint reasons, else None.")
    wall_s: float
    out_dir: Path


class _RunIdentity(BaseModel):
    """What an output folder holds results for; BFCL resumes only a run with the same identity."""

    bfcl_eval_version: str
    model: str
    endpoint: str
    max_tokens: int | None
    ids: dict[str, list[str]]


def _check_data(venv: BfclVenv, where: str) -> None:
    if not (venv.data_dir / f"{DATA_PREFIX}_multi_turn_base.json").is_file():
        raise BfclError(f"{where}: bfcl-eval installed but its data is missing under {venv.data_dir}")


_VENV = SideVenv(
    "bfcl-venv",
    LOCK_FILE,
    _VENV_MARKER,
    BfclVenv,
    "the BFCL venv",
    BfclError,
    {"bfcl_eval_version": BFCL_EVAL_VERSION},
    check=_check_data,
)
ready_bfcl_venv = _VENV.ready
ensure_bfcl_venv = _VENV.ensure
default_venv_dir = _VENV.default_dir


def _run(args: list[str], what: str, env: dict[str, str] | None = None, log: Path | None = None) -> str:
    """:func:`astra_synth.venvs.run_step` raising :class:`BfclError`."""
    return run_step(args, what, env, log, error=BfclError)


def category_ids(venv: BfclVenv, category: Category) -> list[str]:
    """Entry ids of a category in BFCL's file order."""
    path = venv.data_dir / f"{DATA_PREFIX}_{category}.json"
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line)["id"] for line in fh if line.strip()]


def select_ids(
    venv: BfclVenv, categories: list[Category], limit: int | None = None, ids_file: Path | None = None
) -> dict[str, list[str]]:
    """The entries to run: all, the first ``limit`` per category, or those in ``ids_file``.

    ``ids_file`` uses BFCL's own ``test_case_ids_to_generate.json`` format: ``{category: [id, ...]}``;
    categories not selected are ignored, unknown ids are an error.
    """
    known = {c: category_ids(venv, c) for c in categories}
    if ids_file is None:
        return {c: ids[:limit] for c, ids in known.items()}
    try:
        wanted = json.loads(ids_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BfclError(f"{ids_file}: cannot read an ids file: {exc}") from exc
    if not isinstance(wanted, dict):
        raise BfclError(f"{ids_file}: expected {{category: [id, ...]}}")
    selection: dict[str, list[str]] = {}
    for c in categories:
        ids = wanted.get(c, [])
        unknown = sorted(set(ids) - set(known[c])) if isinstance(ids, list) else ids
        if unknown:
            raise BfclError(f"{ids_file}: not ids of {c}: {unknown}")
        if ids:
            selection[c] = [i for i in known[c] if i in set(ids)]
    if not selection:
        raise BfclError(f"{ids_file}: no ids for the selected categories {categories}")
    return selection


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _score(out: Path, category: Category, policy: ErrorPolicy) -> CategoryScore:
    """BFCL's verdict for one category, plus the entries whose generation itself failed (left out of the
    denominator when the policy allows errors)."""
    result = out / "result" / REGISTRY_NAME / "multi_turn" / f"{DATA_PREFIX}_{category}_result.json"
    score = out / "score" / REGISTRY_NAME / "multi_turn" / f"{DATA_PREFIX}_{category}_score.json"
    try:
        head = _read_jsonl(score)[0]
        errors = sum(
            1
            for entry in _read_jsonl(result)
            if isinstance(entry.get("result"), str) and str(entry["result"]).startswith(_INFERENCE_ERROR)
        )
        correct, total = int(str(head["correct_count"])), int(str(head["total_count"]))
        scored = policy.scored(total, errors)
        return CategoryScore(
            category=category,
            accuracy=correct / scored if scored else 0.0,
            correct=correct,
            total=total,
            inference_errors=errors,
            scored=scored,
        )
    except (OSError, IndexError, KeyError, ValueError) as exc:
        raise BfclError(f"BFCL wrote no readable score for {category} ({exc})") from exc


def run_bfcl(
    endpoint: EndpointConfig,
    selection: dict[str, list[str]],
    out: Path,
    venv: BfclVenv,
    *,
    endpoint_label: str,
    threads: int,
    max_tokens: int | None = None,
    errors: ErrorPolicy | None = None,
) -> BfclReport:
    """Generate with BFCL's FC handler against ``endpoint``, then let BFCL score it; resumable.

    BFCL skips entries already in its result files, so a rerun into the same ``out`` continues a killed run.
    Check the endpoint first (:func:`astra_synth.llm.preflight.check_endpoint_sync`): BFCL's own client
    records a dead endpoint as an inference error per entry.
    """
    policy = errors or ErrorPolicy()
    if endpoint.base_url is None:
        raise BfclError("run_bfcl needs a running endpoint (use endpoint_session)")
    t0 = time.monotonic()
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    identity = _RunIdentity(
        bfcl_eval_version=BFCL_EVAL_VERSION,
        model=endpoint.model,
        endpoint=endpoint_label,
        max_tokens=max_tokens,
        ids=selection,
    )
    claim_out_dir(
        out / _RUN_FILE, identity, unrecorded=out / "result" / REGISTRY_NAME, what="BFCL", error=BfclError
    )
    write_json_atomic(out / "test_case_ids_to_generate.json", selection)
    env = {
        **os.environ,
        "BFCL_PROJECT_ROOT": str(out),
        "OPENAI_BASE_URL": endpoint.base_url,
        "OPENAI_API_KEY": endpoint.api_key(),
        "ASTRA_BFCL_MODEL": endpoint.model,
        "ASTRA_BFCL_REGISTRY_NAME": REGISTRY_NAME,
    }
    if max_tokens is not None:
        env["ASTRA_BFCL_MAX_TOKENS"] = str(max_tokens)
    categories = [c for c in CATEGORIES if c in selection]
    cli = [str(venv.python), str(RUNNER)]
    model_and_categories = ["--model", REGISTRY_NAME, "--test-category", ",".join(categories)]
    _run(
        [*cli, "generate", *model_and_categories, "--run-ids", "--num-threads", str(threads)],
        "BFCL generate",
        env,
        out / GENERATE_LOG,
    )
    evaluate = [*cli, "evaluate", *model_and_categories, "--partial-eval"]
    _run(evaluate, "BFCL evaluate", env, out / "bfcl_evaluate.log")
    scores = [_score(out, c, policy) for c in categories]
    failed = sum(s.inference_errors for s in scores)
    entries = sum(s.total for s in scores)
    report = BfclReport(
        model=endpoint.model,
        endpoint=endpoint_label,
        max_tokens=max_tokens,
        categories=scores,
        overall=sum(s.accuracy for s in scores) / len(scores),
        entries=entries,
        errors=failed,
        allow_errors=policy.allow_errors,
        error_violation=policy.violation(entries, failed, "entries"),
        wall_s=time.monotonic() - t0,
        out_dir=out,
    )
    write_json_atomic(out / SUMMARY_FILE, report.model_dump(mode="json"))
    return report
