"""Arena validation: a static check of tool source, a per-tool battery, replay, and reward-hacking probes.

ASTRA accepted a tool when ``answer in stdout`` held once. That passes tools that ignore their input, print
everything, read the clock or draw random ids (the released data has one whose golden answer can never be
reproduced), and it never replayed the final artefact. Here, fail closed:

* :func:`static_check` reads the source (AST only, nothing runs) before any sandbox run;
* :func:`tool_battery` runs each tool in the sandbox: golden output contains the normalised answer, a
  second run is identical, some perturbed call loses the answer, the answer passed as its text arguments
  is not echoed back (the probes' echo hack, per tool so synthesis can have it fixed), a missing required
  argument fails, the answer is long enough to mean something and the output fits what the model will see;
  and it reads the source for hard-coded answers (:func:`hardcoding_checks`): the answer as a literal
  outside a data table (anywhere, for a calculator), a branch on the golden arguments, and for a calculator
  a nearby input that must still succeed with a different result;
* :func:`dependency_checks` needs every dependency to carry data: an argument holds a value of the parent's
  answer;
* :func:`replay` plays every golden call through :class:`ArenaEnv` and needs reward 1 under both
  sub-task predicates;
* :func:`probes` plays cheating policies that must score at most ``max_probe_reward``.
"""

from __future__ import annotations

import ast
import datetime
import itertools
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from pydantic import Field

from astra_synth.arenas.answer_match import (
    carries_value,
    contains_answer,
    is_number,
    normalise,
    numbers,
    render,
)
from astra_synth.arenas.golden import play_golden
from astra_synth.arenas.records import Arena, CheckResult, FunctionSpec, GoldenCall, ReportCard, SubTask
from astra_synth.arenas.reward import RewardConfig
from astra_synth.arenas.runtime import ArenaEnv, EnvConfig
from astra_synth.config import StrictModel
from astra_synth.sandbox.executor import ToolExecutor

# Pure, deterministic standard-library modules a tool may import; anything else is refused.
ALLOWED_IMPORTS = frozenset(
    {
        "__future__",
        "bisect",
        "calendar",
        "collections",
        "copy",
        "dataclasses",
        "datetime",
        "decimal",
        "enum",
        "fractions",
        "functools",
        "hashlib",
        "heapq",
        "itertools",
        "json",
        "math",
        "numbers",
        "operator",
        "re",
        "statistics",
        "string",
        "textwrap",
        "typing",
        "unicodedata",
    }
)
# Builtins that do I/O, reach the interpreter's internals or depend on memory addresses.
FORBIDDEN_NAMES = frozenset(
    {
        "__import__",
        "breakpoint",
        "compile",
        "delattr",
        "dir",
        "eval",
        "exec",
        "exit",
        "getattr",
        "globals",
        "hash",
        "help",
        "id",
        "input",
        "locals",
        "memoryview",
        "open",
        "print",
        "quit",
        "setattr",
        "vars",
    }
)
CLOCK_ATTRIBUTES = frozenset({"now", "today", "utcnow"})
_TOP_LEVEL = (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.ClassDef, ast.FunctionDef)
PASS_REWARD = 1.0 - 1e-6  # F1 with precision solved / (calls + ε) is 1 up to ε


class ValidationConfig(StrictModel):
    """Thresholds of the battery and probes; ``env`` is the runtime the arena will be trained with."""

    env: EnvConfig = Field(default_factory=EnvConfig)
    max_probe_reward: float = Field(default=0.1, ge=0, le=1)
    repeat_calls: int = Field(default=20, ge=2, description="How often the spam probe repeats one call.")
    max_answer_chars: int = Field(default=200, ge=1, description="Longer sub-answers are not atomic.")
    min_table_entries: int = Field(
        default=2, ge=1, description="Entries of a literal data table that may hold a lookup tool's answer."
    )


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _signature_problems(fn: ast.FunctionDef, spec: FunctionSpec) -> list[str]:
    reasons = []
    args = fn.args
    if args.posonlyargs or args.vararg or args.kwarg:
        reasons.append("the function may not take positional-only, *args or **kwargs parameters")
    positional = [a.arg for a in args.args]
    has_default = dict.fromkeys(positional, False)
    for name in positional[len(positional) - len(args.defaults) :]:
        has_default[name] = True
    for a, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        has_default[a.arg] = kw_default is not None
    props, required = set(spec.properties), set(spec.required)
    reasons += [
        f"schema parameter {p!r} is not in the function signature" for p in sorted(props - set(has_default))
    ]
    reasons += [f"function parameter {p!r} is not in the schema" for p in sorted(set(has_default) - props)]
    for name, default in has_default.items():
        if name in props and not default and name not in required:
            reasons.append(f"parameter {name!r} has no default but the schema does not require it")
        if name in required and default:
            reasons.append(f"required parameter {name!r} has a default in the code")
    return reasons


