"""`superneurons probe`: capture a model's activations on a data file into an activation store.

    superneurons probe --model M --data D.jsonl --out DIR [--token first|last] [--layers 0-5,8]
        [--exit-layer K] [--limit N] [--balanced N --seed S] [--batch-size B] [--shard-size S]
        [--dtype float16|float32] [--device auto|cpu|cuda] [--model-dtype auto|float32|...] [--skip-bad]

Running the same command again resumes an interrupted store.
"""

from __future__ import annotations

from pathlib import Path

import typer


def probe_command(
    model: str = typer.Option(..., "--model", "-m", help="Hub id (llava-hf/llava-1.5-7b-hf) or local folder."),
    data: Path = typer.Option(..., "--data", "-d", help="JSONL/JSON of {id, image, question, label} records."),
    out: Path = typer.Option(..., "--out", "-o", help="Store folder (created; an existing one is resumed)."),
    token: str = typer.Option("first", "--token", help="first: last prompt position (early exit possible); "
                              "last: last token of a greedy generation."),
    layers: str | None = typer.Option(None, "--layers", help="Layers to store, e.g. 0-5,8 (default: all)."),
    exit_layer: int | None = typer.Option(None, "--exit-layer", help="Stop each forward after this layer."),
    limit: int | None = typer.Option(None, "--limit", help="Use only the first N samples (after --balanced)."),
    balanced: int | None = typer.Option(None, "--balanced", help="Draw a class-balanced subset of N samples."),
    seed: int = typer.Option(0, "--seed", help="Seed of the balanced draw."),
    batch_size: int = typer.Option(8, "--batch-size", help="Samples per forward."),
    shard_size: int = typer.Option(256, "--shard-size", help="Samples per shard file."),
    dtype: str = typer.Option("float16", "--dtype", help="Stored dtype: float16 or float32."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, mps."),
    model_dtype: str = typer.Option("auto", "--model-dtype", help="Weights dtype: auto, float32, float16, bfloat16."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Generation budget for --token last."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images (listed in the manifest)."),
) -> None:
    """Run the model on every sample and store the residual stream of each layer at one token."""
    from rich.console import Console

    from superneurons.capture import parse_layers
    from superneurons.data.samples import balanced_sample, load_samples
    from superneurons.errors import DataError, StoreError
    from superneurons.models import load_model
    from superneurons.store import probe

    console = Console(stderr=True)
    try:
        layer_list = parse_layers(layers)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    samples = load_samples(data)
    if balanced is not None:
        samples = balanced_sample(samples, balanced, seed=seed)
    if limit is not None:
        if limit < 1:
            raise DataError(f"--limit {limit}: use a positive number of samples")
        samples = samples[:limit]
    console.print(f"loading [bold]{model}[/] ...")
    vlm = load_model(model, dtype=model_dtype, device=device)
    console.print(f"{vlm!r}: probing {len(samples)} samples from {data}")
    store = probe(vlm, samples, out, token=token, layers=layer_list, exit_layer=exit_layer, dtype=dtype,
                  shard_size=shard_size, batch_size=batch_size, skip_bad=skip_bad,
                  max_new_tokens=max_new_tokens, progress=True)
    skipped = store.manifest["skipped"]
    for item in skipped:
        console.print(f"[yellow]skipped[/] {item['id']}: {item['reason']}")
    Console().print(f"[green]wrote[/] {store.directory}: {store.num_samples} samples x {len(store.layers)} layers "
                    f"x {store.hidden_size} ({store.manifest['dtype']}, token={token})"
                    + (f", {len(skipped)} skipped" if skipped else ""))


def register(app: typer.Typer) -> None:
    """Add `probe` to the app."""
    app.command("probe")(probe_command)
