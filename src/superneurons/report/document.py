"""A report as plain data: sections of paragraphs, bullet lists, tables and figures.

The demo builds one `Document`; `to_markdown` writes `report.md` (figures as files beside it) and
`superneurons.report.html.render_html` writes the self-contained `report.html` from the same
object, so both always show the same numbers.

Paragraphs and bullets accept a small inline Markdown subset that both renderers understand:
`code`, **bold** and [text](link).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from superneurons.constants import FIGURE_DIR
from superneurons.report.tabular import Table

_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")


@dataclass
class Figure:
    """A PNG figure: `name` is its file stem (figures/<name>.png), `title` its heading."""

    name: str
    title: str
    png: bytes
    caption: str = ""

    @classmethod
    def from_file(cls, path: str | Path, name: str, title: str, caption: str = "") -> Figure:
        return cls(name=name, title=title, png=Path(path).read_bytes(), caption=caption)


@dataclass
class SimpleTable:
    """A plain table of strings (e.g. an experiment's rows), rendered as is."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""

    def to_markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.caption:
            lines += ["", self.caption]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        esc = html.escape
        out = ['<table class="simple">', f"<caption><b>{esc(self.title)}</b>"
               + (f" {esc(self.caption)}" if self.caption else "") + "</caption>", "<thead><tr>"]
        out += [f"<th>{esc(c)}</th>" for c in self.columns]
        out.append("</tr></thead><tbody>")
        out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in self.rows]
        out.append("</tbody></table>")
        return "\n".join(out)


@dataclass
class Bullets:
    """A bullet list (inline Markdown subset in each item)."""

    items: list[str]


Block = str | Bullets | Table | SimpleTable | Figure


@dataclass
class Section:
    """A titled section; `anchor` is its HTML id (default: from the title)."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    anchor: str = ""

    def __post_init__(self) -> None:
        if not self.anchor:
            self.anchor = re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "section"


@dataclass
class Document:
    """Title, an optional subtitle line and the sections in order."""

    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]

    def tables(self) -> list[Table]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Table)]

    def to_markdown(self, figure_dir: str = FIGURE_DIR) -> str:
        """GitHub Markdown; figures are referenced as `<figure_dir>/<name>.png` (see `write_figures`)."""
        out = [f"# {self.title}", ""]
        if self.subtitle:
            out += [self.subtitle, ""]
        if len(self.sections) > 2:
            out += ["Contents: " + " · ".join(f"[{s.title}](#{s.anchor})" for s in self.sections), ""]
        for s in self.sections:
            out += [f'<a id="{s.anchor}"></a>', "", f"## {s.title}", ""]
            for b in s.blocks:
                if isinstance(b, str):
                    out += [b, ""]
                elif isinstance(b, Bullets):
                    out += [f"- {item}" for item in b.items] + [""]
                elif isinstance(b, (Table, SimpleTable)):
                    out += [b.to_markdown()]
                elif isinstance(b, Figure):
                    out += [f"**{b.title}**", "", f"![{b.title}]({figure_dir}/{b.name}.png)", ""]
                    if b.caption:
                        out += [b.caption, ""]
        return "\n".join(out).rstrip() + "\n"

    def write_figures(self, directory: str | Path) -> list[Path]:
        """Write every figure as `<directory>/<name>.png`; return the paths."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        paths = []
        for f in self.figures():
            p = d / f"{f.name}.png"
            p.write_bytes(f.png)
            paths.append(p)
        return paths


def inline_html(text: str) -> str:
    """The inline Markdown subset (`code`, **bold**, [text](link)) as escaped HTML."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        code, bold, label, href = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<b>{html.escape(bold)}</b>")
        else:
            out.append(f'<a href="{html.escape(href, quote=True)}">{html.escape(label)}</a>')
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)
