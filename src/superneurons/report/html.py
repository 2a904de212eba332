"""A `Document` as one self-contained HTML file: inline CSS, figures embedded as base64 PNG.

Nothing is loaded from elsewhere (no scripts, fonts or style sheets), so `report.html` opens
offline, can be mailed as one file, and renders the same in any browser.

    >>> write_html(doc, "out/report.html")   # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from superneurons.report.document import Bullets, Document, Figure, SimpleTable, inline_html
from superneurons.report.tabular import Table

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 1.5em 2em 4em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin: 1.4em 0 0.4em; }
.subtitle { color: #555; margin-top: 0; }
nav { background: #f6f8fa; border: 1px solid #e1e4e8; border-radius: 6px; padding: 0.5em 1em; font-size: 0.92em; }
nav a { margin-right: 1.1em; white-space: nowrap; }
code { background: #f3f3f3; padding: 0 0.25em; border-radius: 3px; font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.8em 0 1.6em; font-size: 0.9em; }
caption { caption-side: top; text-align: left; color: #555; font-size: 0.88em; padding-bottom: 0.5em;
          max-width: 1100px; }
caption b { color: #1d1d1f; }
th, td { padding: 0.28em 0.65em; border-bottom: 1px solid #e5e5e5; }
thead th { border-bottom: 2px solid #333; text-align: center; }
td { text-align: right; font-variant-numeric: tabular-nums; }
td.method { text-align: left; white-space: nowrap; }
th.group { text-align: left; vertical-align: top; background: #fafafa; border-right: 1px solid #e5e5e5; }
tr.baseline td { background: #eeeeee; color: #444; font-style: italic; }
td.best { font-weight: 700; }
td.second { text-decoration: underline; }
sup.delta { font-size: 0.72em; margin-left: 0.15em; font-style: normal; }
sup.pos { color: #1a7f37; } sup.neg { color: #cf222e; } sup.zero { color: #777; }
table.simple td { text-align: left; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.88em; max-width: 1100px; }
ul { padding-left: 1.3em; }
"""


def _figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    cap = f"<figcaption>{inline_html(fig.caption)}</figcaption>" if fig.caption else ""
    return (f'<figure id="fig-{html.escape(fig.name)}"><h3>{html.escape(fig.title)}</h3>'
            f'<img alt="{html.escape(fig.title, quote=True)}" src="data:image/png;base64,{data}">{cap}</figure>')


def render_html(doc: Document) -> str:
    """The whole report as one HTML string (UTF-8, no external resources)."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(doc.title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(doc.title)}</h1>"]
    if doc.subtitle:
        parts.append(f'<p class="subtitle">{inline_html(doc.subtitle)}</p>')
    if len(doc.sections) > 2:
        parts.append("<nav>" + "".join(f'<a href="#{html.escape(s.anchor)}">{html.escape(s.title)}</a>'
                                       for s in doc.sections) + "</nav>")
    for s in doc.sections:
        parts.append(f'<section id="{html.escape(s.anchor)}"><h2>{html.escape(s.title)}</h2>')
        for b in s.blocks:
            if isinstance(b, str):
                parts.append(f"<p>{inline_html(b)}</p>")
            elif isinstance(b, Bullets):
                parts.append("<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in b.items) + "</ul>")
            elif isinstance(b, (Table, SimpleTable)):
                parts.append(b.to_html())
            elif isinstance(b, Figure):
                parts.append(_figure_html(b))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(doc: Document, path: str | Path) -> Path:
    """Write `render_html(doc)` to `path` (parents created); return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_html(doc), encoding="utf-8")
    return p
