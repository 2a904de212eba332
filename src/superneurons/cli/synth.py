"""`superneurons synth`: write the synthetic benchmark (images + JSONL per split and family)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def synth(
        out: Path = typer.Option(..., "--out", help="Folder to write <split>/<family>.jsonl and images into."),
        scenes: int = typer.Option(300, "--scenes", min=1, help="Scenes per split (train, probe, val)."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed; the same seed writes the same files."),
        families: list[str] | None = typer.Option(None, "--family", help="Question family (repeatable); default all."),
    ) -> None:
        """Generate the synthetic coloured-shapes benchmark (presence, attribute, spatial, ...)."""
        from rich.console import Console
        from rich.table import Table

        from superneurons.synth import generate_benchmark

        paths = generate_benchmark(out, n_scenes=scenes, seed=seed, families=families or None)
        table = Table(title=f"synthetic benchmark in {out}")
        table.add_column("split")
        for fam in next(iter(paths.values())):
            table.add_column(fam, justify="right")
        for split, fams in paths.items():
            table.add_row(split, *(str(sum(1 for _ in p.open())) for p in fams.values()))
        Console().print(table)
