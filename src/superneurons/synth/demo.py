"""`run_demo`: the paper's main results reproduced end to end on the shipped demo VLM (`superneurons demo`).

On a freshly generated synthetic benchmark (`superneurons.synth`), for every question family:

1. probe (Alg. 1): capture the probing set's activations (all layers, first answer position)
   and the model's generated answers on it; score every neuron; sweep SNt; pick the SN set and
   an early-exit SN set (L* <= `early_max_layer`); save both as classifiers,
2. evaluate (Alg. 2) on the validation set: SNs (mean, majority vote) with early exit at L*,
   against the model's generated answers and first-token logits; agreement rate; timings,

then the experiments of `superneurons.experiments.run_demo_experiments` (cross-family overlap,
probing-set size, and with `experiments="all"` the other ablations), the cascade sweep on the
Tab. 5 family, and the runtime comparison of `superneurons.bench`. Everything lands in `out_dir`:

    report.html  report.md  results.json  figures/*.png
    data/ (the benchmark)  classifiers/<family>[-early]/  experiments/ (tables, figures, cache)

Activations and model answers go through one `experiments.Workspace` cache, so the experiments
reuse them and a second run in the same folder skips the model work already done.

    >>> paths = run_demo("demo_out", quick=True)     # doctest: +SKIP
    >>> paths["html"]                                # doctest: +SKIP
    PosixPath('demo_out/report.html')
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superneurons.errors import DataError

if TYPE_CHECKING:
    from superneurons.data.samples import Sample

DATA_DIR = "data"
CLASSIFIERS_DIR = "classifiers"
EXPERIMENTS_DIR = "experiments"
#: samples per family: probing set (balanced) and validation set
DEFAULT_SIZES: dict[str, int] = {"probe": 500, "val": 300}
QUICK_SIZES: dict[str, int] = {"probe": 40, "val": 24}
TAB5_FAMILY = "presence"
EXPERIMENT_CHOICES: tuple[str, ...] = ("all", "core", "none")
CORE_EXPERIMENTS: tuple[str, ...] = ("overlap", "probe-size")
CASCADE_MARGINS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
QUICK_CASCADE_MARGINS: tuple[float, ...] = (0.0, 0.25, 0.5)
BENCH_BATCH = 4
# questions per scene each family yields at least (occlusion needs an overlapping pair)
_YIELD = {"occlusion": 0.45, "depth": 0.7, "spatial": 0.7, "attribute": 0.8}


class _Steps:
    """A rich progress display on stderr: one bar for the whole demo, the current step as its text,
    and the wall time of every step recorded for results.json."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.times: dict[str, float] = {}
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("[bold]demo[/]"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("{task.description}"),
                                console=Console(stderr=True))
            self.bar.start()
            self.task = self.bar.add_task("", total=total)

    @contextmanager
    def step(self, key: str, text: str, pause: bool = False) -> Iterator[None]:
        if self.bar is not None:
            self.bar.update(self.task, description=text)
            if pause:  # the step prints its own lines
                self.bar.stop()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[key] = round(time.perf_counter() - t0, 3)
            if self.bar is not None:
                if pause:
                    self.bar.start()
                self.bar.advance(self.task)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def scenes_needed(n: int, families: Sequence[str]) -> int:
    """Scenes to render so that every family in `families` can give `n` questions."""
    rate = min([_YIELD.get(f, 1.0) for f in families] or [1.0])
    return math.ceil(n / rate) + 10


