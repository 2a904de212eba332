"""`superneurons experiment`: run one of the paper's comparisons or ablations and print its table.

    superneurons experiment NAME --model M --probe P --val V [--out DIR] [options]

NAME is one of savs, nshot, prompts, shuffled, transfer, metric, token, overlap, probe-size.
Several --probe/--val pairs (with --name) run on several datasets. `transfer` takes the source
probing set as --probe, the target validation set as --val and, optionally, --target-probe;
`overlap` takes two or more --probe files, or --store NAME=DIR with --model-score NAME=X.
The table is written as JSON + Markdown (+ PNG where the paper has a plot) into --out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from superneurons.constants import ALPHA, MAX_NEW_TOKENS, SNT_DEPTH, SNT_STEP


def _ints(spec: str | None, what: str) -> tuple[int, ...] | None:
    if spec is None:
        return None
    try:
        return tuple(int(v) for v in spec.split(",") if v.strip())
    except ValueError:
        from superneurons.errors import DataError

        raise DataError(f"--{what} {spec!r}: write comma-separated integers, e.g. 0,1,3,5") from None


def _words(spec: str | None) -> tuple[str, ...] | None:
    return None if spec is None else tuple(v.strip() for v in spec.split(",") if v.strip())


def _pairs(items: list[str], what: str) -> dict[str, str]:
    from superneurons.errors import DataError

    out = {}
    for item in items:
        if "=" not in item:
            raise DataError(f"--{what} {item!r}: write NAME=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _load(path: Path, limit: int | None, balanced: bool, seed: int) -> list[Any]:
    import random

    from superneurons.data.samples import balanced_sample, load_samples

    samples = load_samples(path)
    if limit is None:
        return samples
    if balanced:
        return balanced_sample(samples, limit, seed=seed)
    return random.Random(seed).sample(samples, min(limit, len(samples)))


def experiment_command(
    name: str = typer.Argument(..., help="savs, nshot, prompts, shuffled, transfer, metric, token, overlap, "
                                         "probe-size."),
    model: str | None = typer.Option(None, "--model", "-m", help="Hub id or local model folder."),
    probe: list[Path] = typer.Option([], "--probe", "-p", help="Probing set JSONL (repeat for several datasets)."),
    val: list[Path] = typer.Option([], "--val", "-v", help="Validation set JSONL (one per --probe)."),
    names: list[str] = typer.Option([], "--name", help="Dataset name per --probe (default: file stem)."),
    out: Path = typer.Option(Path("experiments"), "--out", "-o", help="Folder for the table, plot and cache."),
    target_probe: Path | None = typer.Option(None, "--target-probe", help="transfer: the target's probing set."),
    source_val: Path | None = typer.Option(None, "--source-val", help="transfer: the source's validation set."),
    stores: list[str] = typer.Option([], "--store", help="overlap: NAME=DIR of an activation store."),
    model_scores: list[str] = typer.Option([], "--model-score", help="overlap: NAME=X, the model's score."),
    n: int = typer.Option(40, "--n", min=2, help="savs: probing samples for both SAVs and SNs."),
    k: int = typer.Option(20, "--k", min=1, help="savs: attention heads kept."),
    shots: str = typer.Option("0,1,3,5", "--shots", help="nshot: numbers of examples."),
    word: str = typer.Option("obstructing", "--word", help="prompts: the key word to replace."),
    alternatives: str = typer.Option("hiding,occluding", "--alternatives", help="prompts: replacement words."),
    random_strings: bool = typer.Option(True, "--random/--no-random", help="prompts: also random strings."),
    sizes: str = typer.Option("10,40,100,300,1000,3000", "--sizes", help="probe-size: probing set sizes."),
    repeats: int = typer.Option(1, "--repeats", min=1, help="probe-size: draws per size."),
    metrics: str = typer.Option("accuracy,f1,precision,recall", "--metrics", help="metric: metrics to optimise."),
    tokens: str = typer.Option("first,last", "--tokens", help="token: positions to compare."),
    metric: str = typer.Option("accuracy", "--metric", help="Metric SNs are optimised for (all but `metric`)."),
    token: str = typer.Option("first", "--token", help="Activation position: first or last."),
    alpha: float = typer.Option(ALPHA, "--alpha", help="Activation threshold (paper: 0)."),
    step: float = typer.Option(SNT_STEP, "--step", min=1e-6, max=1.0, help="SNt sweep step (0.01 LLaVA, 0.001 Qwen)."),
    depth: float = typer.Option(SNT_DEPTH, "--depth", min=0.0, max=1.0, help="SNt sweep depth below the best neuron."),
    balanced: int | None = typer.Option(None, "--balanced", min=2, help="Use a balanced subset of N probing samples."),
    val_limit: int | None = typer.Option(None, "--val-limit", min=1, help="Use a random subset of N validation samples."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Samples per forward."),
    max_new_tokens: int = typer.Option(MAX_NEW_TOKENS, "--max-new-tokens", min=1, help="Generation budget of the model baseline."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of every random draw."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write the figure (needs matplotlib)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, mps."),
    model_dtype: str = typer.Option("auto", "--model-dtype", help="Weights dtype: auto, float32, float16, bfloat16."),
) -> None:
    """Run a paper experiment (Tab. 3, 5-9, Fig. 5, App. Fig. 2) and print its table."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from superneurons.errors import DataError
    from superneurons.experiments import Dataset, ExperimentOptions, get_experiment, run_experiment

    console = Console(stderr=True)
    exp = get_experiment(name)
    opts = ExperimentOptions(token=token, alpha=alpha, metric=metric, step=step, depth=depth, batch_size=batch_size,
                             max_new_tokens=max_new_tokens, seed=seed, progress=True)
    params: dict[str, Any] = {
        "savs": {"n": n, "k": k}, "nshot": {"shots": _ints(shots, "shots")},
        "prompts": {"word": word, "alternatives": _words(alternatives), "random_strings": random_strings},
        "probe-size": {"sizes": _ints(sizes, "sizes"), "repeats": repeats, "plot": plot},
        "metric": {"metrics": _words(metrics)}, "token": {"tokens": _words(tokens)}, "overlap": {"plot": plot},
    }.get(name, {})

    if name == "overlap" and stores:
        result = _overlap_from_stores(stores, model_scores, metric, out, plot)
    else:
        if model is None:
            raise DataError(f"experiment {name!r} runs the model: pass --model")
        if not probe:
            raise DataError(f"experiment {name!r} needs --probe FILE")
        if names and len(names) != len(probe):
            raise DataError(f"{len(names)} --name for {len(probe)} --probe; give one name per probing set")
        dnames = names or [p.stem for p in probe]
        p_sets = [_load(p, balanced, True, seed) for p in probe]
        v_sets = [_load(v, val_limit, False, seed) for v in val]
        if name == "transfer":
            if len(probe) != 1 or len(val) != 1:
                raise DataError("transfer takes one --probe (source) and one --val (target); "
                                "add --target-probe / --source-val for the reference rows")
            tgt = _load(target_probe, balanced, True, seed) if target_probe else None
            src_val = _load(source_val, val_limit, False, seed) if source_val else None
            datasets = [Dataset(dnames[0], p_sets[0], src_val), Dataset(val[0].stem, tgt, v_sets[0])]
        elif name == "overlap":
            datasets = [Dataset(dn, ps, None) for dn, ps in zip(dnames, p_sets, strict=True)]
        else:
            if len(val) != len(probe):
                raise DataError(f"{len(probe)} --probe but {len(val)} --val; give one validation set per probing set")
            datasets = [Dataset(dn, ps, vs) for dn, ps, vs in zip(dnames, p_sets, v_sets, strict=True)]
        from superneurons.models import load_model

        console.print(f"loading [bold]{escape(model)}[/] ...")
        vlm = load_model(model, dtype=model_dtype, device=device)
        console.print(f"{vlm!r}: experiment [bold]{exp.name}[/] ({exp.paper}) on {', '.join(d.name for d in datasets)}")
        result = run_experiment(name, vlm, datasets=datasets, out_dir=out, options=opts, **params)

    table = Table(title=f"{result.title} (paper {result.paper})")
    for col in result.columns:
        text = col in ("dataset", "method", "word", "split", "datasets", "labels", "optimised", "token", "probe", "val")
        table.add_column(result.header(col), justify="left" if text else "right", no_wrap=col == "method")
    for row in result.rows:
        table.add_row(*(result.cell(row, c) for c in result.columns))
    stdout = Console()
    stdout.print(table)
    if any(c in result.percent for c in result.columns):
        stdout.print("metrics in %")
    for path in result.files:
        stdout.print(f"[green]wrote[/] {escape(str(path))}")


def _overlap_from_stores(stores: list[str], model_scores: list[str], metric: str, out: Path, plot: bool) -> Any:
    from superneurons.activations.store import ActivationStore
    from superneurons.errors import DataError
    from superneurons.experiments import overlap_from_scores
    from superneurons.scoring import score_neurons

    dirs, given = _pairs(stores, "store"), _pairs(model_scores, "model-score")
    missing = [k for k in dirs if k not in given]
    if missing:
        raise DataError(f"no --model-score for store(s) {missing}; pass NAME=X (the model's {metric} on that set)")
    scores, layers = {}, None
    for key, d in dirs.items():
        s = score_neurons(ActivationStore(d), metrics=(metric,))
        scores[key], layers = s[metric], s.layers
    try:
        ms = {k: float(v) for k, v in given.items() if k in dirs}
    except ValueError:
        raise DataError("--model-score values must be numbers in [0, 1], e.g. presence=0.81") from None
    return overlap_from_scores(scores, ms, metric, layers, out, plot, meta={"stores": dirs})


def register(app: typer.Typer) -> None:
    """Add `experiment` to the app."""
    app.command("experiment")(experiment_command)
