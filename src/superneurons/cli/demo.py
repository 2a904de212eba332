"""`superneurons demo`: the paper's main tables and figures on the shipped demo VLM, in one command.

    superneurons demo [--out DIR] [--quick] [--seed S] [--model M] [--family F ...] [--probe N] [--val N]
        [--experiments all|core|none] [--no-cascade] [--no-bench] [--batch-size B] [--max-new-tokens 128]
        [--device auto] [--threads T]

The demo is a study: it writes the synthetic benchmark and DIR/study.toml, then runs
`superneurons study` on it (edit the file and rerun `superneurons study DIR/study.toml --out DIR`;
finished steps are reused). Writes DIR/report.html (self-contained), DIR/report.md,
DIR/results.json and DIR/figures/, and prints Tab. 1, Tab. 2, Tab. 5 and the runtime comparison.
"""

from __future__ import annotations

from pathlib import Path

import typer

from superneurons.constants import MAX_NEW_TOKENS


def demo_command(
    out: Path = typer.Option(Path("superneurons_demo"), "--out", "-o", help="Output folder (created)."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes (a couple of minutes; CI)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the benchmark and of the balanced probing draw."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model folder or hub id (default: the shipped "
                                     "demo model)."),
    families: list[str] | None = typer.Option(None, "--family", help="Question family (repeatable); default all."),
    n_probe: int | None = typer.Option(None, "--probe", min=2, help="Probing samples per family (default 500; quick 40)."),
    n_val: int | None = typer.Option(None, "--val", min=1, help="Validation samples per family (default 300; quick 24)."),
    experiments: str | None = typer.Option(None, "--experiments", help="all, core (overlap + probe-size) or "
                                           "none (default: all; core with --quick)."),
    cascade: bool = typer.Option(True, "--cascade/--no-cascade", help="Run the cascade sweep on presence."),
    bench: bool = typer.Option(True, "--bench/--no-bench", help="Run the runtime comparison."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Samples per forward."),
    max_new_tokens: int = typer.Option(MAX_NEW_TOKENS, "--max-new-tokens", min=1, help="Generation budget of the model baseline."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: torch's choice)."),
) -> None:
    """Reproduce Tab. 1 / 2 / 5 and the paper's figures on the demo model and a fresh synthetic benchmark."""
    import json

    from rich.console import Console
    from rich.markup import escape

    from superneurons.cli.study import print_tables
    from superneurons.synth.demo import run_demo

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    paths = run_demo(out, quick=quick, seed=seed, model=model, families=families or None, n_probe=n_probe,
                     n_val=n_val, batch_size=batch_size, max_new_tokens=max_new_tokens, device=device,
                     experiments=experiments, cascade=cascade, bench=bench)
    results = json.loads(paths["json"].read_text(encoding="utf-8"))
    print_tables(results)
    Console().print(escape(f"wrote {paths['html']}, {paths['markdown']}, {paths['json']} "
                           f"in {results['meta']['seconds'] / 60:.1f} min; edit {paths['study']} and rerun it with "
                           f"`superneurons study {paths['study']} --out {paths['out']}`"))


def register(app: typer.Typer) -> None:
    """Add `demo` to the app."""
    app.command("demo")(demo_command)
