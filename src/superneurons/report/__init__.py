"""Reports: the paper's tables and figures from a study's results, as Markdown and self-contained HTML.

| module | what it owns |
|---|---|
| tables.py | `Table` (+ rich / Markdown / HTML renderers); Tab. 1, Tab. 2, Tab. 5 layouts; the bench table |
| figures.py | Fig. 3a, Fig. 3b, App. Fig. 1, Fig. 4 and the runtime chart (matplotlib, Agg, no pyplot) |
| document.py | `Document` of sections, paragraphs, tables, figures; Markdown output |
| html.py | `render_html` / `write_html`: one HTML file, inline CSS, figures as base64 PNG |
| analysis.py | per-family numbers: Alg. 1 on a probing store, Alg. 2 on validation with the baselines |
| build.py | results dict -> `Document` -> report.md, report.html, figures/, results.json |
| disclosure.py | `training_disclosure`: how a local model was trained (its training.json), for the summary |
| cascade_plot.py | the cascade sweep figure (`superneurons.cascade`) |

matplotlib is optional (`pip install superneurons[report]`); it is imported only when a figure
is drawn. Names are imported on first use, so importing this package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "Cell": "tables", "Row": "tables", "Table": "tables", "table1": "tables", "table2": "tables",
    "table5": "tables", "bench_table": "tables", "Document": "document", "Section": "document",
    "Figure": "document", "Bullets": "document", "SimpleTable": "document", "render_html": "html",
    "write_html": "html", "build_document": "build", "write_report": "build",
    "training_disclosure": "disclosure",
    "analyse_probe": "analysis",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"superneurons.report.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'superneurons.report' has no attribute {name!r}")
