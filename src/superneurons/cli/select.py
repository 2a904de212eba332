"""`superneurons select`: score every neuron of an activation store, sweep SNt, save a classifier.

    superneurons select --acts DIR --out CLF [--metric accuracy|precision|recall|f1] [--snt 0.92]
        [--top-k K] [--max-layer L] [--alpha 0] [--polarity positive|both] [--per-neuron-alpha]
        [--aggregation mean|vote|fraction] [--step 0.01] [--depth 0.03] [--choose-by vote_accuracy] [--no-verify]

Without --snt and --top-k, SNt is chosen by the paper's sweep on the probing set.
"""

from __future__ import annotations

from pathlib import Path

import typer

from superneurons.constants import ALPHA, SNT_DEPTH, SNT_STEP


def select_command(
    acts: Path = typer.Option(..., "--acts", "-a", help="Activation store folder written by `superneurons probe`."),
    out: Path = typer.Option(..., "--out", "-o", help="Classifier folder to write."),
    metric: str = typer.Option("accuracy", "--metric", help="Score to optimise: accuracy, precision, recall, f1."),
    snt: float | None = typer.Option(None, "--snt", help="Keep neurons scoring > SNt (a fraction, e.g. 0.92)."),
    top_k: int | None = typer.Option(None, "--top-k", help="Keep at most the K best neurons."),
    max_layer: int | None = typer.Option(None, "--max-layer", help="Only layers <= L (earlier exit)."),
    alpha: float = typer.Option(ALPHA, "--alpha", help="Activation threshold (paper: 0)."),
    polarity: str = typer.Option("positive", "--polarity", help="positive (paper) or both (also H <= alpha)."),
    per_neuron_alpha: bool = typer.Option(False, "--per-neuron-alpha", help="Fit each neuron's threshold."),
    aggregation: str = typer.Option("mean", "--aggregation", help="mean, vote or fraction."),
    step: float = typer.Option(SNT_STEP, "--step", help="SNt sweep step (0.01 = 1 point, 0.001 = 0.1 point)."),
    depth: float = typer.Option(SNT_DEPTH, "--depth", help="SNt sweep depth below the best neuron (0.03 = 3 points)."),
    choose_by: str | None = typer.Option(None, "--choose-by", help="Sweep column that picks SNt "
                                         "(default: <aggregation>_<metric>)."),
    chunk_layers: int = typer.Option(4, "--chunk-layers", help="Layers read per chunk (memory vs speed)."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Check the store's bytes against their "
                                "checksums (headers are always checked; unchanged files are not hashed again)."),
) -> None:
    """Find Super Neurons in a store (Alg. 1) and save them as a classifier."""
    from rich.console import Console
    from rich.table import Table

    from superneurons.activations.store import ActivationStore
    from superneurons.config import ScoreConfig, SelectConfig
    from superneurons.inference.classifier import fit_classifier
    from superneurons.utils.locking import output_lock

    with output_lock(out, what="classifier folder"):  # held for the whole run: one writer per folder
        select = SelectConfig(metric=metric, snt=snt, top_k=top_k, max_layer=max_layer, step=step, depth=depth,
                              choose_by=choose_by)
        score = ScoreConfig(alpha=alpha, polarity=polarity, per_neuron_alpha=per_neuron_alpha, chunk_layers=chunk_layers)
        result = fit_classifier(ActivationStore(acts, verify=verify), select, score, aggregation=aggregation)
        console = Console()
        b = result.best_single
        console.print(f"best single neuron: layer {b['layer']}, neuron {b['neuron']}: "
                      + ", ".join(f"{m} {b[m]:.4f}" for m in ("accuracy", "precision", "recall", "f1")))
        yes_col = f"{'vote' if aggregation == 'fraction' else aggregation}_yes_ratio"
        table = Table(title=f"SNt sweep on the probing set ({metric})")
        for col in ("SNt", "K", "layers", "L*", "vote acc", "vote F1", "mean acc", "mean F1", "yes ratio"):
            table.add_column(col, justify="right")
        for r in result.sweep:
            style = "bold green" if result.chosen is r else None
            if not r["k"]:
                table.add_row(f"{r['snt']:.3f}", "0", "-", "-", "-", "-", "-", "-", "-")
                continue
            table.add_row(f"{r['snt']:.3f}", str(r["k"]), str(r["num_layers"]), str(r["exit_layer"]),
                          f"{r['vote_accuracy']:.4f}", f"{r['vote_f1']:.4f}", f"{r['mean_accuracy']:.4f}",
                          f"{r['mean_f1']:.4f}", f"{r[yes_col]:.3f}", style=style)
        console.print(table)
        clf = result.classifier
        per_layer = Table(title=f"{clf.sns.k} Super Neurons per layer (L* = {clf.exit_layer})")
        per_layer.add_column("layer", justify="right")
        per_layer.add_column("SNs", justify="right")
        per_layer.add_column("best neurons", justify="left")
        for layer, count in clf.sns.per_layer().items():
            sel = clf.sns.layers == layer
            best = ", ".join(f"{int(n)} ({float(s):.3f})" for n, s in zip(clf.sns.neurons[sel][:5], clf.sns.scores[sel][:5],
                                                                           strict=True))
            per_layer.add_row(str(layer), str(count), best)
        console.print(per_layer)
        paths = clf.save(out, lock=False)
        how = f"SNt {clf.sns.snt}" if clf.sns.snt is not None else f"top {clf.sns.top_k}"
        console.print(f"[green]wrote[/] {', '.join(str(p) for p in paths)} ({how}, {clf.aggregation}, L* = {clf.exit_layer})")


def register(app: typer.Typer) -> None:
    """Add `select` to the app."""
    app.command("select")(select_command)
