"""`superneurons datasets`: prepare the paper's datasets from their published layouts as JSONL.

    superneurons datasets list
    superneurons datasets prepare NAME --root DIR --split train|val --out FILE.jsonl
        [--n 3000 --balanced --seed 0] [--variant random|popular|adversarial]
        [--images DIR] [--annotations FILE] [--image-dir DIR] [--skip-missing]
"""

from __future__ import annotations

from pathlib import Path

import typer

datasets_app = typer.Typer(name="datasets", no_args_is_help=True,
                           help="Prepare the paper's datasets (POPE, InstaOrder, VizWiz, CLEVR, A-OKVQA, "
                                "ScienceQA) as probing / validation JSONL.")


@datasets_app.command("list")
def list_datasets() -> None:
    """List the dataset names `prepare` accepts."""
    from rich.console import Console
    from rich.table import Table

    from superneurons.data.registry import DATASETS

    table = Table()
    table.add_column("name", no_wrap=True)
    for col in ("splits", "variants", "description"):
        table.add_column(col)
    for name in sorted(DATASETS):
        spec = DATASETS[name]
        table.add_row(name, ", ".join(spec.splits), ", ".join(spec.variants), spec.description)
    Console().print(table)


@datasets_app.command("prepare")
def prepare(
    name: str = typer.Argument(..., help="Dataset name (see `superneurons datasets list`)."),
    root: Path = typer.Option(..., "--root", help="Folder holding the dataset as downloaded."),
    split: str = typer.Option(..., "--split", help="train (probing) or val (validation)."),
    out: Path = typer.Option(..., "--out", help="JSONL file to write."),
    n: int | None = typer.Option(None, "--n", min=1, help="Number of samples to keep (the paper probes 3000)."),
    balanced: bool = typer.Option(False, "--balanced", help="Draw as many yes as no (MCQ: by whole questions)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of every random draw."),
    variant: str | None = typer.Option(None, "--variant",
                                       help="POPE variant / builder strategy: random, popular, adversarial."),
    images: Path | None = typer.Option(None, "--images", help="Image folder, when not where the layout puts it."),
    annotations: Path | None = typer.Option(None, "--annotations",
                                            help="Annotation file, when not where the layout puts it "
                                                 "(coco-pope: any COCO-format instances file)."),
    image_dir: Path | None = typer.Option(None, "--image-dir",
                                          help="Where images decoded from parquet go (default: next to --out)."),
    skip_missing: bool = typer.Option(False, "--skip-missing",
                                      help="Skip (and count) questions whose image file is missing."),
) -> None:
    """Read a dataset split, optionally draw a (balanced) subset, write the standard JSONL."""
    from rich.console import Console

    from superneurons.data.registry import prepare_dataset

    report = prepare_dataset(name, root, split, out, n=n, balanced=balanced, seed=seed, variant=variant,
                             image_root=images, image_dir=image_dir, annotations=annotations,
                             skip_missing=skip_missing)
    console = Console()
    st = report.stats
    console.print(f"[bold]{report.name}[/] {report.split}: kept {st.kept}, filtered {st.num_filtered}, "
                  f"skipped {st.num_skipped}")
    for label, counts in (("filtered", st.filtered), ("skipped", st.skipped)):
        for reason, count in sorted(counts.items()):
            console.print(f"  {label}: {count} {reason}")
    if report.selection:
        console.print(f"  {report.selection}")
    questions = f" from {report.num_questions} questions" if report.num_questions is not None else ""
    console.print(f"wrote {report.num_written} samples ({report.num_yes} yes / {report.num_no} no){questions} "
                  f"to {report.out}")


def register(app: typer.Typer) -> None:
    """Add the `datasets` command group to the main app."""
    app.add_typer(datasets_app, name="datasets")
