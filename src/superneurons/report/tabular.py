"""One table model, three renderers: a `Table` of `Row`s of `Cell`s renders as a rich table
(terminal), GitHub Markdown (`report.md`) and HTML (`report.html`), so the three never disagree.

Rows are grouped by a first column (the paper's "Metric" column: Accuracy, F1, ...). Cells carry
their display text, the number behind it, a difference to a reference in points, and best /
second-best marks (`mark_best`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

DASH = "–"


@dataclass
class Cell:
    """One table cell: display `text`, the number behind it (`value`, for best/second marking),
    its difference to the baseline (`delta`, in points) and the marks set by `mark_best`."""

    text: str
    value: float | None = None
    delta: float | None = None
    best: bool = False
    second: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "value": self.value, "delta": self.delta, "best": self.best,
                "second": self.second}


@dataclass
class Row:
    """A row: its `group` (first column), `method` (second column), cells for the other columns."""

    group: str
    method: str
    cells: list[Cell]
    baseline: bool = False


@dataclass
class Table:
    """A titled table; `columns` are the headers after the group and method columns."""

    key: str
    title: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    caption: str = ""
    group_header: str = "Metric"
    method_header: str = "Method"

    # ---- data ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in results.json under "tables")."""
        return {"key": self.key, "title": self.title, "caption": self.caption,
                "columns": [self.group_header, self.method_header, *self.columns],
                "rows": [{"group": r.group, "method": r.method, "baseline": r.baseline,
                          "cells": [c.to_dict() for c in r.cells]} for r in self.rows]}

    def _group_starts(self) -> list[bool]:
        out, prev = [], None
        for r in self.rows:
            out.append(r.group != prev)
            prev = r.group
        return out

    # ---- renderers ----------------------------------------------------------------------
    def to_markdown(self) -> str:
        """GitHub Markdown: bold best, <ins> second best, italic baseline method names."""
        head = [self.group_header, self.method_header, *self.columns]
        lines = [f"**{self.title}**", "", "| " + " | ".join(head) + " |",
                 "|" + "|".join([":--", ":--"] + ["--:"] * len(self.columns)) + "|"]
        for r, first in zip(self.rows, self._group_starts(), strict=True):
            method = f"*{r.method}*" if r.baseline else r.method
            cells = []
            for c in r.cells:
                t = c.text
                if c.best:
                    t = f"**{t}**"
                elif c.second:
                    t = f"<ins>{t}</ins>"
                if c.delta is not None:
                    t += f" ({c.delta:+.1f})"
                cells.append(t)
            lines.append("| " + " | ".join([r.group if first else "", method, *cells]) + " |")
        if self.caption:
            lines += ["", self.caption]
        return "\n".join(lines) + "\n"

    def to_rich(self) -> Any:
        """A `rich.table.Table` (bold best, underlined second, dim italic baselines)."""
        from rich.table import Table as RichTable

        t = RichTable(title=self.title, caption=self.caption or None, caption_justify="left")
        t.add_column(self.group_header, style="bold")
        t.add_column(self.method_header)
        for col in self.columns:
            t.add_column(col, justify="right")
        starts = self._group_starts()
        for i, (r, first) in enumerate(zip(self.rows, starts, strict=True)):
            cells = []
            for c in r.cells:
                style = "bold" if c.best else "underline" if c.second else ""
                txt = f"[{style}]{_esc(c.text)}[/]" if style else _esc(c.text)
                if c.delta is not None:
                    color = "green" if c.delta > 0 else "red" if c.delta < 0 else "white"
                    txt += f" [{color}]({c.delta:+.1f})[/]"
                cells.append(txt)
            last_of_group = i + 1 == len(self.rows) or starts[i + 1]
            t.add_row(r.group if first else "", _esc(r.method), *cells,
                      style="italic bright_black" if r.baseline else None, end_section=last_of_group)
        return t

    def to_html(self) -> str:
        """An HTML <table> (classes: baseline, best, second, delta pos/neg; styled by html.py)."""
        esc = html.escape
        out = [f'<table class="paper" id="{esc(self.key)}">',
               f"<caption><b>{esc(self.title)}</b>" + (f" {esc(self.caption)}" if self.caption else "")
               + "</caption>", "<thead><tr>"]
        out += [f"<th>{esc(h)}</th>" for h in (self.group_header, self.method_header, *self.columns)]
        out.append("</tr></thead><tbody>")
        starts = self._group_starts()
        spans = _group_spans(starts)
        for r, first, span in zip(self.rows, starts, spans, strict=True):
            cls = ' class="baseline"' if r.baseline else ""
            tr = [f"<tr{cls}>"]
            if first:
                tr.append(f'<th class="group" rowspan="{span}">{esc(r.group)}</th>')
            tr.append(f'<td class="method">{esc(r.method)}</td>')
            for c in r.cells:
                ccls = "best" if c.best else "second" if c.second else ""
                txt = esc(c.text)
                if c.delta is not None:
                    sign = "pos" if c.delta > 0 else "neg" if c.delta < 0 else "zero"
                    txt += f'<sup class="delta {sign}">({c.delta:+.1f})</sup>'
                tr.append(f'<td class="{ccls}">{txt}</td>' if ccls else f"<td>{txt}</td>")
            tr.append("</tr>")
            out.append("".join(tr))
        out.append("</tbody></table>")
        return "\n".join(out)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _group_spans(starts: list[bool]) -> list[int]:
    spans = [0] * len(starts)
    i = 0
    while i < len(starts):
        j = i + 1
        while j < len(starts) and not starts[j]:
            j += 1
        spans[i] = j - i
        i = j
    return spans


# ----------------------------------------------------------------------------- cell helpers
def pct(value: float | None, delta_to: float | None = None) -> Cell:
    """A percentage cell (0.907 -> "90.7"), with the difference to `delta_to` in points."""
    if value is None:
        return Cell(DASH)
    delta = None if delta_to is None else round(100 * value, 1) - round(100 * delta_to, 1)
    return Cell(f"{100 * value:.1f}", value=float(value), delta=delta)


def text(value: str) -> Cell:
    return Cell(value)


def mark_best(rows: Sequence[Row], second: bool = True, lower_is_better: bool = False,
              columns: Sequence[int] | None = None) -> None:
    """Mark the best (and second best) numeric cell of each column among `rows`, in place.

    Values are compared as displayed (rounded to the shown decimal), so equal-looking numbers tie
    and are all marked. `columns` limits the marking to those cell indices.
    """
    if not rows:
        return
    for j in columns if columns is not None else range(len(rows[0].cells)):
        vals = sorted({_shown(r.cells[j]) for r in rows if r.cells[j].value is not None},
                      reverse=not lower_is_better)
        if not vals:
            continue
        for r in rows:
            c = r.cells[j]
            if c.value is None:
                continue
            if _shown(c) == vals[0]:
                c.best = True
            elif second and len(vals) > 1 and _shown(c) == vals[1]:
                c.second = True


def _shown(c: Cell) -> str | float:
    try:
        return float(c.text.split()[0])
    except (ValueError, IndexError):
        return c.value if c.value is not None else 0.0
