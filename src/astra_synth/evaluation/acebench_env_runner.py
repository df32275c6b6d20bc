"""ACEBench's agent environment, loaded from the user's checkout; run as a subprocess, one per episode.

The start state of the agent categories (contacts, inboxes, reminders, menus, flights…) lives only in
ACEBench's own Python classes, so they are loaded at run time from a checkout the user names
(``--acebench-repo``), never copied into this project. They use only the standard library, so this file
runs under astra's own interpreter (isolated, ``-I``) and imports nothing but the standard library and the
checkout's ``model_inference/<split>/scenariosen`` folder, mounted under its own dotted name (upstream's
modules import each other absolutely, ``from model_inference.multi_turn.scenariosen… import BaseApi``) with
stub parent packages, so the parents' ``__init__`` files and the rest of the checkout never run.

Protocol: one JSON object per line on stdin, one answer per line on stdout (anything the classes print goes
to stderr):

- ``{"start": {"classes": [...], "initial_config": {...}}}`` → ``{"ok": true}``: one instance per class,
  constructor defaults, then ``_load_scenario`` with the class's own config, then with ``BaseApi``'s.
- ``{"calls": [{"name", "arguments"}], "stop_on_error": bool}`` → ``{"results": [...]}``: each call runs
  on every instance with a public method of that name; its result is the last such instance's return value,
  or ``{"error": …}``. With ``stop_on_error`` (multi-turn) the calls after a failed one are not run.
- ``{"state": true}`` → ``{"state": [{Class: {saved attribute: value}}, …]}`` in the order of ``classes``.

A request the runner cannot serve (an unknown class, a checkout without the expected files) is answered
``{"fatal": …}`` and the runner exits 2.

Usage: ``python -I acebench_env_runner.py --repo DIR --split multi_turn|multi_step``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback
import types
from pathlib import Path
from typing import Any, TextIO

# Where each class lives under ``model_inference/<split>/scenariosen`` and which attributes are its state.
CLASS_MODULES = {
    "BaseApi": "phone_platform.base_api",
    "MessageApi": "phone_platform.message",
    "ReminderApi": "phone_platform.reminder",
    "FoodPlatform": "phone_platform.food_services",
    "Travel": "travel",
}
SAVED_ATTRIBUTES = {
    "BaseApi": ("wifi", "logged_in"),
    "MessageApi": ("inbox",),
    "ReminderApi": ("reminder_list",),
    "FoodPlatform": ("users", "logged_in_users", "orders"),
    "Travel": ("users", "reservations"),
}
SPLITS = ("multi_turn", "multi_step")


class Fatal(Exception):
    """The checkout or the request is unusable; the episode cannot run."""


def scenarios_dir(repo: Path, split: str) -> Path:
    return repo / "model_inference" / split / "scenariosen"


_mounted: list[str] = []
"""The package name of the mounted scenario folder (one per runner process)."""


def _package(split: str) -> str:
    return f"model_inference.{split}.scenariosen"


def _mount(repo: Path, split: str) -> None:
    """Make the split's scenario folder importable as ``model_inference.<split>.scenariosen``, its parents as
    empty stub packages (absolute and relative imports inside it both work; nothing else is imported)."""
    folder = scenarios_dir(repo, split)
    if not folder.is_dir():
        raise Fatal(f"{folder}: no such folder (expected an ACEBench checkout)")
    for name, path in (
        ("model_inference", repo / "model_inference"),
        (f"model_inference.{split}", folder.parent),
        (_package(split), folder),
    ):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        package.__package__ = name
        sys.modules[name] = package
    _mounted[:] = [_package(split)]


def _load_class(name: str) -> type:
    if name not in CLASS_MODULES:
        raise Fatal(f"unknown ACEBench class {name!r}; known: {', '.join(CLASS_MODULES)}")
    try:
        module = importlib.import_module(f"{_mounted[0]}.{CLASS_MODULES[name]}")
    except Exception as exc:
        raise Fatal(f"cannot import {CLASS_MODULES[name]} for {name}: {type(exc).__name__}: {exc}") from exc
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise Fatal(f"{CLASS_MODULES[name]} defines no class {name}")
    return cls


def _plain(value: Any) -> Any:
    """A JSON view (dict keys become strings, unknown objects their ``str``), as upstream saves results."""
    return json.loads(json.dumps(value, default=str))


class Environment:
    def __init__(self, classes: list[str], initial_config: dict[str, Any]) -> None:
        self.instances: list[tuple[str, Any]] = []
        for name in classes:
            try:
                instance = _load_class(name)()
                load = getattr(instance, "_load_scenario", None)
                if callable(load):
                    if name in initial_config:
                        load(initial_config[name])
                    if "BaseApi" in initial_config:
                        load(initial_config["BaseApi"])
            except Fatal:
                raise
            except Exception as exc:
                raise Fatal(f"cannot set up {name}: {type(exc).__name__}: {exc}") from exc
            self.instances.append((name, instance))

    def call(self, name: str, arguments: dict[str, Any]) -> Any:
        if name.startswith("_"):
            return {"error": f"{name}: not a public function"}
        methods = [getattr(i, name) for _, i in self.instances if callable(getattr(i, name, None))]
        if not methods:
            return {"error": f"{name}: no such function in this environment"}
        result: Any = None
        for method in methods:
            try:
                result = method(**arguments)
            except Exception as exc:
                return {"error": f"{name}: {type(exc).__name__}: {exc}"}
        return _plain(result)

    def state(self) -> list[dict[str, Any]]:
        return [
            {name: _plain({a: getattr(i, a) for a in SAVED_ATTRIBUTES[name] if hasattr(i, a)})}
            for name, i in self.instances
        ]


def serve(requests: TextIO, answers: TextIO) -> None:
    env: Environment | None = None

    def answer(obj: dict[str, Any]) -> None:
        answers.write(json.dumps(obj, default=str) + "\n")
        answers.flush()

    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            if "start" in request:
                start = request["start"]
                env = Environment(list(start["classes"]), dict(start.get("initial_config") or {}))
                answer({"ok": True})
            elif env is None:
                raise Fatal("no environment: send 'start' first")
            elif "calls" in request:
                results = []
                for call in request["calls"]:
                    result = env.call(str(call["name"]), dict(call.get("arguments") or {}))
                    results.append(result)
                    if request.get("stop_on_error") and isinstance(result, dict) and "error" in result:
                        break
                answer({"results": results})
            elif "state" in request:
                answer({"state": env.state()})
            else:
                raise Fatal(f"unknown request {sorted(request)}")
        except Fatal as exc:
            answer({"fatal": str(exc)})
            sys.exit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--split", choices=SPLITS, required=True)
    args = parser.parse_args()
    answers = sys.stdout
    sys.stdout = sys.stderr  # whatever the classes print stays out of the protocol
    try:
        _mount(args.repo, args.split)
    except Fatal as exc:
        answers.write(json.dumps({"fatal": str(exc)}) + "\n")
        answers.flush()
        sys.exit(2)
    try:
        serve(sys.stdin, answers)
    except Exception:
        traceback.print_exc()
        sys.exit(1)


if __name__ == "__main__":
    main()
