"""A small document model (headings, paragraphs, tables, images) rendered to Markdown and to one offline HTML page.

Reports build their sections once as ``(kind, body)`` blocks; :func:`render_markdown` and :func:`render_html` draw
the same blocks, so both files always hold the same tables. Kinds: ``h1``/``h2``/``h3`` (text), ``p`` and ``note``
(text, ``**bold**`` allowed), ``kv`` (list of ``(key, value)``), ``table`` (:class:`Table`), ``tables`` (a list of
small tables shown side by side), ``list`` (list of text) and ``img`` (``(file name, caption)``).
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d1d1f;margin:0;
background:#f4f5f7}main{max-width:1240px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:26px;margin:0 0 12px}h2{font-size:21px;margin:34px 0 10px;padding-top:10px;border-top:2px solid #e3e5e8}
h3{font-size:17px;margin:22px 0 8px}nav{margin:4px 0 8px;color:#555}nav a{margin-right:14px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;margin:0}dt{font-weight:600;color:#444}
dd{margin:0;overflow-wrap:anywhere}code{font:13px ui-monospace,"DejaVu Sans Mono",monospace;background:#f1f2f4;
padding:1px 4px;border-radius:3px}.scroll{overflow-x:auto;margin:8px 0 14px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:14px}
th,td{border:1px solid #dcdfe3;padding:4px 9px;text-align:right;vertical-align:top}th{background:#f1f3f6}
td:first-child,th:first-child,.t{text-align:left}.ci{color:#6b7078;font-size:12px;white-space:nowrap}
caption{caption-side:top;text-align:left;font-weight:600;padding:0 0 4px}
.group{display:flex;flex-wrap:wrap;gap:4px 18px}.group table{font-size:13px}.group td,.group th{padding:3px 7px}
.note{background:#fff6e0;border-left:4px solid #e0a100;padding:8px 12px;margin:10px 0}
figure{margin:12px 0 18px}figure img{max-width:100%;height:auto;border:1px solid #e3e5e8}
figcaption{color:#555;font-size:13px}ul.fail{font-size:13px}
"""


METRIC_LABELS = {  # keys: mura_cli.scoring.METRIC_NAMES and the box metrics
    "kappa": "Cohen's kappa",
    "auroc": "AUROC",
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "precision": "precision (abnormal)",
    "recall": "recall (abnormal)",
    "f1": "F1 (abnormal)",
    "macro_f1": "macro F1",
    "weighted_precision": "weighted precision",
    "weighted_recall": "weighted recall",
    "weighted_f1": "weighted F1",
    "ece": "ECE (lower is better)",
    "mean_iou": "mean IoU",
    "hit_rate": "hit rate",
    "pointing": "pointing",
    "pointing_chance": "pointing chance",
}
"""How every metric is named in reports and tables: lower-case words, acronyms as written, averages spelled out
(``weighted F1``), the class in parentheses where a metric is of the abnormal class only."""

MINUS = "\u2212"
"""The minus sign of rendered numbers (report.md, index.html, a UTF-8 terminal); CSV and JSON keep ASCII ``-``."""
OUTSIDE = "\u2020"
"""Marks a point estimate that lies outside its own percentile interval (see :data:`OUTSIDE_NOTE`)."""
OUTSIDE_NOTE = (
    "{mark} marks an estimate outside its own interval (here: {rows}). The intervals are percentile bootstrap "
    "intervals, the 2.5th and 97.5th percentiles of the metric over resamples of whole studies, and an estimate "
    "falls outside when the metric is biased under resampling, not by an error: a resample repeats some studies "
    "and drops others, so each calibration bin holds fewer distinct studies and the ECE of nearly every resample "
    "is larger than the ECE of the data itself. Read the estimate as the figure, the interval's width as its "
    "uncertainty."
)


def format_interval(
    value: Any, low: Any, high: Any, *, digits: int = 3, minus: str = MINUS, mark: str = OUTSIDE
) -> str:
    """``0.333 [−0.027, 0.651]``: the estimate, then its interval; ``n/a`` for what is missing.

    ``mark`` is appended when the estimate lies outside the interval (a biased metric such as ECE).
    """
    num = lambda x: fmt_num(x, digits, minus)  # noqa: E731
    if num(value) == "n/a":
        return "n/a"
    if num(low) == num(high) == "n/a":
        return f"{num(value)} [n/a]"
    text = f"{num(value)} [{num(low)}, {num(high)}]"
    return f"{text} {mark}" if mark and outside(value, low, high) else text


def outside(value: Any, low: Any, high: Any) -> bool:
    """Whether a finite estimate lies outside its finite interval (by more than rounding)."""
    if not all(fmt_num(x) != "n/a" for x in (value, low, high)):
        return False
    return bool(value < low - 1e-12 or value > high + 1e-12)


class Interval(NamedTuple):
    """A point estimate with its bootstrap interval; any of the three may be missing."""

    value: Any
    low: Any
    high: Any

    def __str__(self) -> str:
        return format_interval(self.value, self.low, self.high)

    @property
    def outside(self) -> bool:
        return outside(self.value, self.low, self.high)


class Table(NamedTuple):
    """Column headers, rows of cells (text, :class:`Interval` or :class:`Code`) and an optional caption."""

    headers: list[str]
    rows: list[list[Any]]
    caption: str = ""


