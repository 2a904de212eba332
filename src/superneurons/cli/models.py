"""`superneurons models`: every model family, its adapter and what is exact for it.

    superneurons models              a table (the families tests/conformance/ checks)
    superneurons models --markdown   the same as the README's Markdown table
"""

from __future__ import annotations

import typer


def models(markdown: bool = typer.Option(False, "--markdown", help="Print the README's Markdown table.")) -> None:
    """List the model families: adapter, and whether capture, early exit, truncated loading, prefix
    reuse and the cascade are exact (checked by the conformance suite). Other image-text-to-text
    model types load through the generic path."""
    from rich.console import Console
    from rich.table import Table

    from superneurons.models.registry import family_cells, family_markdown

    if markdown:
        typer.echo(family_markdown())
        return
    head, rows = family_cells()
    table = Table()
    for col in head:
        table.add_column(col, no_wrap=col == "model type")
    for row in rows:
        table.add_row(*(f"[red]{c}[/]" if c == "no" else c for c in row))
    console = Console()
    console.print(table)
    console.print("Any other image-text-to-text model type loads through the generic VLM path.")


def register(app: typer.Typer) -> None:
    """Add the `models` command to the main app."""
    app.command("models")(models)
