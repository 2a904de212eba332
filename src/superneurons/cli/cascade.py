"""`superneurons cascade-sweep`: accuracy vs cost of SNs that defer unsure samples to the model.

    superneurons cascade-sweep --classifier CLF --model M --data D.jsonl [--margins 0,0.05,...,0.5]
        [--calibrate PROBE_ACTS | --temperature T] [--repeats R] [--out DIR] [--limit N] [--batch-size B]
        [--device auto] [--model-dtype auto] [--no-strict]

For each margin m (0 = SNs only and 0.5 = model only are always included), samples whose SN score
s has |s - 0.5| < m resume the same forward from layer L* to the model's first-token answer.
For a mean classifier, --calibrate fits the score's temperature on the probing store (and saves
it into CLF, so `predict`/`evaluate` with a margin use it too).
Prints the table; with --out writes `cascade_sweep.json` and `cascade_sweep.png` (the plot needs
`pip install superneurons[report]`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from superneurons.cli.hub_options import CLASSIFIER_HELP, REVISION
from superneurons.utils.files import json_text


def parse_margins(spec: str | None) -> list[float] | None:
    """"0,0.1,0.25" -> [0.0, 0.1, 0.25]; None or "" -> None (the default grid)."""
    from superneurons.errors import DataError

    if spec is None or not spec.strip():
        return None
    try:
        return [float(p) for p in spec.split(",") if p.strip()]
    except ValueError:
        raise DataError(f"--margins {spec!r}: write comma-separated numbers in [0, 0.5], e.g. 0,0.1,0.2,0.5") from None


def cascade_sweep_command(
    classifier: str = typer.Option(..., "--classifier", "-c", help=CLASSIFIER_HELP),
    revision: str | None = REVISION,
    model: str = typer.Option(..., "--model", "-m", help="Hub id or local folder (the probed model)."),
    data: Path = typer.Option(..., "--data", "-d", help="Labelled JSONL/JSON of {id, image, question, label}."),
    margins: str | None = typer.Option(None, "--margins", help="Comma-separated margins in [0, 0.5] "
                                       "(default 0,0.05,...,0.5)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for cascade_sweep.json and the plot."),
    aggregation: str | None = typer.Option(None, "--aggregation", help="Override the saved aggregation "
                                           "(mean: margin-weighted score; vote/fraction: share of SNs)."),
    calibrate: Path | None = typer.Option(None, "--calibrate", help="Probing activation store: fit the mean "
                                          "score's temperature on it and save it into the classifier."),
    temperature: float | None = typer.Option(None, "--temperature", help="Temperature of the mean score "
                                             "(default: the classifier's calibrated one)."),
    repeats: int = typer.Option(1, "--repeats", help="Timed runs per margin (round-robin); the fastest is "
                                "reported (use 3+ on a shared machine)."),
    limit: int | None = typer.Option(None, "--limit", help="Use only the first N samples."),
    batch_size: int = typer.Option(8, "--batch-size", help="Samples per forward."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, mps."),
    model_dtype: str = typer.Option("auto", "--model-dtype", help="Weights dtype: auto, float32, float16, bfloat16."),
    strict: bool = typer.Option(True, "--strict/--no-strict", help="Refuse a model whose fingerprint differs."),
) -> None:
    """Sweep the cascade margin: accuracy, F1, deferral rate and cost (layers, time) per margin."""
    from rich.console import Console
    from rich.table import Table

    from superneurons.constants import CASCADE_JSON, CASCADE_PLOT
    from superneurons.data.samples import load_samples
    from superneurons.errors import DataError
    from superneurons.evaluation.cascade_sweep import DEFAULT_MARGINS, best_margin, cascade_sweep
    from superneurons.inference.cascade import calibrate_cascade, resolve_score
    from superneurons.inference.classifier import SuperNeuronClassifier
    from superneurons.models import load_model

    grid = parse_margins(margins) or list(DEFAULT_MARGINS)
    clf = SuperNeuronClassifier.from_pretrained(classifier, revision=revision)
    err = Console(stderr=True)
    if calibrate is not None:
        if not Path(classifier).is_dir():
            raise DataError(f"--calibrate saves the temperature into the classifier folder, and {classifier!r} is a "
                            "Hub id: download it first (`hf download REPO --include 'SUBFOLDER/*' --local-dir DIR`) "
                            "or pass --temperature")
        t = calibrate_cascade(clf, calibrate)
        clf.save(classifier)
        err.print(f"calibrated the mean score on {calibrate}: temperature {t:.4g} (saved into {classifier})")
    _, _, score_kind = resolve_score(clf, aggregation, temperature)
    samples = load_samples(data)
    if limit is not None:
        if limit < 1:
            raise DataError(f"--limit {limit}: use a positive number of samples")
        samples = samples[:limit]
    err.print(f"loading [bold]{model}[/] ...")
    vlm = load_model(model, dtype=model_dtype, device=device)
    rows = cascade_sweep(clf, vlm, samples, grid, batch_size=batch_size, aggregation=aggregation,
                         strict=strict, progress=True, temperature=temperature,
                         repeats=repeats)
    best = best_margin(rows)
    console = Console()
    table = Table(title=f"{len(samples)} samples; SNs: K={clf.sns.k}, L*={clf.exit_layer} "
                        f"of {vlm.num_layers} layers; score: {score_kind}")
    for col in ("margin", "deferred %", "layers/sample", "acc", "F1", "ms/sample", ""):
        table.add_column(col, justify="left" if col == "" else "right")
    for r in rows:
        note = r["point"] or ("best" if best is not None and r["margin"] == best["margin"] else "")
        table.add_row(f"{r['margin']:g}", f"{100 * r['deferral_rate']:.1f}", f"{r['avg_layers']:.2f}",
                      f"{100 * r['accuracy']:.1f}", f"{100 * r['f1']:.1f}", f"{1000 * r['time_per_sample']:.1f}", note)
    console.print(table)
    if best is None:
        console.print("no margin between 0 and 0.5 reaches max(SNs only, model only) accuracy at a lower "
                      "cost than the model")
    else:
        console.print(f"margin {best['margin']:g}: accuracy {100 * best['accuracy']:.1f} >= both end points "
                      f"with {best['avg_layers']:.2f} of {vlm.num_layers} layers per sample "
                      f"({100 * best['deferral_rate']:.1f}% deferred)")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        result = {"n": len(samples), "model": vlm.name_or_path, "classifier": str(classifier),
                  "k": clf.sns.k, "exit_layer": clf.exit_layer, "num_layers": vlm.num_layers,
                  "aggregation": aggregation or clf.aggregation, "score": score_kind, "rows": rows,
                  "best": None if best is None else best["margin"]}
        (out / CASCADE_JSON).write_text(json_text(result) + "\n", encoding="utf-8")
        console.print(f"[green]wrote[/] {out / CASCADE_JSON}")
        from superneurons.report.cascade_plot import plot_cascade

        try:
            plot_cascade(rows, out / CASCADE_PLOT)
        except ImportError as exc:
            err.print(f"[yellow]no plot:[/] {exc}")
        else:
            console.print(f"[green]wrote[/] {out / CASCADE_PLOT}")


def register(app: typer.Typer) -> None:
    """Add `cascade-sweep` to the app."""
    app.command("cascade-sweep")(cascade_sweep_command)
