"""`superneurons study`: the paper's whole study on one model and several datasets, resumable, with the report.

    superneurons study STUDY.toml --out DIR [--device auto] [--model-dtype auto] [--limit N] [--threads T]

Writes DIR/report.html (self-contained), DIR/report.md, DIR/results.json and DIR/figures/, and
prints Tab. 1, Tab. 2 and Tab. 5. Running it again resumes: finished steps are reused, changed ones
(a new dataset, another option) rerun. Under `torchrun --nproc_per_node K -m superneurons study ...`
the probing-set captures are split over the processes, as `superneurons probe` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def print_tables(results: dict[str, Any]) -> None:
    """Tab. 1, Tab. 2, Tab. 5 and the runtime table of a results dict, on stdout."""
    from rich.console import Console

    from superneurons.report.tables import bench_table, table1, table2, table5

    console = Console()
    if not console.is_terminal:  # a log or CI: do not squeeze the tables into 80 columns
        console = Console(width=160)
    for table in (table1(results), table2(results), table5(results, results.get("tab5_family"))):
        console.print(table.to_rich())
    if results.get("bench"):
        console.print(bench_table(results["bench"]).to_rich())


def study_command(
    study: Path = typer.Argument(..., help="The study file (TOML; see examples/ and docs/runbook.md)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created; an existing one is resumed)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, mps."),
    model_dtype: str = typer.Option("auto", "--model-dtype", help="Weights dtype: auto, float32, float16, bfloat16."),
    limit: int | None = typer.Option(None, "--limit", help="Use only the first N samples of every set (a trial run)."),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads (default: torch's choice)."),
) -> None:
    """Run the study file's datasets through probe, select, evaluate, experiments, cascade and bench; write the report."""
    import json
    from contextlib import nullcontext

    from rich.console import Console

    from superneurons.activations.distributed import dist_info
    from superneurons.study import run_study
    from superneurons.utils.locking import output_lock

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    with output_lock(out, what="study folder") if dist_info().is_main else nullcontext():  # rank 0 writes DIR
        paths = run_study(study, out, device=device, model_dtype=model_dtype, limit=limit)
    if not paths:  # a non-main rank of a distributed run
        return
    results = json.loads(paths["json"].read_text(encoding="utf-8"))
    print_tables(results)
    steps = results.get("steps", {})
    Console().print(f"[green]wrote[/] {paths['html']}, {paths['markdown']}, {paths['json']} in "
                    f"{results['meta']['seconds'] / 60:.1f} min ({len(steps.get('ran', []))} steps run, "
                    f"{len(steps.get('reused', []))} reused)")


def register(app: typer.Typer) -> None:
    """Add `study` to the app."""
    app.command("study")(study_command)
