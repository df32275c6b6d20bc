"""HTML built from elements, escaped by construction.

Run data is model- and tool-written text; a report that pasted it into markup would run whatever script a
tool returned. So nothing here formats raw strings into HTML: :func:`el` escapes every ``str`` child and
attribute value, and only :class:`Html` (what :func:`el` and :func:`raw_svg` return) passes through as is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape


class Html(str):
    """Markup that is already safe: produced by :func:`el`, never by formatting run data."""


def esc(value: object) -> Html:
    return Html(escape(str(value), quote=True))


def _children(children: Iterable[object]) -> str:
    out: list[str] = []
    for child in children:
        if child is None:
            continue
        if isinstance(child, Html):
            out.append(child)
        elif isinstance(child, str | int | float):
            out.append(esc(child))
        else:
            out.append(_children(child))  # type: ignore[arg-type]
    return "".join(out)


VOID = frozenset({"br", "hr", "img", "meta", "link", "input"})


def el(tag: str, *children: object, **attrs: object) -> Html:
    """``<tag attrs>children</tag>``; ``class_`` → ``class``, ``data_x`` → ``data-x``; False/None drop out."""
    parts = [tag]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(name if value is True else f'{name}="{escape(str(value), quote=True)}"')
    opening = "<" + " ".join(parts) + ">"
    if tag in VOID:
        return Html(opening)
    return Html(f"{opening}{_children(children)}</{tag}>")


def join(*children: object) -> Html:
    return Html(_children(children))


def table(header: Sequence[str], rows: Iterable[Sequence[object]], *, numeric_from: int | None = 1) -> Html:
    """A plain table; columns from ``numeric_from`` on are right-aligned (None: none are)."""

    def cls(i: int) -> str | None:
        return "num" if numeric_from is not None and i >= numeric_from else None

    head = el("tr", *(el("th", h, class_=cls(i)) for i, h in enumerate(header)))
    body = [el("tr", *(el("td", c, class_=cls(i)) for i, c in enumerate(row))) for row in rows]
    return el("table", el("thead", head), el("tbody", *body))


STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:10px 24px}header a{color:#cfe0ff;margin-right:16px}
main{padding:16px 24px;max-width:1200px}h1{font-size:22px}h2{font-size:18px;margin-top:28px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:12px 16px;margin:12px 0}
table{border-collapse:collapse;margin:8px 0}
th,td{border-bottom:1px solid #e5e8ee;padding:3px 10px;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 6px;border-radius:8px;font-size:12px;margin-right:4px;
background:#e5e8ee}
.ok{background:#d6f5df}.bad{background:#fbd9d9}.warn{background:#fff1c7}
.msg{border-left:4px solid #c4cad4;margin:6px 0;padding:4px 10px;background:#fafbfc}
.msg.user{border-color:#4a7bd0}.msg.assistant{border-color:#3d9b5f}.msg.tool{border-color:#c08a1e}
pre{white-space:pre-wrap;word-break:break-word;margin:4px 0;font-size:12.5px}
.empty{font-size:16px;color:#5b6473;padding:32px}.charts{display:flex;flex-wrap:wrap;gap:12px}
nav.pages a{margin-right:8px}svg text{font:11px system-ui,sans-serif}
"""


def page(title: str, body: object, *, nav: list[tuple[str, str]]) -> str:
    """A complete standalone document: inline CSS, no scripts, nothing fetched from elsewhere."""
    links = el("header", *(el("a", label, href=href) for label, href in nav))
    head = el(
        "head",
        el("meta", charset="utf-8"),
        el("meta", name="viewport", content="width=device-width, initial-scale=1"),
        el("title", title),
        el("style", Html(STYLE)),
        el("link", rel="icon", href="data:,"),  # no favicon request: file:// has none to give
    )
    return "<!doctype html>\n" + el(
        "html", head, el("body", links, el("main", el("h1", title), body)), lang="en"
    )