def pick_samples(probe_all: Sequence[Sample], val_all: Sequence[Sample], family: str, n_probe: int, n_val: int,
                 seed: int) -> tuple[list[Sample], list[Sample]]:
    """A balanced probing set of `n_probe` and the first `n_val` validation samples (MCQ: whole
    questions, i.e. a multiple of its 4 options)."""
    from superneurons.data.samples import balanced_sample

    probe = balanced_sample(probe_all, n_probe, seed=seed)
    if family == "mcq":
        n_val = max(4, 4 * (n_val // 4))
    val = list(val_all[:n_val])
    if {s.label for s in val} != {"yes", "no"}:
        raise DataError(f"family {family!r}: the validation set ({len(val)} samples) lacks yes or no answers; "
                        "ask for more validation samples")
    return probe, val


def _relative(path: str | None, root: Path) -> str | None:
    """`path` relative to `root` when it lies inside it (report files stay movable)."""
    if path is None:
        return None
    p = Path(path).resolve()
    return str(p.relative_to(root.resolve())) if p.is_relative_to(root.resolve()) else str(p)


def _jsonable_result(r: Any, out: Path) -> dict[str, Any]:
    """An `ExperimentResult` as a table of strings + file names relative to the demo folder."""
    rows = [[r.cell(row, c) for c in r.columns] for row in r.rows]
    rel = [_relative(p, out) for p in r.files]
    figs = [_relative(p, out) for p in r.figures]
    return {"title": r.title, "paper": r.paper, "columns": list(r.columns), "rows": rows, "files": rel,
            "figures": figs}


def run_demo(out_dir: str | Path, quick: bool = False, seed: int = 0, model: str | Path | None = None,
             families: Sequence[str] | None = None, n_probe: int | None = None, n_val: int | None = None,
             batch_size: int = 8, max_new_tokens: int = 128, device: str = "auto", early_max_layer: int = 2,
             experiments: str | None = None, cascade: bool = True, bench: bool = True, progress: bool = True
             ) -> dict[str, Path]:
    """Run the demo pipeline (see the module docstring); return the paths written.

    `model`: a model folder or hub id (default: the shipped demo model). `quick`: small sizes
    (CI). `n_probe`/`n_val`: samples per family (default `DEFAULT_SIZES` or `QUICK_SIZES`).
    `experiments`: "all", "core" (overlap and probe-size, which the report's App. Fig. 2 and
    Fig. 5 come from) or "none"; default "all", "core" with `quick`. Returns {"html", "markdown",
    "json", "figures", "out"}.
    """
    import torch

    from superneurons.constants import __version__
    from superneurons.data.samples import load_samples
    from superneurons.experiments._common import CACHE_DIR, ExperimentOptions
    from superneurons.experiments.workspace import Workspace
    from superneurons.models import load_model
    from superneurons.report.build import write_report
    from superneurons.synth import generate_benchmark
    from superneurons.synth.generate import check_families
    from superneurons.utils.optional import require_matplotlib

    require_matplotlib()
    experiments = experiments or ("core" if quick else "all")
    if experiments not in EXPERIMENT_CHOICES:
        raise DataError(f"experiments={experiments!r}; choose one of {', '.join(EXPERIMENT_CHOICES)}")
    sizes = dict(QUICK_SIZES if quick else DEFAULT_SIZES)
    sizes.update({k: v for k, v in (("probe", n_probe), ("val", n_val)) if v is not None})
    if sizes["probe"] < 4 or sizes["val"] < 4:
        raise DataError(f"sizes {sizes}: use at least 4 probing and 4 validation samples per family")
    fams = check_families(families)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    n_steps = 3 + 3 * len(fams) + (experiments != "none") + cascade + bench + 1
    steps = _Steps(n_steps, progress)
    try:
        with steps.step("data", "generating the synthetic benchmark"):
            paths = generate_benchmark(out / DATA_DIR, n_scenes={"probe": scenes_needed(sizes["probe"], fams),
                                                                 "val": scenes_needed(sizes["val"], fams)},
                                       seed=seed, families=fams)
            data = {f: pick_samples(load_samples(paths["probe"][f]), load_samples(paths["val"][f]), f,
                                    sizes["probe"], sizes["val"], seed) for f in fams}
        with steps.step("model", "loading the model"):
            label = str(model)
            if model is None:
                from superneurons.synth import demo_model_path

                model = demo_model_path()
                label = "the shipped demo model (superneurons/synth/demo_model)"
            vlm = load_model(str(model), device=device)
        opts = ExperimentOptions(batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed)
        ws = Workspace(vlm, opts, out / EXPERIMENTS_DIR / CACHE_DIR)
        results: dict[str, Any] = {
            "meta": {"model": label, "model_path": str(model), "num_layers": vlm.num_layers,
                     "hidden_size": vlm.hidden_size, "seed": seed, "quick": quick, "sizes": sizes, "batch_size": batch_size,
                     "max_new_tokens": max_new_tokens, "early_max_layer": early_max_layer,
                     "device": str(vlm.device), "threads": torch.get_num_threads(), "library_version": __version__,
                     "torch": torch.__version__, "python": platform.python_version(),
                     "machine": platform.machine()},
            "families": fams, "family": {}, "classifiers": {}, "figures": {},
            "tab5_family": TAB5_FAMILY if TAB5_FAMILY in fams else fams[0],
        }
        clfs: dict[str, tuple[Any, Any]] = {}
        for i, f in enumerate(fams, 1):
            results["family"][f], clfs[f] = _run_family(vlm, ws, f, *data[f], out, steps, f"[{i}/{len(fams)}] {f}",
                                                        early_max_layer, batch_size)
            results["classifiers"][f] = f"{CLASSIFIERS_DIR}/{f}"
            if clfs[f][1] is not None:
                results["classifiers"][f"{f} (early exit)"] = f"{CLASSIFIERS_DIR}/{f}-early"

        if experiments != "none":
            with steps.step("experiments", f"experiments ({experiments})", pause=True):
                results["experiments"] = _run_experiments(vlm, data, out, quick, opts, experiments)
                for key, name in (("overlap", "overlap"), ("probe_size", "probe-size")):
                    figs = (results["experiments"].get("results") or {}).get(name, {}).get("figures")
                    if figs:
                        results["figures"][key] = figs[0]
        if "overlap" not in results["figures"] and len(fams) > 1:
            results["figures"]["overlap"] = _overlap_fallback(ws, data, out)
        t5 = results["tab5_family"]
        if cascade:
            with steps.step("cascade", f"cascade sweep on {t5}"):
                results["cascade"] = _run_cascade(clfs[t5][0], vlm, data[t5][1], out, quick, batch_size)
                if results["cascade"].get("figure"):
                    results["figures"]["cascade"] = results["cascade"]["figure"]
        if bench:
            with steps.step("bench", f"runtime comparison on {t5}"):
                from superneurons.evaluation.bench import run_bench

                sets = [c for c in clfs[t5] if c is not None]
                res = run_bench(vlm, data[t5][1], classifiers=sets, exit_layers=[1] if vlm.num_layers > 2 else [],
                                batch_size=BENCH_BATCH, max_new_tokens=max_new_tokens,
                                repeats=1 if quick else 3, warmup=0 if quick else 1, progress=False)
                results["bench"] = res.to_dict()
        ws.close()
        with steps.step("report", "writing the report"):
            results["meta"]["seconds"] = round(time.perf_counter() - t_start, 1)
            results["meta"]["step_seconds"] = steps.times
            written = write_report(results, out)
    finally:
        steps.close()
    written["out"] = out
    return written


def _run_family(vlm: Any, ws: Any, f: str, probe: list[Sample], val: list[Sample], out: Path, steps: _Steps,
                tag: str, early_max_layer: int, batch_size: int) -> tuple[dict[str, Any], tuple[Any, Any]]:
    """One family: Alg. 1 on the probing set (classifiers saved), Alg. 2 + baselines on validation."""
    from superneurons.evaluation.compare import evaluate
    from superneurons.inference.classifier import SuperNeuronClassifier
    from superneurons.report.analysis import analyse_probe

    with steps.step(f"{f}/probe", f"{tag}: probing {len(probe)} samples (activations + model answers)"):
        store = ws.store(probe)
        run_p = ws.model_answers(probe)
    with steps.step(f"{f}/select", f"{tag}: scoring neurons, SNt sweep"):
        pa = analyse_probe(store, run_p.preds, early_max_layer=early_max_layer)
        early = pa.summary.pop("early")
        meta = {"family": f, "chosen": pa.summary["chosen"], "probe_samples": len(probe)}
        clf = SuperNeuronClassifier.from_store(pa.sns, store, aggregation="vote", meta=meta)
        clf.save(out / CLASSIFIERS_DIR / f)
        clf_e = None
        if pa.early is not None and early is not None:
            clf_e = SuperNeuronClassifier.from_store(pa.early, store, aggregation="vote",
                                                     meta={**meta, "chosen": early["chosen"]})
            clf_e.save(out / CLASSIFIERS_DIR / f"{f}-early")
    with steps.step(f"{f}/validate", f"{tag}: validating on {len(val)} samples (SNs, generation, logits)"):
        run_v = ws.model_answers(val)
        gen = (run_v.preds, run_v.texts, run_v.seconds)
        val_res = evaluate(clf, vlm, val, batch_size=batch_size, generated=gen, keep_answers=True)
        for a in val_res["answers"]:
            a["image"] = _relative(a["image"], out)
        if clf_e is not None:
            early["val"] = evaluate(clf_e, vlm, val, batch_size=batch_size, generated=gen, first_token=False)
    summary = {"n_probe": len(probe), "n_val": len(val), "probe": pa.summary, "chosen": pa.summary["chosen"],
               "early": early, "val": val_res}
    return summary, (clf, clf_e)


def _run_experiments(vlm: Any, data: dict[str, tuple[list[Sample], list[Sample]]], out: Path, quick: bool,
                     opts: Any, which: str) -> dict[str, Any]:
    """`run_demo_experiments` into out/experiments; a failure is recorded, not raised (the report
    says what failed), and the core experiments are then retried one by one."""
    from superneurons.experiments import run_demo_experiments

    only = None if which == "all" else list(CORE_EXPERIMENTS)
    exp_dir = out / EXPERIMENTS_DIR
    record: dict[str, Any] = {"which": which, "results": {}, "errors": {}}
    try:
        res = run_demo_experiments(vlm, data, exp_dir, quick=quick, options=opts, only=only)
    except Exception as exc:  # their failure must not lose the demo's own results
        record["error"] = f"{type(exc).__name__}: {exc}"
        res = {}
        for name in CORE_EXPERIMENTS:
            try:
                res.update(run_demo_experiments(vlm, data, exp_dir, quick=quick, options=opts, only=[name]))
            except Exception as exc2:
                record["errors"][name] = f"{type(exc2).__name__}: {exc2}"
    record["results"] = {name: _jsonable_result(r, out) for name, r in res.items()}
    index = exp_dir / "index.json"
    if index.is_file():
        import json

        record["skipped"] = json.loads(index.read_text(encoding="utf-8")).get("skipped", {})
    return record


def _overlap_fallback(ws: Any, data: dict[str, tuple[list[Sample], list[Sample]]], out: Path) -> str | None:
    """App. Fig. 2 from the cached stores when the experiments did not draw it."""
    try:
        from superneurons.experiments import run_experiment

        run_experiment("overlap", ws.vlm, datasets={f: (p, None) for f, (p, _) in data.items()},
                       out_dir=out / EXPERIMENTS_DIR, options=ws.options, cache_dir=ws.cache_dir)
    except Exception:
        return None
    p = out / EXPERIMENTS_DIR / "overlap.png"
    return f"{EXPERIMENTS_DIR}/overlap.png" if p.is_file() else None


def _run_cascade(clf: Any, vlm: Any, val: Sequence[Sample], out: Path, quick: bool, batch_size: int) -> dict[str, Any]:
    """The cascade sweep on one family's validation set, with its figure; errors are recorded."""
    from superneurons.constants import FIGURE_DIR

    margins = QUICK_CASCADE_MARGINS if quick else CASCADE_MARGINS
    record: dict[str, Any] = {"margins": list(margins), "family": clf.meta.get("family")}
    try:
        from superneurons.evaluation.cascade_sweep import cascade_sweep
        from superneurons.report.cascade_plot import plot_cascade

        rows = cascade_sweep(clf, vlm, val, margins=margins, batch_size=batch_size)
        record["rows"] = rows
        rel = f"{FIGURE_DIR}/cascade_sweep.png"
        plot_cascade(rows, out / rel, title=f"Cascade on {record['family']}: SNs, deferring to the model "
                                              "when |s - 0.5| < margin")
        record["figure"] = rel
    except Exception as exc:  # an optional extra: report it, keep the demo
        record["error"] = f"{type(exc).__name__}: {exc}"
    return record
