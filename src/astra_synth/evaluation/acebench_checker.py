"""ACEBench's answer checker, re-implemented from the rules described in the benchmark's README.

Two scorings of the same answer text:

- ``original`` follows the upstream checker, leniency included, so numbers compare with published ones:
  all whitespace is removed before parsing; strings match when the normalised ground truth is a substring
  of the normalised answer; top-level integers, numbers and booleans are only type-checked; a value whose
  type is wrong for the schema but matches the ground truth's type is accepted unchecked; optional ground-
  truth arguments may be left out; inside dicts, leaves match by string containment.
- ``strict`` parses the text as written and requires the model's arguments to equal the ground truth's
  exactly (same keys; JSON values, numbers compared by value, booleans never equal to numbers), each
  ground-truth call matched by its own model call. The special categories keep the substring checks (the
  answer is prose), with the stray spaces in three ground-truth names stripped.

The answer is parsed with ``ast`` and only literal nodes are read: model output is never evaluated.
"""

from __future__ import annotations

import ast
import re
from typing import Any, Literal

from pydantic import BaseModel

Scoring = Literal["original", "strict"]

_SUFFIX = re.compile(r"_\d+$")
# Characters the original string normalisation drops before comparing.
_DROPPED = re.compile(r"[\s,./\-_*^]")
_SCHEMA_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "number": int,  # upstream maps "number" to int too; a float answer passes only via the type-mismatch skip
    "float": float,
    "boolean": bool,
    "array": list,
    "list": list,
    "object": dict,
    "dict": dict,
}

MISSING_PHRASE = "Missing necessary parameters"
INCORRECT_PHRASE = "There is incorrect value"
IRRELEVANT_PHRASE = "the limitations of the function"


class Call(BaseModel):
    name: str
    arguments: dict[str, Any]


class Verdict(BaseModel):
    ok: bool
    reason: str = ""


class ParseError(ValueError):
    """The answer is not a list of keyword-argument calls with literal values."""


PASS = Verdict(ok=True)


def _fail(reason: str) -> Verdict:
    return Verdict(ok=False, reason=reason)


# --- parsing ----------------------------------------------------------------------------------------------


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    raise ParseError(f"a call target must be a name, got {type(node).__name__}")


def parse_calls(text: str) -> list[Call]:
    """``[Api(k='v'), …]`` → calls; keyword arguments only, each value a Python literal."""
    try:
        body = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ParseError(f"not parsable: {exc}") from exc
    if not isinstance(body, ast.List):
        raise ParseError(f"not a list of calls (a {type(body).__name__})")
    calls = []
    for node in body.elts:
        if not isinstance(node, ast.Call):
            raise ParseError(f"list element is a {type(node).__name__}, not a call")
        if node.args:
            raise ParseError(f"{_dotted(node.func)}: positional arguments")
        arguments: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                raise ParseError(f"{_dotted(node.func)}: **-unpacking")
            try:
                arguments[keyword.arg] = ast.literal_eval(keyword.value)
            except (ValueError, TypeError, SyntaxError, RecursionError) as exc:
                raise ParseError(f"{_dotted(node.func)}({keyword.arg}=…): not a literal") from exc
        calls.append(Call(name=_dotted(node.func), arguments=arguments))
    return calls


def strip_suffix(name: str) -> str:
    """``Api_2`` → ``Api``: ground truth numbers repeated calls of one function."""
    return _SUFFIX.sub("", name)


# --- normal categories --------------------------------------------------------------------------------------


def check_normal(
    text: str, functions: list[dict[str, Any]], ground_truth: dict[str, Any] | list[Any], scoring: Scoring
) -> Verdict:
    """One answer against the expected calls (or a list of alternatives: any one passing counts)."""
    try:
        calls = parse_calls(re.sub(r"\s+", "", text) if scoring == "original" else text)
    except ParseError as exc:
        return _fail(str(exc))
    schemas = {f["name"]: f for f in functions if isinstance(f, dict) and "name" in f}
    alternatives = ground_truth if isinstance(ground_truth, list) else [ground_truth]
    verdict = _fail("no ground truth")
    for expected in alternatives:
        verdict = _check_calls(calls, expected, schemas, scoring)
        if verdict.ok:
            return verdict
    return verdict


def _check_calls(
    calls: list[Call], expected: dict[str, Any], schemas: dict[str, dict[str, Any]], scoring: Scoring
) -> Verdict:
    if len(calls) != len(expected):
        return _fail(f"{len(calls)} calls, expected {len(expected)}")
    wanted = sorted(strip_suffix(k) for k in expected)
    if sorted(c.name for c in calls) != wanted:
        return _fail(f"called {sorted(c.name for c in calls)}, expected {wanted}")
    pairs = [(strip_suffix(k), v) for k, v in expected.items()]
    if scoring == "original":
        for name, args in pairs:
            reasons = [_call_original(schemas.get(name), c.arguments, args) for c in calls if c.name == name]
            if all(reasons):
                return _fail(f"{name}: {reasons[-1]}")
        return PASS
    return _assign_strict(pairs, calls, schemas, set())