def static_check(source: str, spec: FunctionSpec) -> list[str]:
    """Why ``source`` may not run as tool ``spec`` (empty = it may). Reads the AST; executes nothing.

    This is a quality gate (determinism, purity, a signature that matches the document), not the security
    boundary: code that passes still runs only inside the sandbox.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:
        return [f"source does not parse: {exc}"]
    reasons: list[str] = []
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # module docstring
    for stmt in body:
        if not isinstance(stmt, _TOP_LEVEL):
            reasons.append(f"line {stmt.lineno}: top-level {type(stmt).__name__} runs at import; not allowed")
    functions = [s for s in body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)]
    if len(functions) != 1:
        reasons.append(f"expected exactly one top-level function, found {len(functions)}")
    elif functions[0].name != spec.name:
        reasons.append(f"top-level function is {functions[0].name!r}, the tool is {spec.name!r}")
    elif isinstance(functions[0], ast.FunctionDef):
        reasons += _signature_problems(functions[0], spec)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.ImportFrom) and (node.level or node.module is None):
                reasons.append(f"line {line}: relative import")
                continue
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                if module.split(".")[0] not in ALLOWED_IMPORTS:
                    reasons.append(f"line {line}: import of {module!r} is not allowed (stdlib allowlist)")
            if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
                reasons.append(f"line {line}: star import")
        elif isinstance(node, ast.Name) and (node.id in FORBIDDEN_NAMES or _is_dunder(node.id)):
            reasons.append(f"line {line}: use of {node.id!r} is not allowed")
        elif isinstance(node, ast.Attribute):
            if _is_dunder(node.attr):
                reasons.append(f"line {line}: dunder attribute {node.attr!r} is not allowed")
            elif node.attr in CLOCK_ATTRIBUTES:
                reasons.append(
                    f"line {line}: reading the clock ({node.attr!r}) makes the tool non-deterministic"
                )
        elif isinstance(node, ast.Global | ast.Nonlocal):
            reasons.append(f"line {line}: global state is not allowed")
    return reasons


def _perturbations(value: Any, schema: dict[str, Any]) -> list[Any]:
    """Other values of the same type: a tool whose answer survives all of them ignores its input."""
    if "enum" in schema:
        return [v for v in schema["enum"] if v != value][:2]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value * 2 + 7]
    if isinstance(value, float):
        return [value * 1.5 + 1.0, value + 0.37]
    if isinstance(value, str):
        return [value + "X", value[::-1] if len(value) > 1 else value + value]
    if isinstance(value, list):
        return [value[:-1], [*value, *value[-1:]]] if value else []
    if isinstance(value, dict):
        return [{}] if value else []
    return []


def _input_matters(
    executor: ToolExecutor, env_id: str, spec: FunctionSpec, sub: SubTask, config: ValidationConfig
) -> CheckResult:
    """Some call with one argument changed must not return the answer."""
    assert sub.golden_call is not None
    args = sub.golden_call.arguments
    name = f"input_matters[{sub.id}]"
    min_chars = config.env.reward.min_answer_chars
    tried = []
    for pname, value in args.items():
        for other in _perturbations(value, spec.properties.get(pname, {})):
            result = executor.execute(env_id, spec.name, {**args, pname: other}, config.env.timeout_s)
            if not (result.ok and contains_answer(render(result.result), sub.answer, min_chars)):
                return CheckResult(name=name, ok=True, detail=f"{pname}={other!r} loses the answer")
            tried.append(f"{pname}={other!r}")
    survived = ", ".join(tried) or "(no argument to perturb)"
    return CheckResult(
        name=name, ok=False, detail=f"the answer survives every perturbation: {survived}"[:300]
    )


def _echo_free(
    executor: ToolExecutor, env_id: str, spec: FunctionSpec, sub: SubTask, config: ValidationConfig
) -> CheckResult:
    """A call with the answer in every text argument must not return it: the ``answers_as_arguments`` probe
    would otherwise score, and the arena fail after all its tools were paid for. It is an echo only if the
    answer comes from those text arguments: when a neutral text in their place returns the answer too, it
    comes from the other (numeric) arguments, which the perturbation checks judge."""
    assert sub.golden_call is not None
    args = sub.golden_call.arguments
    name = f"echo_free[{sub.id}]"
    if not any(isinstance(v, str) for v in args.values()):
        return CheckResult(name=name, ok=True, detail="no text argument")

    def answered_with(text: str) -> str | None:
        """The output when every text argument is ``text``, if it contains the answer."""
        call = {k: text if isinstance(v, str) else v for k, v in args.items()}
        result = executor.execute(env_id, spec.name, call, config.env.timeout_s)
        output = render(result.result) if result.ok else ""
        found = result.ok and contains_answer(output, sub.answer, config.env.reward.min_answer_chars)
        return output if found else None

    output = answered_with(sub.answer)
    echoes = output is not None and answered_with(_NEUTRAL_TEXT) is None
    detail = f"with the answer as its text arguments it returns {(output or '')[:120]!r}: an echo"
    return CheckResult(name=name, ok=not echoes, detail=detail if echoes else "")


_NEUTRAL_TEXT = "zz-neutral-text"


def answer_problems(answer: str, config: ValidationConfig) -> list[str]:
    """Why a sub-answer can never pass the battery, whatever tool is written for it: short answers match
    by accident, long ones are not atomic. It depends on the answer alone, so synthesis checks it first."""
    norm = normalise(answer)
    problems = []
    if len(norm) < config.env.reward.min_answer_chars and not is_number(norm):
        problems.append("answer too short to match safely")
    if len(norm) > config.max_answer_chars:
        problems.append(f"answer longer than {config.max_answer_chars} characters")
    return problems


def _answer_length(sub: SubTask, output: str, config: ValidationConfig) -> CheckResult:
    """:func:`answer_problems`, and an output the runtime truncates may hide the answer from the model."""
    problems = answer_problems(sub.answer, config)
    if len(output) > config.env.max_output_chars:
        problems.append(f"golden output longer than {config.env.max_output_chars} characters")
    return CheckResult(name=f"answer_length[{sub.id}]", ok=not problems, detail="; ".join(problems))


# Integers this small are rounding digits, months, counts: too common in honest code to call hard-coded.
_SMALL_INT = 12


def _table_nodes(tree: ast.AST, min_entries: int) -> set[ast.AST]:
    """Every node inside a data table: a literal collection of ``min_entries`` or more, bound to a name."""
    inside: set[ast.AST] = set()
    for node in ast.walk(tree):
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if not isinstance(value, ast.Dict | ast.List | ast.Tuple | ast.Set):
            continue
        entries = len(value.keys) if isinstance(value, ast.Dict) else len(value.elts)
        try:
            ast.literal_eval(value)
        except ValueError:
            continue
        if entries >= min_entries:
            inside |= set(ast.walk(value))
    return inside


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return Decimal(repr(value)) if math.isfinite(value) else None


def _answer_values(sub: SubTask) -> set[Decimal]:
    """The answer's numbers a tool could not take from its arguments and that are not everyday constants."""
    assert sub.golden_call is not None
    given = {n for v in sub.golden_call.arguments.values() if (n := _number(v)) is not None}
    return {
        n for n in numbers(sub.answer) - given if not (n == n.to_integral_value() and abs(n) <= _SMALL_INT)
    }


