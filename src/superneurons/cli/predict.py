"""`superneurons predict`: answer yes/no questions with a saved classifier (early exit at L*).

    superneurons predict --classifier CLF --model M --data D.jsonl --out preds.jsonl
        [--aggregation mean|vote|fraction] [--cascade-margin M | --full-model] [--batch-size B]
        [--device auto] [--model-dtype auto] [--no-strict] [--skip-bad] [--max-pixels N]

Every sample is checked before the model loads (text, image headers against --max-pixels); with
`--skip-bad` bad samples are skipped and listed. Predictions are appended as they are made, so a
kill or a late failure loses at most one chunk, and the same command again resumes (rows of another
classifier, model or setting in --out are refused, never mixed). Under `torchrun --nproc_per_node K
-m superneurons predict ...` each process predicts its slice and rank 0 writes the merged file.

Labels are optional; when every sample has one, accuracy is printed too. Only the decoder layers up to
L* are loaded where that is exact (less memory, same answers; `--full-model` loads all, `--truncate`
insists); `--cascade-margin m` defers samples whose SN
score s has |s - 0.5| < m to the model (the same forward resumes to its first-token answer) and
writes which path answered each sample.
"""

from __future__ import annotations

from pathlib import Path

import typer

from superneurons.cli.hub_options import CLASSIFIER_HELP, REVISION
from superneurons.constants import MAX_PIXELS


def predict_command(
    classifier: str = typer.Option(..., "--classifier", "-c", help=CLASSIFIER_HELP),
    revision: str | None = REVISION,
    model: str = typer.Option(..., "--model", "-m", help="Hub id or local folder (the probed model)."),
    data: Path = typer.Option(..., "--data", "-d", help="JSONL/JSON of {id, image, question[, label]}."),
    out: Path = typer.Option(..., "--out", "-o", help="Predictions JSONL to write."),
    aggregation: str | None = typer.Option(None, "--aggregation", help="Override the saved aggregation."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Samples per forward."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, mps."),
    model_dtype: str = typer.Option("auto", "--model-dtype", help="Weights dtype: auto, float32, float16, bfloat16."),
    strict: bool = typer.Option(True, "--strict/--no-strict", help="Refuse a model whose fingerprint differs."),
    cascade_margin: float | None = typer.Option(None, "--cascade-margin", min=0.0, max=0.5, help="Defer samples with |s - 0.5| < M "
                                                "to the model (0: SNs only, 0.5: model only)."),
    truncate: bool | None = typer.Option(None, "--truncate/--full-model", " /--no-truncate", help="Load only the "
                                         "decoder layers 0..L*, or the whole model. Default: truncated where exact "
                                         "(token first, no --cascade-margin)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable or oversized images (listed)."),
    max_pixels: int = typer.Option(MAX_PIXELS, "--max-pixels", min=1, help="Refuse images with more pixels "
                                   "(read from the header, before decoding)."),
) -> None:
    """Predict yes/no for every sample from its Super Neurons."""
    from rich.console import Console
    from rich.markup import escape

    from superneurons.activations.distributed import init_distributed, rank_device, shutdown_distributed
    from superneurons.config import InferConfig
    from superneurons.data.samples import load_samples
    from superneurons.inference import SuperNeuronClassifier
    from superneurons.inference.predictions import predict_to_file
    from superneurons.scoring.metrics import binary_metrics

    config = InferConfig(aggregation=aggregation, batch_size=batch_size, strict=strict, cascade_margin=cascade_margin,
                         truncate=truncate, skip_bad=skip_bad, max_pixels=max_pixels)
    clf = SuperNeuronClassifier.from_pretrained(classifier, revision=revision)
    samples = load_samples(data, require_labels=False)
    dist = init_distributed()
    err = Console(stderr=True, quiet=not dist.is_main)

    def load():
        err.print(f"loading [bold]{escape(model)}[/] ...")
        vlm = clf.load_model(model, truncate=config.truncate, cascade=cascade_margin is not None, dtype=model_dtype,
                             device=rank_device(device, dist))
        err.print(escape(vlm.load_choice))
        return vlm

    try:
        run = predict_to_file(clf, load, samples, out, config, progress=True)
    finally:
        shutdown_distributed()
    if not dist.is_main:
        return
    for sid, why in run.skipped:
        err.print(f"[yellow]skipped[/] {escape(sid)}: {escape(why)}")
    rows, console = run.rows, Console()
    if run.resumed:
        console.print(f"resumed: {run.resumed} predictions already in {escape(str(out))}"
                      + (f" ({len(run.recomputed)} of changed samples recomputed)" if run.recomputed else ""))
    yes = sum(r["prediction"] for r in rows) / max(len(rows), 1)
    where = "" if run.vlm is None else (f", exit after layer {clf.exit_layer} of "
                                        f"{getattr(run.vlm, 'full_num_layers', run.vlm.num_layers)}")
    console.print(f"{run.predicted} samples in {run.seconds:.2f}s with K={clf.sns.k} SNs{where} "
                  f"({aggregation or clf.aggregation}); yes ratio {yes:.3f}"
                  + (f"; {len(run.skipped)} skipped" if run.skipped else ""))
    if cascade_margin is not None:
        deferred = sum(r.get("path") == "model" for r in rows)
        console.print(f"cascade margin {cascade_margin:g}: {deferred} of {len(rows)} deferred to the model")
    if rows and all("label" in r for r in rows):
        m = binary_metrics([r["prediction"] for r in rows], [int(r["label"] == "yes") for r in rows])
        console.print(", ".join(f"{k} {100 * m[k]:.1f}" for k in ("accuracy", "precision", "recall", "f1")))
    console.print(f"[green]wrote[/] {escape(str(out))}: {len(rows)} predictions")


def register(app: typer.Typer) -> None:
    """Add `predict` to the app."""
    app.command("predict")(predict_command)
