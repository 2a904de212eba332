"""`superneurons bench`: per-sample time of SN inference with early exit vs the model (paper Tab. 5).

    superneurons bench --model M --data D.jsonl [--classifier CLF ...] [--exit-layer 1 ...] [--k 16]
        [--batch-size 4] [--max-new-tokens 128] [--repeats 3] [--warmup 1] [--no-generate]
        [--device auto] [--model-dtype auto] [--threads T] [--out bench.json]

Times generate(128), generate(1), the full prefill, the bare hooked exit after layer L* (the
physical limit) and the library's SN inference at L*, on one batch, in one run, and prints the
ratios. Without --classifier, a K-neuron timing set is used at each --exit-layer (default 1).
"""

from __future__ import annotations

from pathlib import Path

import typer

from superneurons.cli.hub_options import CLASSIFIER_HELP, REVISION
from superneurons.constants import MAX_NEW_TOKENS
from superneurons.utils.files import json_text


def bench_command(
    model: str = typer.Option(..., "--model", "-m", help="Hub id or local folder."),
    data: Path = typer.Option(..., "--data", "-d", help="JSONL/JSON of {id, image, question[, label]}."),
    classifiers: list[str] | None = typer.Option(None, "--classifier", "-c", help=CLASSIFIER_HELP + " "
                                                "Repeatable; each is timed at its own L*."),
    revision: str | None = REVISION,
    exit_layers: list[int] | None = typer.Option(None, "--exit-layer", help="Also time a timing-only SN set "
                                                 "exiting after this layer (repeatable; default 1)."),
    k: int = typer.Option(16, "--k", help="Neurons in a timing-only SN set."),
    batch_size: int = typer.Option(4, "--batch-size", help="Samples in the timed batch."),
    max_new_tokens: int = typer.Option(MAX_NEW_TOKENS, "--max-new-tokens", help="Generation budget (paper: 128)."),
    repeats: int = typer.Option(3, "--repeats", help="Timed runs per method (median reported)."),
    warmup: int = typer.Option(1, "--warmup", help="Untimed runs per method first."),
    generate: bool = typer.Option(True, "--generate/--no-generate", help="Time the generate() rows."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, mps."),
    model_dtype: str = typer.Option("auto", "--model-dtype", help="Weights dtype: auto, float32, float16, bfloat16."),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads (default: torch's choice)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the timings as JSON here."),
) -> None:
    """Time SN inference with early exit against generation, prefill and the bare early-exit limit."""
    from rich.console import Console

    from superneurons.data.samples import load_samples
    from superneurons.evaluation.bench import run_bench
    from superneurons.inference.classifier import SuperNeuronClassifier
    from superneurons.models import load_model
    from superneurons.report.tables import bench_table

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    clfs = [SuperNeuronClassifier.from_pretrained(c, revision=revision) for c in classifiers or []]
    samples = load_samples(data, require_labels=False)
    err = Console(stderr=True)
    err.print(f"loading [bold]{model}[/] ...")
    vlm = load_model(model, dtype=model_dtype, device=device)
    layers = exit_layers if exit_layers else ([1] if vlm.num_layers > 1 else [0])
    res = run_bench(vlm, samples, classifiers=clfs, exit_layers=layers, k=k, batch_size=batch_size,
                    max_new_tokens=max_new_tokens, repeats=repeats, warmup=warmup, generate=generate)
    console = Console()
    if not console.is_terminal:  # a log or CI: do not squeeze the tables into 80 columns
        console = Console(width=160)
    d = res.to_dict()
    console.print(bench_table(d).to_rich())
    names = {"generate_128": "generate(128)", "generate_1": "generate(1)", "prefill": "the prefill"}
    for layer in res.exit_layers:
        faster = [f"{res.speedup(f'sn_L{layer}', ref):.1f}x faster than {name}" for ref, name in names.items()
                  if any(r.key == ref for r in res.rows)]
        console.print(f"SNs at L*={layer}: " + ", ".join(faster)
                      + f"; library / bare exit = {res.overhead(layer):.2f}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json_text(d) + "\n", encoding="utf-8")
        console.print(f"[green]wrote[/] {out}")


def register(app: typer.Typer) -> None:
    """Add `bench` to the app."""
    app.command("bench")(bench_command)
