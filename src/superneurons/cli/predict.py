"""`superneurons predict`: answer yes/no questions with a saved classifier (early exit at L*).

    superneurons predict --classifier CLF --model M --data D.jsonl --out preds.jsonl
        [--aggregation mean|vote|fraction] [--cascade-margin M | --full-model] [--batch-size B]
        [--device auto] [--model-dtype auto] [--no-strict]

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


def predict_command(
    classifier: str = typer.Option(..., "--classifier", "-c", help=CLASSIFIER_HELP),
    revision: str | None = REVISION,
    model: str = typer.Option(..., "--model", "-m", help="Hub id or local folder (the probed model)."),
    data: Path = typer.Option(..., "--data", "-d", help="JSONL/JSON of {id, image, question[, label]}."),
    out: Path = typer.Option(..., "--out", "-o", help="Predictions JSONL to write."),
    aggregation: str | None = typer.Option(None, "--aggregation", help="Override the saved aggregation."),
    batch_size: int = typer.Option(8, "--batch-size", help="Samples per forward."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, mps."),
    model_dtype: str = typer.Option("auto", "--model-dtype", help="Weights dtype: auto, float32, float16, bfloat16."),
    strict: bool = typer.Option(True, "--strict/--no-strict", help="Refuse a model whose fingerprint differs."),
    cascade_margin: float | None = typer.Option(None, "--cascade-margin", help="Defer samples with |s - 0.5| < M "
                                                "to the model (0: SNs only, 0.5: model only)."),
    truncate: bool | None = typer.Option(None, "--truncate/--full-model", " /--no-truncate", help="Load only the "
                                         "decoder layers 0..L*, or the whole model. Default: truncated where exact "
                                         "(token first, no --cascade-margin)."),
) -> None:
    """Predict yes/no for every sample from its Super Neurons."""
    import time

    from rich.console import Console

    from superneurons.config import InferConfig
    from superneurons.data.samples import load_samples
    from superneurons.inference import SuperNeuronClassifier, predict, write_predictions
    from superneurons.scoring.metrics import binary_metrics

    config = InferConfig(aggregation=aggregation, batch_size=batch_size, strict=strict, cascade_margin=cascade_margin,
                         truncate=truncate)
    clf = SuperNeuronClassifier.from_pretrained(classifier, revision=revision)
    samples = load_samples(data, require_labels=False)
    err = Console(stderr=True)
    err.print(f"loading [bold]{model}[/] ...")
    vlm = clf.load_model(model, truncate=config.truncate, cascade=cascade_margin is not None, dtype=model_dtype,
                         device=device)
    err.print(vlm.load_choice)
    t0 = time.perf_counter()
    output = predict(clf, vlm, samples, config, progress=True)
    seconds = time.perf_counter() - t0
    path = write_predictions(out, samples, output)
    console = Console()
    yes = float(output.preds.float().mean())
    console.print(f"{len(samples)} samples in {seconds:.2f}s with K={clf.sns.k} SNs, exit after layer "
                  f"{clf.exit_layer} of {getattr(vlm, 'full_num_layers', vlm.num_layers)} "
                  f"({aggregation or clf.aggregation}); yes ratio {yes:.3f}")
    if cascade_margin is not None:
        console.print(f"cascade margin {cascade_margin:g}: {int(output.deferred.sum())} of {len(samples)} deferred "
                      "to the model")
    if all(s.label is not None for s in samples):
        m = binary_metrics(output.preds, [s.y for s in samples])
        console.print(", ".join(f"{k} {100 * m[k]:.1f}" for k in ("accuracy", "precision", "recall", "f1")))
    console.print(f"[green]wrote[/] {path}")


def register(app: typer.Typer) -> None:
    """Add `predict` to the app."""
    app.command("predict")(predict_command)
