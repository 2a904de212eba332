"""`superneurons report`: rebuild a study's report from its results.json, without the model.

    superneurons report DIR

Rewrites DIR/report.html, DIR/report.md and DIR/figures/ (e.g. after upgrading the library, or
after editing the report code); the numbers are those of DIR/results.json.
"""

from __future__ import annotations

from pathlib import Path

import typer


def report_command(
    out: Path = typer.Argument(..., help="A study's (or the demo's) output folder holding results.json."),
) -> None:
    """Rebuild report.html / report.md / figures from DIR/results.json (no model needed)."""
    from rich.console import Console

    from superneurons.study import rebuild_report

    paths = rebuild_report(out)
    Console().print(f"[green]wrote[/] {paths['html']}, {paths['markdown']}")


def register(app: typer.Typer) -> None:
    """Add `report` to the app."""
    app.command("report")(report_command)