def _assign_strict(
    pairs: list[tuple[str, Any]], calls: list[Call], schemas: dict[str, dict[str, Any]], used: set[int]
) -> Verdict:
    """Match every expected call to its own model call (backtracking; a handful of calls at most)."""
    if not pairs:
        return PASS
    (name, args), rest = pairs[0], pairs[1:]
    reason = f"{name}: no matching call"
    for i, call in enumerate(calls):
        if i in used or call.name != name:
            continue
        failure = _call_strict(schemas.get(name), call.arguments, args)
        if failure:
            reason = f"{name}: {failure}"
            continue
        verdict = _assign_strict(rest, calls, schemas, used | {i})
        if verdict.ok:
            return verdict
        reason = verdict.reason
    return _fail(reason)


def _properties(schema: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    parameters = schema.get("parameters") or {}
    return parameters.get("properties") or {}, list(parameters.get("required") or [])


def _call_original(schema: dict[str, Any] | None, model: dict[str, Any], truth: Any) -> str:
    """Upstream's per-call check; returns the failure reason, "" on a pass."""
    if schema is None:
        return "function not in the API list"
    if not isinstance(truth, dict):
        return "ground truth is not an argument dict"
    properties, required = _properties(schema)
    for name in required:
        if name not in model:
            return f"required parameter {name!r} missing"
    for key, value in model.items():
        if key not in properties:
            return f"unknown parameter {key!r}"
        if key not in truth:
            return f"parameter {key!r} not in the ground truth"
        expected = truth[key]
        spec = properties[key] if isinstance(properties[key], dict) else {}
        want = _SCHEMA_TYPES.get(str(spec.get("type")))
        if want is bool and value in ("true", "false"):
            value = value == "true"
        if want is not None and type(value) is not want:
            if type(value) is type(expected):
                continue  # upstream accepts the ground truth's type and skips the value check
            return f"{key}: {type(value).__name__} where the schema wants {spec.get('type')}"
        if failure := _value_original(key, value, expected):
            return failure
    return ""


def normalise(text: str) -> str:
    """Upstream's string normalisation: drop spaces and ``, . / - _ * ^``, lowercase, ``'`` → ``"``."""
    return _DROPPED.sub("", text).lower().replace("'", '"')


def _value_original(key: str, value: Any, expected: Any) -> str:
    if isinstance(value, str):
        return "" if normalise(str(expected)) in normalise(value) else f"{key}: {value!r} ≠ {expected!r}"
    if isinstance(value, list):
        if not isinstance(expected, list):
            return f"{key}: list where the ground truth has {type(expected).__name__}"
        if any(isinstance(v, dict) for v in [*value, *expected]):
            if len(value) != len(expected):
                return f"{key}: {len(value)} elements, expected {len(expected)}"
            for got, want in zip(value, expected, strict=True):
                if failure := _dict_original(key, got, want):
                    return failure
            return ""
        if [_norm_element(v) for v in value] != [_norm_element(v) for v in expected]:
            return f"{key}: {value!r} ≠ {expected!r}"
        return ""
    if isinstance(value, dict):
        return _dict_original(key, value, expected)
    return ""  # top-level numbers and booleans: type-checked only, as upstream


def _norm_element(value: Any) -> Any:
    return normalise(value) if isinstance(value, str) else value


def _dict_original(key: str, value: Any, expected: Any) -> str:
    if not isinstance(value, dict) or not isinstance(expected, dict):
        return "" if normalise(str(expected)) in normalise(str(value)) else f"{key}: {value!r} ≠ {expected!r}"
    if len(value) != len(expected):
        return f"{key}: {len(value)} keys, expected {len(expected)}"
    for k, v in value.items():
        if k not in expected:
            return f"{key}.{k}: not in the ground truth"
        if isinstance(expected[k], dict):
            if failure := _dict_original(f"{key}.{k}", v, expected[k]):
                return failure
        elif normalise(str(expected[k])) not in normalise(str(v)):
            return f"{key}.{k}: {v!r} ≠ {expected[k]!r}"
    return ""


def _call_strict(schema: dict[str, Any] | None, model: dict[str, Any], truth: Any) -> str:
    if schema is None:
        return "function not in the API list"
    properties, required = _properties(schema)
    for name in required:
        if name not in model:
            return f"required parameter {name!r} missing"
    for key in model:
        if key not in properties:
            return f"unknown parameter {key!r}"
    if not isinstance(truth, dict):
        return "ground truth is not an argument dict"
    if set(model) != set(truth):
        return f"arguments {sorted(model)}, expected {sorted(truth)}"
    for key, value in model.items():
        if json_value(value) != json_value(truth[key]):
            return f"{key}: {value!r} ≠ {truth[key]!r}"
    return ""


def json_value(value: Any) -> Any:
    """A comparable JSON view: tuples are lists, numbers compare by value, booleans never equal numbers."""
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return ("other", value) if not isinstance(value, str) else value


# --- special categories ---------------------------------------------------------------------------------


def check_special(category: str, text: str, ground_truth: Any, scoring: Scoring) -> Verdict:
    """Substring checks on the raw answer text, as upstream."""

    def name(value: Any) -> str:
        return str(value).strip() if scoring == "strict" else str(value)

    if category == "special_irrelevant":
        return PASS if IRRELEVANT_PHRASE in text else _fail(f"no {IRRELEVANT_PHRASE!r}")
    phrase = MISSING_PHRASE if category == "special_incomplete" else INCORRECT_PHRASE
    if phrase not in text:
        return _fail(f"no {phrase!r}")
    for key, values in dict(ground_truth).items():
        if category == "special_incomplete" and name(key) not in text:
            return _fail(f"API {key!r} not named")
        for value in values:
            if name(value) not in text:
                return _fail(f"{value!r} not named")
    return PASS


# --- agent categories -----------------------------------------------------------------------------------

# Misspelled class names in four agent answers; ``strict`` reads them as meant, ``original`` as written
# (upstream then finds no such class in the end state and leaves that class unchecked).
CLASS_NAME_TYPOS = {"Reminderpi": "ReminderApi", "BaseAPI": "BaseApi", "ReminderAPI": "ReminderApi"}


def check_agent_state(
    state: list[dict[str, Any]], ground_truth: list[dict[str, Any]], scoring: Scoring
) -> Verdict:
    """End-to-end: the saved end state against the expected one, class by class (upstream's agent_checker).

    Every saved attribute must be in the ground truth; a ground-truth dict needs each of its keys with an
    equal value (extra keys, e.g. an extra message, pass); anything else must be equal. ``strict`` compares
    JSON values (``True`` ≠ ``1``) and corrects the class-name typos, so every expected class is checked.
    """
    if len(state) != len(ground_truth):
        return _fail(f"{len(state)} classes in the end state, expected {len(ground_truth)}")
    equal = (lambda a, b: json_value(a) == json_value(b)) if scoring == "strict" else (lambda a, b: a == b)
    for entry in ground_truth:
        for name, expected in entry.items():
            cls = CLASS_NAME_TYPOS.get(name, name) if scoring == "strict" else name
            candidates = [m[cls] for m in state if cls in m]
            if not candidates:
                if scoring == "original":
                    continue  # upstream's quirk: a class the end state lacks is not checked
                return _fail(f"{cls}: not in the end state")
            reasons = [_state_failure(cls, got, expected, equal) for got in candidates]
            if all(reasons):
                return _fail(reasons[0])
    return PASS


def _state_failure(cls: str, got: Any, expected: Any, equal: Any) -> str:
    if not isinstance(got, dict) or not isinstance(expected, dict):
        return f"{cls}: state is not an attribute dict"
    for attribute, value in got.items():
        if attribute not in expected:
            return f"{cls}.{attribute}: not in the ground truth"
        want = expected[attribute]
        if isinstance(want, dict):
            if not isinstance(value, dict):
                return f"{cls}.{attribute}: {type(value).__name__}, expected a dict"
            for key, item in want.items():
                if key not in value or not equal(value[key], item):
                    return f"{cls}.{attribute}[{key!r}]: {value.get(key)!r} ≠ {item!r}"
        elif not equal(value, want):
            return f"{cls}.{attribute}: {value!r} ≠ {want!r}"
    return ""


def milestone_score(executed: list[str], mile_stone: list[str] | list[list[str]]) -> float:
    """Process accuracy: the share of milestones found in order among the messages sent for execution.

    Each milestone is looked for after the last one found (exact match after ``strip()``); one not found is
    skipped. With alternative milestone lists the best one counts.
    """
    alternatives: list[list[str]] = (
        [m for m in mile_stone if isinstance(m, list)]
        if mile_stone and isinstance(mile_stone[0], list)
        else [[m for m in mile_stone if isinstance(m, str)]]
    )
    messages = [m.strip() for m in executed]
    best = 0.0
    for milestones in alternatives:
        if not milestones:
            continue
        position, matched = 0, 0
        for stone in milestones:
            try:
                position = messages.index(stone.strip(), position) + 1
            except ValueError:
                continue
            matched += 1
        best = max(best, matched / len(milestones))
    return best
