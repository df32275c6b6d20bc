"""Charts as inline SVG: stacked bars, histograms, line charts and a tool-graph picture.

Written here rather than taken from a chart library so the report is one set of static files that opens from
``file://`` with no script and no network. Every label goes through :func:`~astra_synth.report.html.el`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from astra_synth.report.html import Html, el

COLORS = ("#3d9b5f", "#d0584a", "#c08a1e", "#4a7bd0", "#8a5cc0", "#3aa3a3", "#7a7f8a")
NS = "http://www.w3.org/2000/svg"


def _svg(width: int, height: int, *children: object, label: str) -> Html:
    return el(
        "svg",
        el("title", label),
        *children,
        xmlns=NS,
        viewBox=f"0 0 {width} {height}",
        width=width,
        height=height,
        role="img",
    )


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


def stacked_bars(rows: Sequence[tuple[str, Sequence[float]]], series: Sequence[str], *, label: str) -> Html:
    """One horizontal bar per row, split into ``series`` (e.g. ok / rejected / errors), with a legend."""
    bar_h, gap, left, width = 18, 6, 150, 620
    scale_w = width - left - 70
    top = 24
    peak = max((sum(v) for _, v in rows), default=0) or 1
    parts: list[Html] = []
    for i, name in enumerate(series):
        key_x = left + i * 110
        parts.append(el("rect", x=key_x, y=4, width=10, height=10, fill=COLORS[i % len(COLORS)]))
        parts.append(el("text", name, x=key_x + 14, y=13))
    for r, (name, values) in enumerate(rows):
        y = top + r * (bar_h + gap)
        parts.append(el("text", name, x=left - 6, y=y + 13, text_anchor="end"))
        x = float(left)
        for i, v in enumerate(values):
            w = scale_w * v / peak
            if w > 0:
                parts.append(
                    el(
                        "rect",
                        el("title", f"{name}: {series[i]} {_fmt(v)}"),
                        x=f"{x:.1f}",
                        y=y,
                        width=f"{w:.1f}",
                        height=bar_h,
                        fill=COLORS[i % len(COLORS)],
                    )
                )
            x += w
        parts.append(el("text", " / ".join(_fmt(v) for v in values), x=f"{x + 6:.1f}", y=y + 13))
    height = top + len(rows) * (bar_h + gap) + 4
    return _svg(width, height, *parts, label=label)


def histogram(values: Sequence[float], *, lo: float, hi: float, bins: int, label: str) -> Html:
    """Counts of ``values`` in ``bins`` equal bins over [lo, hi] (the last includes ``hi``); each bar is
    labelled with its lower edge."""
    width, height, pad = 260, 150, 24
    counts = [0] * bins
    span = (hi - lo) or 1.0
    for v in values:
        counts[min(bins - 1, max(0, int((v - lo) / span * bins)))] += 1
    peak = max(counts) or 1
    bw = (width - 2 * pad) / bins
    plot_h = height - 2 * pad
    parts: list[Html] = [el("text", label, x=pad, y=14)]
    for i, c in enumerate(counts):
        h = plot_h * c / peak
        x = pad + i * bw
        b_lo, b_hi = lo + span * i / bins, lo + span * (i + 1) / bins
        parts.append(
            el(
                "rect",
                el("title", f"[{_fmt(b_lo)}, {_fmt(b_hi)}): {c}"),
                x=f"{x + 1:.1f}",
                y=f"{height - pad - h:.1f}",
                width=f"{bw - 2:.1f}",
                height=f"{h:.1f}",
                fill=COLORS[3],
            )
        )
        if c:
            parts.append(
                el("text", c, x=f"{x + bw / 2:.1f}", y=f"{height - pad - h - 3:.1f}", text_anchor="middle")
            )
    axis_y = height - pad
    parts.append(el("line", x1=pad, y1=axis_y, x2=width - pad, y2=axis_y, stroke="#7a7f8a"))
    parts.extend(
        el(
            "text",
            _fmt(lo + span * i / bins),
            x=f"{pad + (i + 0.5) * bw:.1f}",
            y=axis_y + 14,
            text_anchor="middle",
        )
        for i in range(bins)
    )
    return _svg(width, height, *parts, label=label)


def line_chart(points: Sequence[tuple[float, float]], *, label: str) -> Html:
    """``y`` against ``x`` (training step) with min/max ticks; a single point is drawn as a dot."""
    width, height, pad = 320, 170, 36
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    y_lo, y_hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    x_span = (x_hi - x_lo) or 1.0

    def at(x: float, y: float) -> tuple[float, float]:
        return (
            pad + (x - x_lo) / x_span * (width - 2 * pad),
            height - pad - (y - y_lo) / (y_hi - y_lo) * (height - 2 * pad),
        )

    coords = [at(x, y) for x, y in points]
    parts: list[Html] = [el("text", label, x=pad, y=14)]
    parts.append(
        el(
            "polyline",
            points=" ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords),
            fill="none",
            stroke=COLORS[3],
            stroke_width=2,
        )
    )
    parts.extend(el("circle", cx=f"{cx:.1f}", cy=f"{cy:.1f}", r=2.5, fill=COLORS[3]) for cx, cy in coords)
    parts.append(el("line", x1=pad, y1=height - pad, x2=width - pad, y2=height - pad, stroke="#7a7f8a"))
    parts.append(el("line", x1=pad, y1=pad, x2=pad, y2=height - pad, stroke="#7a7f8a"))
    parts.append(el("text", _fmt(y_hi), x=pad - 4, y=pad + 4, text_anchor="end"))
    parts.append(el("text", _fmt(y_lo), x=pad - 4, y=height - pad, text_anchor="end"))
    parts.append(el("text", f"step {_fmt(x_lo)}", x=pad, y=height - pad + 14))
    parts.append(el("text", _fmt(x_hi), x=width - pad, y=height - pad + 14, text_anchor="end"))
    return _svg(width, height, *parts, label=label)


def graph_picture(nodes: Sequence[str], edges: Sequence[tuple[str, str, int]], *, label: str) -> Html:
    """Nodes on a circle in the given order, directed edges with arrowheads, width growing with weight.

    A circle is deterministic and never hides an edge behind a node of the same rank, which is all a
    per-server tool graph of a few dozen nodes needs.
    """
    size, radius = 520, 170
    marker_id = "arrow-" + hashlib.sha1(label.encode()).hexdigest()[:10]  # ids are page-wide
    cx = cy = size / 2
    pos = {
        n: (
            cx + radius * math.cos(2 * math.pi * i / len(nodes) - math.pi / 2),
            cy + radius * math.sin(2 * math.pi * i / len(nodes) - math.pi / 2),
        )
        for i, n in enumerate(nodes)
    }
    marker = el(
        "defs",
        el(
            "marker",
            el("path", d="M0,0 L8,4 L0,8 z", fill="#4a5568"),
            id=marker_id,
            viewBox="0 0 8 8",
            refX=16,
            refY=4,
            markerWidth=7,
            markerHeight=7,
            orient="auto",
        ),
    )
    peak = max((w for _, _, w in edges), default=1)
    parts: list[Html] = [marker]
    for a, b, w in edges:
        (x1, y1), (x2, y2) = pos[a], pos[b]
        parts.append(
            el(
                "line",
                el("title", f"{a} → {b}: {w}"),
                x1=f"{x1:.1f}",
                y1=f"{y1:.1f}",
                x2=f"{x2:.1f}",
                y2=f"{y2:.1f}",
                stroke="#4a5568",
                stroke_opacity=0.7,
                stroke_width=f"{1 + 3 * w / peak:.1f}",
                marker_end=f"url(#{marker_id})",
            )
        )
    for n, (x, y) in pos.items():
        anchor = "start" if x > cx + 1 else "end" if x < cx - 1 else "middle"
        dx = 10 if anchor == "start" else -10 if anchor == "end" else 0
        dy = -10 if y < cy - radius + 5 else 16 if y > cy + radius - 5 else 4
        parts.append(el("circle", el("title", n), cx=f"{x:.1f}", cy=f"{y:.1f}", r=7, fill=COLORS[3]))
        parts.append(el("text", n, x=f"{x + dx:.1f}", y=f"{y + dy:.1f}", text_anchor=anchor))
    return _svg(size, size, *parts, label=label)
