"""`superneurons probe`: capture a model's activations on a data file into an activation store.

    superneurons probe --model M --data D.jsonl --out DIR [--token first|last] [--layers 0-5,8]
        [--exit-layer K] [--limit N] [--balanced N --seed S] [--batch-size B] [--shard-size S]
        [--dtype float16|bfloat16|float32] [--device auto|cpu|cuda] [--model-dtype auto|float32|...]
        [--device-map auto] [--truncate | --full-model] [--prefix-reuse] [--skip-bad] [--refuse-changed]
        [--max-pixels N]

With `--exit-layer K` (token first) only the decoder layers 0..K are loaded (`--full-model` loads
all). Running the same command again resumes an interrupted store (samples whose question or image
changed are recomputed, or refused with --refuse-changed); the folder is locked while a probe writes
it. Under `torchrun --nproc_per_node K
-m superneurons probe ...` (or `accelerate launch`) each process probes its slice of the samples on
its own GPU and rank 0 writes the merged manifest (see superneurons.activations.distributed).
"""

from __future__ import annotations

from pathlib import Path

import typer

from superneurons.constants import MAX_NEW_TOKENS, MAX_PIXELS


def probe_command(
    model: str = typer.Option(..., "--model", "-m", help="Hub id (llava-hf/llava-1.5-7b-hf) or local folder."),
    data: Path = typer.Option(..., "--data", "-d", help="JSONL/JSON of {id, image, question, label} records."),
    out: Path = typer.Option(..., "--out", "-o", help="Store folder (created; an existing one is resumed)."),
    token: str = typer.Option("first", "--token", help="first: last prompt position (early exit possible); "
                              "last: last token of a greedy generation."),
    layers: str | None = typer.Option(None, "--layers", help="Layers to store, e.g. 0-5,8 (default: all)."),
    exit_layer: int | None = typer.Option(None, "--exit-layer", help="Stop each forward after this layer."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use only the first N samples (after --balanced)."),
    balanced: int | None = typer.Option(None, "--balanced", min=2, help="Draw a class-balanced subset of N samples."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the balanced draw."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Samples per forward."),
    shard_size: int = typer.Option(256, "--shard-size", min=1, help="Samples per shard file."),
    dtype: str = typer.Option("float16", "--dtype", help="Stored dtype: float16, bfloat16 or float32 "
                              "(independent of --model-dtype)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, mps."),
    model_dtype: str = typer.Option("auto", "--model-dtype", help="Weights dtype: auto, float32, float16, bfloat16."),
    max_new_tokens: int = typer.Option(MAX_NEW_TOKENS, "--max-new-tokens", min=1, help="Generation budget for --token last."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable or oversized images (listed in the "
                                  "manifest)."),
    max_pixels: int = typer.Option(MAX_PIXELS, "--max-pixels", min=1, help="Refuse images with more pixels "
                                   "(read from the header, before decoding)."),
    device_map: str | None = typer.Option(None, "--device-map", help="'auto': spread a model larger than one "
                                          "GPU over all GPUs (accelerate); --device is then ignored."),
    truncate: bool | None = typer.Option(None, "--truncate/--full-model", " /--no-truncate", help="Load only the "
                                         "decoder layers up to --exit-layer (or the highest of --layers): less memory, "
                                         "same activations. Default: truncated with --exit-layer K, token first."),
    prefix_reuse: bool = typer.Option(False, "--prefix-reuse", help="Encode each image and the shared prompt "
                                      "prefix once for all its questions (templates with the image first)."),
    refuse_changed: bool = typer.Option(False, "--refuse-changed", help="Resuming: stop if a sample's question "
                                        "or image changed since the store was written (default: recompute it)."),
) -> None:
    """Run the model on every sample and store the residual stream of each layer at one token."""
    from rich.console import Console
    from rich.markup import escape

    from superneurons.activations.distributed import init_distributed, rank_device, shutdown_distributed
    from superneurons.activations.prefill import parse_layers
    from superneurons.activations.prefix import prefix_reuse_support
    from superneurons.activations.probing import probe
    from superneurons.config import CaptureConfig
    from superneurons.data.samples import balanced_sample, load_samples
    from superneurons.errors import DataError, StoreError
    from superneurons.models import load_model
    from superneurons.models.loading import truncation_refusal

    console = Console(stderr=True)
    try:
        layer_list = parse_layers(layers)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    config = CaptureConfig(token=token, layers=layer_list, exit_layer=exit_layer, batch_size=batch_size,
                           max_new_tokens=max_new_tokens, dtype=dtype, shard_size=shard_size, skip_bad=skip_bad,
                           prefix_reuse=prefix_reuse, refuse_changed=refuse_changed, max_pixels=max_pixels)
    samples = load_samples(data)
    if balanced is not None:
        samples = balanced_sample(samples, balanced, seed=seed)
    if limit is not None:
        if limit < 1:
            raise DataError(f"--limit {limit}: use a positive number of samples")
        samples = samples[:limit]
    dist = init_distributed()
    if not dist.is_main:  # rank 0 speaks for the job
        console = Console(stderr=True, quiet=True)
    extra: dict[str, str] = {}
    if device_map is not None:
        if dist.distributed:
            raise StoreError("--device-map spreads one model over all GPUs; under torchrun each process already "
                             "has its own GPU: drop --device-map, or run one process")
        extra["device_map"] = device_map
    max_layer, why = None, "--full-model"
    if truncate:
        if token != "first" or (exit_layer is None and (not layer_list or min(layer_list) < 0)):
            raise StoreError("--truncate needs --token first and --exit-layer K or non-negative --layers "
                             "(it loads decoder layers 0..K only)")
        max_layer = exit_layer if exit_layer is not None else max(layer_list or [0])
    elif truncate is None:  # truncated where exact: the forward stops after --exit-layer anyway
        why = ("truncated loading needs --token first and --exit-layer K" if token != "first" or exit_layer is None
               or exit_layer < 0 else truncation_refusal(model, **extra))
        max_layer = None if why else exit_layer
    console.print(f"loading [bold]{escape(model)}[/] ...")
    vlm = load_model(model, dtype=model_dtype, device=rank_device(device, dist), max_layer=max_layer, **extra)
    console.print(escape(f"truncated: {vlm.load_report.summary()} (--full-model loads all)" if max_layer is not None
                         else f"full model, {vlm.num_layers} decoder layers: {why}"))
    if prefix_reuse:
        ok, why = prefix_reuse_support(vlm)
        console.print(f"prefix reuse: {escape(why)}" if ok else f"[yellow]prefix reuse off[/]: {escape(why)}")
    where = f" on {dist.world_size} processes" if dist.distributed else ""
    console.print(escape(f"{vlm!r}: probing {len(samples)} samples from {data}{where}"))
    try:
        store = probe(vlm, samples, out, config, progress=True,
                      notify=lambda msg: console.print(f"[yellow]note[/]: {escape(msg)}"))
    finally:
        shutdown_distributed()
    if not dist.is_main:
        return
    skipped = store.manifest["skipped"]
    for item in skipped:
        console.print(f"[yellow]skipped[/] {escape(str(item['id']))}: {escape(item['reason'])}")
    Console().print(f"[green]wrote[/] {escape(str(store.directory))}: {store.num_samples} samples x {len(store.layers)} layers "
                    f"x {store.hidden_size} ({store.manifest['dtype']}, token={token})"
                    + (f", {len(skipped)} skipped" if skipped else ""))


def register(app: typer.Typer) -> None:
    """Add `probe` to the app."""
    app.command("probe")(probe_command)