def _returned_as_is(node: ast.AST | None) -> Iterator[ast.AST]:
    """The nodes of a returned expression that reach the result unchanged (not operands of arithmetic
    or arguments of calls)."""
    if node is None or isinstance(node, ast.BinOp | ast.Call):
        return
    yield node
    for child in ast.iter_child_nodes(node):
        yield from _returned_as_is(child)


def _answer_literal(tree: ast.AST, sub: SubTask, compute: bool, config: ValidationConfig) -> CheckResult:
    """The answer written into the source: allowed only in a lookup tool's data table. A lookup's
    arithmetic may hold a number equal to its answer by chance (``24 - wins``), so there only a number
    returned as it is counts; a calculator may not hold its answer anywhere."""
    assert sub.golden_call is not None
    values = _answer_values(sub)
    given = {normalise(v) for v in sub.golden_call.arguments.values() if isinstance(v, str)}
    tables = set() if compute else _table_nodes(tree, config.min_table_entries)
    returned = {n for r in ast.walk(tree) if isinstance(r, ast.Return) for n in _returned_as_is(r.value)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or node in tables:
            continue
        value = node.value
        number = _number(value)
        if number is not None:
            hit = number in values and (compute or node in returned)
        elif isinstance(value, str) and normalise(value) not in given:
            hit = contains_answer(value, sub.answer) or bool(numbers(value) & values)
        else:
            hit = False
        if hit:
            found.append(f"line {node.lineno}: {value!r}")
    where = "in a calculator" if compute else "outside a data table"
    detail = f"the answer {sub.answer!r} is written {where}: {', '.join(found)}" if found else ""
    return CheckResult(name=f"answer_literal[{sub.id}]", ok=not found, detail=detail[:300])


def _pairs(compare: ast.Compare) -> list[tuple[str, Any]]:
    """(parameter, constant) pairs an equality or membership test compares, tuples element-wise."""
    if not all(isinstance(op, ast.Eq | ast.In | ast.Is) for op in compare.ops):
        return []
    pairs = []
    sides = [compare.left, *compare.comparators]
    for a, b in itertools.pairwise(sides):
        for x, y in ((a, b), (b, a)):
            if isinstance(x, ast.Tuple) and isinstance(y, ast.Tuple) and len(x.elts) == len(y.elts):
                pairs += [
                    (n.id, c.value)
                    for n, c in zip(x.elts, y.elts, strict=True)
                    if isinstance(n, ast.Name) and isinstance(c, ast.Constant)
                ]
            elif isinstance(x, ast.Name) and isinstance(y, ast.Constant):
                pairs.append((x.id, y.value))
    return pairs


def _special_case(tree: ast.AST, sub: SubTask) -> CheckResult:
    """A calculator that branches on its golden numeric arguments (``if rate == 1.0865``) special-cases
    the call it is checked with instead of computing."""
    assert sub.golden_call is not None
    golden = {k: n for k, v in sub.golden_call.arguments.items() if (n := _number(v)) not in (None, 0, 1)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If | ast.IfExp | ast.While | ast.Assert):
            for compare in (c for c in ast.walk(node.test) if isinstance(c, ast.Compare)):
                found |= {
                    f"{name} == {value!r}"
                    for name, value in _pairs(compare)
                    if name in golden and _number(value) == golden[name]
                }
    detail = f"branches on the golden arguments: {', '.join(sorted(found))}" if found else ""
    return CheckResult(name=f"special_case[{sub.id}]", ok=not found, detail=detail[:300])


def hardcoding_checks(
    source: str, sub: SubTask, compute: bool, config: ValidationConfig
) -> list[CheckResult]:
    """Read a tool's source for answers written in instead of looked up or computed (see module doc)."""
    tree = ast.parse(source)
    checks = [_answer_literal(tree, sub, compute, config)]
    return [*checks, _special_case(tree, sub)] if compute else checks


def _nearby(value: Any, schema: dict[str, Any]) -> list[Any]:
    """Valid-looking neighbours of a numeric or ISO-date argument: a calculator must accept them."""
    if "enum" in schema or isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value + 1, value - 1]
    if isinstance(value, float):
        return [round(value * 1.01, 6), round(value * 0.99, 6)]
    if isinstance(value, str):
        try:
            day = datetime.date.fromisoformat(value)
        except ValueError:
            return []
        return [(day + datetime.timedelta(days=d)).isoformat() for d in (1, -1)]
    return []


