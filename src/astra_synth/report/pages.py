"""The report's pages: an overview (funnels, rejects, usage, scores, graphs, curves) and paginated viewers.

Each page is a standalone HTML file with inline CSS and inline SVG; links are relative, so the folder can
be copied anywhere and opened from ``file://``. Viewers are paginated so that a run with a hundred
thousand trajectories still gives pages a browser opens quickly.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

from rich.progress import track

from astra_synth.arenas.records import Arena
from astra_synth.evaluation.suite import COLUMNS as EVAL_COLUMNS
from astra_synth.evaluation.suite import paper_table
from astra_synth.experiments.scores import STAGE_NAMES, SplitScore, gains
from astra_synth.llm.ledger import StageUsage
from astra_synth.report.html import Html, el, join, page, table
from astra_synth.report.load import (
    ArenasRun,
    EvaluationView,
    PipelineView,
    RunData,
    TrainingRun,
    TrajectoriesRun,
    TrajectoryView,
    load_run,
)
from astra_synth.report.svg import graph_picture, histogram, line_chart, stacked_bars
from astra_synth.runs.jsonl import write_bytes_atomic
from astra_synth.runs.manifest import ContaminationSummary

TRAJECTORIES_PER_PAGE = 50
ARENAS_PER_PAGE = 100
MAX_TEXT_CHARS = 20_000
"""Longer message or tool texts are cut in the viewer (the run files keep them whole)."""


T = TypeVar("T")


def _slug(kind: str, path: str) -> str:
    return f"{kind}-{path.replace('/', '-')}" if path else kind


def _label(path: str) -> str:
    return path or "."


def _pages(prefix: str, count: int, per_page: int) -> list[str]:
    return [f"{prefix}-{i + 1}.html" for i in range((count + per_page - 1) // per_page)]


def _pager(names: list[str], current: int) -> Html:
    if len(names) < 2:
        return Html("")
    return el(
        "nav",
        "Pages: ",
        *(el("strong", i + 1) if i == current else el("a", i + 1, href=n) for i, n in enumerate(names)),
        class_="pages",
    )


def _money(value: float) -> str:
    return f"${value:.4f}"


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1)
    if len(text) > MAX_TEXT_CHARS:
        return text[:MAX_TEXT_CHARS] + f"\n… ({len(text) - MAX_TEXT_CHARS} more characters in the run files)"
    return text


# ---------------------------------------------------------------- overview sections


def funnel_section(pipelines: Sequence[PipelineView]) -> Html:
    stages = [(p, s) for p in pipelines for s in p.stages]
    if not stages:
        return el("p", "No stage has run yet.")
    chart = stacked_bars(
        [(s.name, [s.counts.ok, s.counts.rejected, s.counts.errors]) for _, s in stages],
        ["ok", "rejected", "errors"],
        label="Items per stage",
    )
    rows = [
        [
            s.name,
            p.pipeline,
            s.counts.inputs,
            s.counts.ok,
            s.counts.outputs,
            s.counts.rejected,
            s.counts.errors,
            f"{s.seconds:.1f}",
        ]
        for p, s in stages
    ]
    status = [
        el(
            "span",
            f"{p.pipeline}: {p.status}",
            class_="badge " + ("ok" if p.status == "finished" else "warn"),
        )
        for p in pipelines
    ]
    errors = [el("p", f"{p.pipeline} failed: {p.error}", class_="badge bad") for p in pipelines if p.error]
    return join(
        el("h3", "Stage funnel"),
        el("p", *status),
        *errors,
        chart,
        table(
            ["stage", "pipeline", "inputs", "ok", "outputs", "rejected", "errors", "seconds"],
            rows,
            numeric_from=2,
        ),
    )


def rejects_section(pipelines: Sequence[PipelineView]) -> Html:
    rows: list[list[object]] = []
    for p in pipelines:
        for s in p.stages:
            rows.extend([s.name, "rejected", reason, n] for reason, n in s.reject_reasons.items())
            rows.extend([s.name, "error", kind, n] for kind, n in s.error_types.items())
    if not rows:
        return join(el("h3", "Reject reasons"), el("p", "Nothing was rejected and nothing failed."))
    return join(
        el("h3", "Reject reasons"), table(["stage", "outcome", "reason", "items"], rows, numeric_from=3)
    )


def usage_section(
    pipelines: Sequence[PipelineView], accepted: int, what: str, *, all_calls: int | None = None
) -> Html:
    """Calls, tokens and cost per stage, their total, and the total divided by the accepted items.

    ``all_calls`` is the run's own count where it keeps one: calls made between the runner pipelines
    (deduplication's embeddings) appear in no stage manifest, so they get a row of their own.
    """
    stages = [s for p in pipelines for s in p.stages]

    def row(name: str, u: StageUsage) -> list[object]:
        return [
            name,
            u.calls,
            u.cached_calls,
            u.failed_calls,
            u.prompt_tokens,
            u.completion_tokens,
            _money(u.cost_usd),
        ]

    total = sum((s.usage for s in stages), StageUsage())
    rows = [row(s.name, s.usage) for s in stages]
    if all_calls is not None and all_calls > total.calls:
        rows.append(["between pipelines (dedupe)", all_calls - total.calls, "", "", "", "", ""])
        total.calls = all_calls
    rows.append(row("total", total))
    if accepted:
        rows.append(
            [
                f"per accepted {what}",
                f"{total.calls / accepted:.1f}",
                "",
                "",
                f"{total.prompt_tokens / accepted:.0f}",
                f"{total.completion_tokens / accepted:.0f}",
                _money(total.cost_usd / accepted),
            ]
        )
    header = ["stage", "LLM calls", "cached", "failed", "prompt tokens", "completion tokens", "cost"]
    return join(
        el("h3", "LLM usage"),
        el("p", f"{accepted} accepted {what}(s)."),
        table(header, rows),
    )


def contamination_section(found: Sequence[tuple[str, ContaminationSummary | None]]) -> Html:
    """What the benchmark firewall checked and dropped, per (pipeline or run, its summary)."""
    parts: list[Html] = []
    for label, c in found:
        if c is None:
            continue
        benchmarks = ", ".join(c.benchmarks) or "no benchmark"
        parts.append(
            el(
                "p",
                f"{label}: {c.checked} checked, {c.dropped} dropped against {benchmarks} "
                f"({c.method or 'method not recorded'}).",
            )
        )
        if c.by_reason:
            parts.append(table(["reason", "dropped"], [[k, v] for k, v in c.by_reason.items()]))
    return join(el("h3", "Benchmark contamination"), *parts) if parts else Html("")


def _scored(views: Sequence[TrajectoryView]) -> dict[str, list[float]]:
    dims: dict[str, list[float]] = {}
    for v in views:
        if v.judge is None:
            continue
        for name, result in v.judge.dimensions.items():
            if result.score is not None:
                dims.setdefault(name, []).append(result.score)
    return dims


def scores_section(run: TrajectoriesRun) -> Html:
    judge = _scored(run.trajectories)
    tasks: dict[str, list[float]] = {}
    for v in run.trajectories:
        if v.trajectory.task.scores is not None:
            for name, score in v.trajectory.task.scores.as_dict().items():
                tasks.setdefault(name, []).append(float(score))
    parts: list[Html] = [el("h3", "Judge scores per dimension")]
    if judge:
        parts.append(
            el("div", *(histogram(v, lo=0, hi=1, bins=5, label=k) for k, v in judge.items()), class_="charts")
        )
    else:
        parts.append(el("p", "No trajectory has been judged yet."))
    if tasks:
        parts.append(el("h3", "Task scores per dimension (1–5)"))
        parts.append(
            el(
                "div",
                # ratings are 1..5: one bin per rating, [1, 2) … [5, 6)
                *(histogram(v, lo=1, hi=6, bins=5, label=k) for k, v in tasks.items()),
                class_="charts",
            )
        )
    return join(*parts)


def graphs_section(run: TrajectoriesRun) -> Html:
    if not run.graphs:
        return Html("")
    pictures = [
        el(
            "figure",
            graph_picture(g.nodes, g.edges, label=f"tool graph of {g.server}"),
            el("figcaption", f"{g.server}: {len(g.nodes)} tools, {len(g.edges)} transitions"),
        )
        for g in run.graphs
    ]
    return join(
        el("h3", "Tool transition graphs"),
        el(
            "p",
            "Edges: consecutive tools in the chains the graph stage seeded (proposed and walked); "
            "width grows with how often the transition occurs.",
        ),
        el("div", *pictures, class_="charts"),
    )


def rollouts_summary(run: TrajectoriesRun) -> Html:
    statuses = Counter(v.trajectory.status for v in run.trajectories)
    routes: Counter[str] = Counter()
    for v in run.trajectories:
        routes.update(v.trajectory.execution)
    rows: list[list[object]] = [["rollout status", k, n] for k, n in statuses.items()]
    rows += [["tool route", k, n] for k, n in routes.items()]
    rows += [["dedupe dropped", k, n] for k, n in run.dedupe_dropped.items()]
    if not rows:
        return Html("")
    return join(el("h3", "Rollouts"), table(["what", "value", "count"], rows, numeric_from=2))


def curves_section(run: TrainingRun) -> Html:
    charts = [line_chart(c.points, label=c.metric) for c in run.curves]
    body = el("div", *charts, class_="charts") if charts else el("p", "No known metric logged yet.")
    return el("section", el("h2", f"Training curves: {_label(run.path)}"), body)


def _scalars(data: dict[str, Any], prefix: str = "") -> dict[str, object]:
    """The numbers and strings of a step result, nested ones as ``outer.inner`` (lists are left out)."""
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_scalars(value, f"{prefix}{key}."))
        elif isinstance(value, int | float | str):
            out[f"{prefix}{key}"] = value
    return out


def demo_section(data: RunData) -> Html:
    rows = []
    for step in data.demo:
        summary = ", ".join(f"{k}={v}" for k, v in _scalars(step.data).items())
        rows.append([step.name, summary])
    parts: list[Html] = [el("h2", "Demo steps"), table(["step", "result"], rows, numeric_from=None)]
    parts += learning_tables([step.data for step in data.demo])
    return el("section", *parts)


def _cell(score: SplitScore | None) -> str:
    if score is None:
        return "—"
    return f"{score.f1:.3f} ± {score.ci95:.3f} ({score.success_rate:.2f}, n={score.episodes})"


def learning_tables(results: Sequence[dict[str, Any]]) -> list[Html]:
    """The learning-signal scores among step results: F1 per family group and per family, base → SFT+GRPO."""
    scores = [SplitScore.model_validate(r) for r in results if {"split", "stage", "families"} <= r.keys()]
    if not scores:
        return []
    cell: dict[tuple[str, str], SplitScore] = {(s.split, s.stage): s for s in scores}
    splits = [split for split in ("warm-up", "rl", "unseen") if any(s.split == split for s in scores)]
    group_rows = [[split, *(_cell(cell.get((split, stage))) for stage in STAGE_NAMES)] for split in splits]
    family: dict[tuple[str, str], dict[str, float]] = {}
    for s in scores:
        for f in s.families:
            family.setdefault((s.split, f.family), {})[s.stage] = f.f1
    family_rows = [
        [split, name, *(f"{v[st]:.3f}" if st in v else "—" for st in STAGE_NAMES)]
        for (split, name), v in sorted(family.items(), key=lambda kv: (splits.index(kv[0][0]), kv[0][1]))
    ]
    paired = [el("li", gain.describe()) for gain in gains(scores)]
    intro = "Gains on the same arenas (paired 95 % CI; each mean's own interval above is wider):"
    return [
        el("h3", "Learning signal: F1 ± 95 % CI (success rate) per family group"),
        table(["family group", *STAGE_NAMES.values()], group_rows),
        *([el("p", intro), el("ul", *paired)] if paired else []),
        el("h3", "Per family (F1)"),
        table(["group", "family", *STAGE_NAMES.values()], family_rows, numeric_from=2),
    ]


def evaluation_section(view: EvaluationView) -> Html:
    """``astra eval all``'s summary as the paper's table: our row measured, the paper's rows published."""
    summary = view.summary
    rows, notes = paper_table(summary)
    header = ["model", *(title for _, title in EVAL_COLUMNS), "source"]
    details = [
        [
            r.benchmark,
            r.status,
            "" if r.headline is None else f"{r.headline:.2f}",
            ", ".join(f"{k} {v:.2f}" for k, v in r.sub_scores.items()),
            r.errors,
            f"{r.wall_s:.1f}",
        ]
        for r in summary.results
    ]
    return el(
        "section",
        el("h2", f"Evaluation: {summary.model} ({summary.endpoint}), {_label(view.path)}"),
        table(header, [[row.model, *row.cells, row.source] for row in rows]),
        el("ul", *(el("li", note) for note in notes)),
        el("h3", "Per benchmark"),
        table(["benchmark", "status", "score %", "sub-scores", "endpoint errors", "wall s"], details),
    )


def trajectories_overview(run: TrajectoriesRun, viewer: list[str]) -> Html:
    links = (
        el("p", el("a", f"Open the trajectory viewer ({len(run.trajectories)} rollouts)", href=viewer[0]))
        if viewer
        else el("p", "No rollouts yet.")
    )
    return el(
        "section",
        el("h2", f"Trajectories run: {_label(run.path)}"),
        links,
        funnel_section(run.pipelines),
        rejects_section(run.pipelines),
        usage_section(run.pipelines, run.accepted, "trajectory", all_calls=run.llm_calls),
        contamination_section([(f"run {_label(run.path)}", run.contamination)]),
        rollouts_summary(run),
        scores_section(run),
        graphs_section(run),
    )


def _card_row(arena: Arena, href: str) -> list[object]:
    card = arena.report
    if card is None:
        return [el("a", arena.id, href=href), arena.domain, "–", "–", "–", "no report card"]
    passed = sum(c.ok for c in card.checks)
    worst = max(card.probe_rewards.values(), default=0.0)
    return [
        el("a", arena.id, href=href),
        arena.domain,
        f"{passed}/{len(card.checks)}",
        "yes" if card.replay_ok else "no",
        f"{worst:.2f}",
        el("span", "passed" if card.passed else "failed", class_="badge " + ("ok" if card.passed else "bad")),
    ]


def selection_section(run: ArenasRun) -> Html:
    sel = run.selection
    if sel is None:
        return Html("")
    verified = len(sel.kept) + len(sel.dropped)
    threshold = (
        "no threshold (nothing verified)" if sel.threshold is None else f"threshold {sel.threshold:.3f}"
    )
    parts: list[Html] = [
        el("h3", "Selection"),
        el(
            "p",
            f"{len(sel.kept)} of {verified} verified QA instances kept at percentile {sel.percentile or 0:g} "
            f"(minimum score {sel.min_score or 0:g}, {threshold}).",
        ),
    ]
    scores = [d.score for d in sel.dropped if d.score is not None]
    if scores:
        parts.append(histogram(scores, lo=0, hi=1, bins=5, label="scores of the dropped"))
    return join(*parts)


def arenas_overview(run: ArenasRun, viewer: list[str]) -> Html:
    rows = [_card_row(a, f"{viewer[i // ARENAS_PER_PAGE]}#arena-{i}") for i, a in enumerate(run.arenas)]
    cards = (
        table(["arena", "domain", "checks", "replay", "worst probe", "card"], rows, numeric_from=2)
        if rows
        else el("p", "No arena has passed the final check yet.")
    )
    dropped = (
        join(
            el("h3", "Dropped by the final check"),
            table(
                ["item", "reason", "detail"],
                [[r.id, r.reason, r.detail] for r in run.rejected],
                numeric_from=None,
            ),
        )
        if run.rejected
        else Html("")
    )
    return el(
        "section",
        el("h2", f"Arenas run: {_label(run.path)}"),
        funnel_section(run.pipelines),
        rejects_section(run.pipelines),
        usage_section(run.pipelines, run.accepted, "arena"),
        contamination_section([(f"run {_label(run.path)}", run.contamination)]),
        selection_section(run),
        el("h3", "Arena report cards"),
        cards,
        dropped,
    )


def pipeline_overview(p: PipelineView) -> Html:
    return el(
        "section",
        el("h2", f"Pipeline {p.pipeline}: {_label(p.path)}"),
        funnel_section([p]),
        rejects_section([p]),
        usage_section([p], 0, "item"),
        contamination_section([(p.pipeline, p.contamination)]),
    )


# ---------------------------------------------------------------- viewers


def _route_badges(execution: dict[str, int]) -> list[Html]:
    if not execution:
        return [el("span", "no tool calls", class_="badge")]
    return [
        el(
            "span",
            f"{route} × {n}",
            class_="badge " + ("warn" if route == "emulated" else "ok"),
            title="emulated: answered by the LLM tool emulator; otherwise a real (or replayed) server",
        )
        for route, n in sorted(execution.items())
    ]


def _message(message: dict[str, Any]) -> Html:
    role = str(message.get("role", "?"))
    parts: list[Html] = [el("strong", role)]
    if message.get("tool_call_id"):
        parts.append(el("span", f" result of {message['tool_call_id']}", class_="badge"))
    content = message.get("content")
    if content not in (None, ""):
        parts.append(el("pre", _text(content)))
    for call in message.get("tool_calls") or []:
        function = call.get("function", {}) if isinstance(call, dict) else {}
        arguments = function.get("arguments", "")
        with suppress(TypeError, ValueError):  # else shown as the model wrote it
            arguments = json.dumps(json.loads(arguments), ensure_ascii=False, indent=1)
        parts.append(
            el(
                "div",
                el("span", "tool call", class_="badge"),
                el("code", function.get("name", "?")),
                el("span", f" {call.get('id', '')}" if isinstance(call, dict) else ""),
                el("pre", _text(arguments)),
            )
        )
    return el("div", *parts, class_=f"msg {role}")


def trajectory_card(view: TrajectoryView, anchor: str) -> Html:
    t = view.trajectory
    if view.judge is not None:
        verdict = el("span", f"accepted (overall {view.judge.overall:.2f})", class_="badge ok")
    elif view.judge_reject is not None:
        verdict = el("span", f"rejected: {view.judge_reject.reason}", class_="badge bad")
    else:
        verdict = el("span", "not judged", class_="badge")
    scores = (
        table(
            ["dimension", "status", "detail", "score"],
            [
                [k, d.status, d.detail, "–" if d.score is None else f"{d.score:.2f}"]
                for k, d in view.judge.dimensions.items()
            ],
            numeric_from=3,
        )
        if view.judge is not None
        else el("pre", view.judge_reject.detail)
        if view.judge_reject is not None and view.judge_reject.detail
        else Html("")
    )
    return el(
        "section",
        el("h3", t.task.question),
        el(
            "p",
            el("span", t.status, class_="badge " + ("ok" if t.status == "completed" else "bad")),
            verdict,
            *_route_badges(t.execution),
            el("span", f"server {t.task.server.id}", class_="badge"),
            el(
                "span",
                f"{t.llm_calls} LLM calls, {t.tool_calls} tool calls, {t.tool_failures} failed",
                class_="badge",
            ),
        ),
        el("p", "target tools: ", el("code", ", ".join(t.task.target_tools)), f"  · id {view.id}"),
        scores,
        el(
            "details",
            el("summary", f"{len(t.messages)} messages"),
            *(_message(m) for m in t.messages),
            open=True,
        ),
        id=anchor,
    )


def arena_card(arena: Arena, anchor: str) -> Html:
    card = arena.report
    parts: list[Html] = [
        el("h3", arena.id),
        el(
            "p",
            el("span", arena.domain, class_="badge"),
            el("span", arena.language, class_="badge"),
            el("span", arena.scenario_type, class_="badge"),
            el("span", arena.provenance.method, class_="badge"),
        ),
        el("pre", arena.messages[-1].content),
    ]
    if card is None:
        parts.append(el("p", "No report card."))
    else:
        parts.append(
            el(
                "p",
                el(
                    "span",
                    "passed" if card.passed else "failed",
                    class_="badge " + ("ok" if card.passed else "bad"),
                ),
                el(
                    "span",
                    f"replay {'ok' if card.replay_ok else 'failed'}",
                    class_="badge " + ("ok" if card.replay_ok else "bad"),
                ),
            )
        )
        parts.append(
            table(
                ["check", "result", "detail"],
                [[c.name, "ok" if c.ok else "FAILED", c.detail] for c in card.checks],
                numeric_from=None,
            )
        )
        rewards = [["replay", k, f"{v:.3f}"] for k, v in card.replay_rewards.items()]
        rewards += [["hacking probe", k, f"{v:.3f}"] for k, v in card.probe_rewards.items()]
        parts.append(table(["play", "mode / probe", "reward"], rewards, numeric_from=2))
    parts.append(
        el(
            "details",
            el("summary", f"{len(arena.subtasks)} sub-tasks, {len(arena.tools)} tools"),
            table(
                ["id", "question", "answer", "tool"],
                [[s.id, s.question, s.answer, s.tool or "–"] for s in arena.subtasks],
                numeric_from=None,
            ),
        )
    )
    return el("section", *parts, id=anchor)


# ---------------------------------------------------------------- the site


def build_pages(data: RunData) -> dict[str, str]:
    """File name → document, for every page of the report."""
    nav: list[tuple[str, str]] = [("Overview", "index.html")]
    viewers: dict[str, tuple[str, list[str]]] = {}
    for run in data.trajectories:
        names = _pages(_slug("trajectories", run.path), len(run.trajectories), TRAJECTORIES_PER_PAGE)
        viewers[f"t:{run.path}"] = (f"Trajectories {_label(run.path)}", names)
    for arenas in data.arenas:
        names = _pages(_slug("arenas", arenas.path), len(arenas.arenas), ARENAS_PER_PAGE)
        viewers[f"a:{arenas.path}"] = (f"Arenas {_label(arenas.path)}", names)
    nav += [(label, names[0]) for label, names in viewers.values() if names]

    pages: dict[str, str] = {}
    title = f"Run report: {data.root.name}"
    if data.empty:
        body: object = el(
            "p",
            "Nothing here yet: this folder holds no pipeline manifest, no training metrics, "
            "no demo steps and no evaluation summary. Run a pipeline into it, then report again.",
            class_="empty",
        )
    else:
        kinds = [
            f"{len(data.trajectories)} trajectories run(s)",
            f"{len(data.arenas)} arenas run(s)",
            f"{len(data.pipelines)} other pipeline(s)",
            f"{len(data.training)} training run(s)",
            f"{len(data.evaluations)} evaluation(s)",
        ]
        body = join(
            el("p", f"{data.root}: ", ", ".join(kinds), "." if not data.demo else ", a demo."),
            *(trajectories_overview(r, viewers[f"t:{r.path}"][1]) for r in data.trajectories),
            *(arenas_overview(r, viewers[f"a:{r.path}"][1]) for r in data.arenas),
            *(pipeline_overview(p) for p in data.pipelines),
            *(curves_section(t) for t in data.training),
            demo_section(data) if data.demo else Html(""),
            *(evaluation_section(e) for e in data.evaluations),
        )
    pages["index.html"] = page(title, body, nav=nav)

    for run in data.trajectories:
        label, names = viewers[f"t:{run.path}"]
        pages.update(
            _viewer_pages(label, names, run.trajectories, TRAJECTORIES_PER_PAGE, trajectory_card, "t", nav)
        )
    for arenas in data.arenas:
        label, names = viewers[f"a:{arenas.path}"]
        pages.update(_viewer_pages(label, names, arenas.arenas, ARENAS_PER_PAGE, arena_card, "arena", nav))
    return pages


def _viewer_pages(
    label: str,
    names: list[str],
    items: Sequence[T],
    per_page: int,
    card: Callable[[T, str], Html],
    anchor: str,
    nav: list[tuple[str, str]],
) -> dict[str, str]:
    """One page per ``per_page`` items, each card anchored ``<anchor>-<index>``, a pager above and below."""
    pages = {}
    for i, name in enumerate(names):
        shown = items[i * per_page : (i + 1) * per_page]
        cards = [card(item, f"{anchor}-{i * per_page + j}") for j, item in enumerate(shown)]
        body = join(_pager(names, i), *cards, _pager(names, i))
        pages[name] = page(f"{label} ({i + 1}/{len(names)})", body, nav=nav)
    return pages


def write_report(run_dir: Path, out: Path | None = None, *, progress: bool = False) -> Path:
    """Render the report of ``run_dir`` into ``out`` (default ``run_dir/report``); returns its index.html."""
    data = load_run(run_dir)
    out = out or run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    pages = build_pages(data)
    for name, document in track(pages.items(), description="writing report pages", disable=not progress):
        write_bytes_atomic(out / name, document.encode("utf-8"))
    return out / "index.html"