class Code(str):
    """Text shown as code."""


Block = tuple[str, Any]


def fmt_num(x: Any, digits: int = 3, minus: str = MINUS) -> str:
    """A number with ``digits`` decimals and a clear ``minus``; ``n/a`` for null, NaN, infinity or anything that
    is not a number."""
    ok = isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
    if not ok:
        return "n/a"
    text = f"{x:.{digits}f}"
    return text.lstrip("-").replace("-", minus) if float(text) == 0 else text.replace("-", minus)


def _md_cell(x: Any) -> str:
    text = f"`{x}`" if isinstance(x, Code) else str(x)
    return text.replace("|", "\\|").replace("\n", " ")


def _numeric_columns(t: Table) -> list[bool]:
    """Which columns hold only numbers (right-aligned); the first column never does."""
    number = re.compile(rf"[-{MINUS}]?\d[\d.,]*|n/a|")
    return [
        j > 0 and all(isinstance(r[j], Interval) or number.fullmatch(str(r[j])) for r in t.rows if j < len(r))
        for j in range(len(t.headers))
    ]


def _md_table(t: Table) -> str:
    head = [f"**{t.caption}**", ""] if t.caption else []
    lines = [
        "| " + " | ".join(map(_md_cell, t.headers)) + " |",
        "|" + "|".join("---:" if n else ":---" for n in _numeric_columns(t)) + "|",
    ]
    return "\n".join(head + lines + ["| " + " | ".join(map(_md_cell, r)) + " |" for r in t.rows])


def render_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as GitHub-flavoured Markdown; images are links to the PNGs beside report.md."""
    out: list[str] = []
    for kind, body in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + body)
        elif kind == "p":
            out.append(body)
        elif kind == "note":
            out.append("> " + body)
        elif kind == "kv":
            out.append("\n".join(f"- **{k}:** {_md_cell(v)}" for k, v in body))
        elif kind == "table":
            out.append(_md_table(body))
        elif kind == "tables":
            out.extend(_md_table(t) for t in body)
        elif kind == "list":
            out.append("\n".join(f"- {_md_cell(item)}" for item in body))
        elif kind == "img":
            out.append(f"![{body[1]}]({body[0]})")
    return "\n\n".join(out) + "\n"


def _html_cell(x: Any, tag: str = "td", numeric: bool = True) -> str:
    open_tag = f"<{tag}>" if numeric else f"<{tag} class=t>"
    if isinstance(x, Interval):
        text = str(x)
        if " [" in text:
            value, ci = text.split(" ", 1)
            return f"{open_tag}{html.escape(value)}<br><span class=ci>{html.escape(ci)}</span></{tag}>"
    if isinstance(x, Code):
        return f"{open_tag}<code>{html.escape(x)}</code></{tag}>"
    return f"{open_tag}{html.escape(str(x))}</{tag}>"


def _html_table(t: Table) -> str:
    caption = f"<caption>{html.escape(t.caption)}</caption>" if t.caption else ""
    numeric = _numeric_columns(t)
    head = "<tr>" + "".join(_html_cell(h, "th", n) for h, n in zip(t.headers, numeric, strict=False)) + "</tr>"
    body = "".join(
        "<tr>" + "".join(_html_cell(c, "td", n) for c, n in zip(row, numeric, strict=False)) + "</tr>" for row in t.rows
    )
    return f"<table>{caption}<thead>{head}</thead><tbody>{body}</tbody></table>"


def _inline(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))


def render_html(blocks: Sequence[Block], images: Mapping[str, bytes], title: str = "MURA benchmark report") -> str:
    """One self-contained page: inline CSS, PNGs as base64 data URIs, no script and nothing fetched."""
    sections = [b for k, b in blocks if k == "h2"]
    nav = "<nav>" + "".join(f'<a href="#s{i}">{html.escape(s)}</a>' for i, s in enumerate(sections)) + "</nav>"
    out: list[str] = []
    h2 = 0
    for kind, body in blocks:
        if kind == "h1":
            out.append(f"<h1>{html.escape(body)}</h1>")
        elif kind == "h2":
            out.append(f'<h2 id="s{h2}">{html.escape(body)}</h2>')
            h2 += 1
        elif kind == "h3":
            out.append(f"<h3>{html.escape(body)}</h3>")
        elif kind in ("p", "note"):
            out.append(f"<p{' class=note' if kind == 'note' else ''}>{_inline(body)}</p>")
        elif kind == "kv":
            rows = "".join(f"<dt>{html.escape(k)}</dt>{_html_cell(v, 'dd')}" for k, v in body)
            out.append(f"<dl>{rows}</dl>{nav}")
        elif kind == "table":
            out.append(f"<div class=scroll>{_html_table(body)}</div>")
        elif kind == "tables":
            out.append(
                "<div class=group>" + "".join(f"<div class=scroll>{_html_table(t)}</div>" for t in body) + "</div>"
            )
        elif kind == "list":
            out.append("<ul class=fail>" + "".join(f"<li>{html.escape(i)}</li>" for i in body) + "</ul>")
        elif kind == "img" and body[0] in images:
            data = base64.b64encode(images[body[0]]).decode("ascii")
            alt = html.escape(body[1])
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
            )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        f'content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title><style>{_CSS}</style>'
        f"</head><body><main>\n" + "\n".join(out) + "\n</main></body></html>\n"
    )