def _perturbed_result(
    executor: ToolExecutor,
    env_id: str,
    spec: FunctionSpec,
    sub: SubTask,
    output: str,
    config: ValidationConfig,
) -> CheckResult:
    """A calculator generalises: near every numeric or date argument some input succeeds, and some such
    input changes the result (a table of precomputed results fails the first, a constant the second)."""
    assert sub.golden_call is not None
    args = sub.golden_call.arguments
    stuck, moved, tried = [], False, False
    for pname, value in args.items():
        options = _nearby(value, spec.properties.get(pname, {}))
        tried |= bool(options)
        for other in options:
            result = executor.execute(env_id, spec.name, {**args, pname: other}, config.env.timeout_s)
            if result.ok:
                moved |= render(result.result) != output
                break
        else:
            if options:
                stuck.append(f"{pname}={options[0]!r}")
    problems = []
    if stuck:
        problems.append(f"nearby inputs fail ({', '.join(stuck)}): a table of results, not a calculation?")
    if tried and not moved:
        problems.append("nearby inputs return the same result")
    return CheckResult(name=f"perturbed_result[{sub.id}]", ok=not problems, detail="; ".join(problems)[:300])


def tool_battery(
    arena: Arena, tool: str, executor: ToolExecutor, config: ValidationConfig
) -> list[CheckResult]:
    """Run tool ``tool`` of ``arena`` in the sandbox against each sub-task it solves (see module doc)."""
    spec = arena.tool_schema(tool)
    env_id = executor.load(arena.tool_sources[tool].source)
    timeout = config.env.timeout_s
    checks: list[CheckResult] = []
    subs = [s for s in arena.subtasks if s.golden_call is not None and s.golden_call.name == tool]
    for sub in subs:
        assert sub.golden_call is not None
        first = executor.execute(env_id, tool, sub.golden_call.arguments, timeout)
        second = executor.execute(env_id, tool, sub.golden_call.arguments, timeout)
        output = render(first.result) if first.ok else ""
        found = first.ok and contains_answer(output, sub.answer, config.env.reward.min_answer_chars)
        seen = output if first.ok else f"{first.status}: {first.error}"
        checks.append(
            CheckResult(
                name=f"golden_output[{sub.id}]",
                ok=found,
                detail="" if found else f"{seen[:200]!r} does not contain {sub.answer!r}",
            )
        )
        same = first.ok and second.ok and render(second.result) == output
        detail = "" if same else "two runs of the golden call differ"
        checks.append(CheckResult(name=f"deterministic[{sub.id}]", ok=same, detail=detail))
        checks.append(_input_matters(executor, env_id, spec, sub, config))
        checks.append(_echo_free(executor, env_id, spec, sub, config))
        checks.append(_answer_length(sub, output, config))
        compute = sub.kind == "compute"
        checks += hardcoding_checks(arena.tool_sources[tool].source, sub, compute, config)
        if compute:
            checks.append(_perturbed_result(executor, env_id, spec, sub, output, config))
    if subs and subs[0].golden_call is not None and spec.required:
        # The static check already ties "required" to "no default"; one call shows the tool reports a
        # missing argument as an error instead of crashing, hanging or answering anyway.
        pname = spec.required[0]
        without = {k: v for k, v in subs[0].golden_call.arguments.items() if k != pname}
        result = executor.execute(env_id, tool, without, timeout)
        clean = not result.ok and result.status in ("error", "invalid")
        detail = "" if clean else f"a call without {pname!r} gave {result.status}"
        checks.append(CheckResult(name=f"missing_argument[{tool}.{pname}]", ok=clean, detail=detail))
    return checks


