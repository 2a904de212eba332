"""`superneurons evaluate`: Super Neurons vs the model's own answers on a labelled data file.

    superneurons evaluate --classifier CLF --model M --data D.jsonl [--out metrics.json]
        [--no-generate] [--max-new-tokens 128] [--limit N] [--batch-size B] [--device auto]
        [--model-dtype auto] [--no-strict] [--cascade-margin M]

Prints accuracy, precision, recall, F1 and yes-ratio of SNs (mean, vote), model generation
(POPE parser and strict parser) and first-token logits, plus the agreement rate (eq. 7).
"""

from __future__ import annotations

from pathlib import Path

import typer

from superneurons.cli.hub_options import CLASSIFIER_HELP, REVISION
from superneurons.constants import MAX_NEW_TOKENS
from superneurons.utils.files import json_text


def evaluate_command(
    classifier: str = typer.Option(..., "--classifier", "-c", help=CLASSIFIER_HELP),
    revision: str | None = REVISION,
    model: str = typer.Option(..., "--model", "-m", help="Hub id or local folder (the probed model)."),
    data: Path = typer.Option(..., "--data", "-d", help="Labelled JSONL/JSON of {id, image, question, label}."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the metrics as JSON here."),
    generate: bool = typer.Option(True, "--generate/--no-generate", help="Run the (slow) generation baseline."),
    max_new_tokens: int = typer.Option(MAX_NEW_TOKENS, "--max-new-tokens", help="Generation budget (paper: 128)."),
    limit: int | None = typer.Option(None, "--limit", help="Use only the first N samples."),
    batch_size: int = typer.Option(8, "--batch-size", help="Samples per forward."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, mps."),
    model_dtype: str = typer.Option("auto", "--model-dtype", help="Weights dtype: auto, float32, float16, bfloat16."),
    strict: bool = typer.Option(True, "--strict/--no-strict", help="Refuse a model whose fingerprint differs."),
    answers: bool = typer.Option(False, "--answers", help="Include per-sample answers in the JSON."),
    cascade_margin: float | None = typer.Option(None, "--cascade-margin", help="Add the cascade (SNs, deferring "
                                                "|s - 0.5| < M to the model) as a method."),
) -> None:
    """Evaluate a classifier and the model baselines on labelled data."""
    from rich.console import Console
    from rich.table import Table

    from superneurons.config import InferConfig
    from superneurons.data.samples import load_samples
    from superneurons.errors import DataError
    from superneurons.evaluation.compare import evaluate
    from superneurons.inference.classifier import SuperNeuronClassifier
    from superneurons.models import load_model

    config = InferConfig(batch_size=batch_size, strict=strict, cascade_margin=cascade_margin)
    clf = SuperNeuronClassifier.from_pretrained(classifier, revision=revision)
    samples = load_samples(data)
    if limit is not None:
        if limit < 1:
            raise DataError(f"--limit {limit}: use a positive number of samples")
        samples = samples[:limit]
    err = Console(stderr=True)
    err.print(f"loading [bold]{model}[/] ...")
    vlm = load_model(model, dtype=model_dtype, device=device)
    result = evaluate(clf, vlm, samples, batch_size=config.batch_size, generate=generate,
                      max_new_tokens=max_new_tokens, strict=config.strict, progress=True, keep_answers=answers,
                      cascade_margin=config.cascade_margin)
    console = Console()
    c = result["classifier"]
    table = Table(title=f"{result['n']} samples; SNs: K={c['k']}, L*={c['exit_layer']} of {result['num_layers']}")
    table.add_column("method", no_wrap=True)
    for col in ("acc", "prec", "recall", "F1", "yes ratio", "unparsed", "seconds"):
        table.add_column(col, justify="right")
    secs = result["seconds"]
    for name, m in result["methods"].items():
        t = secs.get(name, secs.get("sns") if name.startswith("sns_") else secs.get("model_generation"))
        table.add_row(name, *(f"{100 * m[k]:.1f}" for k in ("accuracy", "precision", "recall", "f1")),
                      f"{m['yes_ratio']:.3f}", str(m["unparsed"]), "-" if t is None else f"{t:.2f}")
    console.print(table)
    for name, ar in result["agreement"].items():
        console.print(f"agreement {name}: {ar:.4f}")
    if "cascade" in result:
        c = result["cascade"]
        console.print(f"cascade margin {cascade_margin:g}: " + ", ".join(
            f"{k} {v:.4g}" for k, v in c.items() if isinstance(v, int | float)))
    for name, q in result.get("mcq", {}).items():
        if "accuracy" in q:
            console.print(f"MCQ question-level accuracy {name}: {q['accuracy']:.4f} ({q['num_questions']} questions)")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json_text(result) + "\n", encoding="utf-8")
        console.print(f"[green]wrote[/] {out}")


def register(app: typer.Typer) -> None:
    """Add `evaluate` to the app."""
    app.command("evaluate")(evaluate_command)