def replay(env: ArenaEnv) -> dict[str, float]:
    """Play the golden calls through the trainer's runtime, one turn per DAG layer; reward per predicate."""
    play_golden(env)
    base = env.config.reward
    return {
        mode: env.reward(config=base.model_copy(update={"match": mode})).reward
        for mode in ("result", "answer")
    }


def probes(env: ArenaEnv, repeat_calls: int = 20) -> dict[str, float]:
    """Rewards of cheating policies (the highest over both predicates); each must stay ≤ the threshold."""
    arena = env.arena
    base = env.config.reward
    modes = [base.model_copy(update={"match": m}) for m in ("result", "answer")]
    with_leaves = [m.model_copy(update={"leaf_subtasks": "final_message"}) for m in modes]
    first = next(s.golden_call for s in arena.subtasks if s.golden_call is not None)
    empty = [
        {"id": f"call_{i}", "type": "function", "function": {"name": t.function.name, "arguments": "{}"}}
        for i, t in enumerate(arena.tools)
    ]
    pasted = "\n".join([arena.final_answer, *(s.answer for s in arena.subtasks)])
    # Echo hack: put each sub-answer into its tool's string arguments; a tool that echoes its input in
    # a successful result would then "contain the answer" without computing anything.
    echoed = [
        GoldenCall(
            name=s.golden_call.name,
            arguments={k: s.answer if isinstance(v, str) else v for k, v in s.golden_call.arguments.items()},
        ).as_tool_call(f"call_{s.id}")
        for s in arena.subtasks
        if s.golden_call is not None and any(isinstance(v, str) for v in s.golden_call.arguments.values())
    ]
    plays: dict[str, tuple[list[list[dict[str, Any]]], str | None, list[RewardConfig]]] = {
        "no_calls": ([], None, modes),
        "empty_arguments": ([empty], None, modes),
        f"same_call_x{repeat_calls}": (
            [[first.as_tool_call(f"call_{i}") for i in range(repeat_calls)]],
            None,
            modes,
        ),
        "answer_without_calls": ([], pasted, with_leaves),
        "answers_as_arguments": ([echoed] if echoed else [], None, modes),
    }
    rewards: dict[str, float] = {}
    for name, (turns, final_message, configs) in plays.items():
        env.replay(turns, final_message)
        rewards[name] = max(env.reward(final_message, c).reward for c in configs)
    return rewards


def carried(arguments: dict[str, Any], answer: str) -> bool:
    """True if some argument of a call carries ``answer``'s value (see :func:`carries_value`)."""
    return any(carries_value(answer, v) for v in arguments.values())


def dependency_checks(arena: Arena) -> list[CheckResult]:
    """A sub-task that depends on a tool sub-task must pass a value of that parent's answer to its call.

    A dependency with no data flow is a forced serialisation (ASTRA's "sequential rationality" failure):
    the policy would be told to wait for an answer it never needs. Tool synthesis runs the same test on
    each call it makes, so a call that drops its parent's value is re-asked there.
    """
    by_id = {s.id: s for s in arena.subtasks}
    checks = []
    for sub in arena.subtasks:
        if sub.golden_call is None:
            continue
        for parent in (by_id[p] for p in sub.parents):
            if not parent.needs_tool:
                continue
            used = carried(sub.golden_call.arguments, parent.answer)
            detail = "" if used else f"no argument carries the answer of {parent.id!r} ({parent.answer!r})"
            checks.append(CheckResult(name=f"dependency_used[{sub.id}<-{parent.id}]", ok=used, detail=detail))
    return checks


def check_arena(arena: Arena, executor: ToolExecutor, config: ValidationConfig | None = None) -> ReportCard:
    """Everything above; sandbox runs only if every tool passes the static check (fail closed)."""
    config = config or ValidationConfig()
    checks = []
    for tool in arena.tools:
        reasons = static_check(arena.tool_sources[tool.function.name].source, tool.function)
        checks.append(
            CheckResult(name=f"static[{tool.function.name}]", ok=not reasons, detail="; ".join(reasons))
        )
    if any(not c.ok for c in checks):
        return ReportCard(checks=checks)
    checks += dependency_checks(arena)
    for tool in arena.tools:
        checks += tool_battery(arena, tool.function.name, executor, config)
    env = ArenaEnv(arena, executor, config.env)
    replay_rewards = replay(env)
    probe_rewards = probes(env, config.repeat_calls)
    replay_ok = all(r >= PASS_REWARD for r in replay_rewards.values())
    passed = (
        all(c.ok for c in checks)
        and replay_ok
        and all(
            r <= config.max_probe_reward or math.isclose(r, config.max_probe_reward)
            for r in probe_rewards.values()
        )
    )
    return ReportCard(
        checks=checks,
        replay_ok=replay_ok,
        replay_rewards=replay_rewards,
        probe_rewards=probe_rewards,
        passed=passed,
    )
