"""The study's steps across datasets: the listed experiments, the cascade sweep and the runtime bench.

Each is cached like the per-dataset steps (`StepCache`), keyed by the keys of the datasets it reads,
so adding a dataset reruns only the experiments that take every dataset (e.g. overlap, which reads
the cached activations and costs no model call). A failing experiment or sweep is recorded in the
results (the report says what failed), not raised, and is retried on the next run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from superneurons.study.per_dataset import DatasetRun, load_classifiers, relative
from superneurons.study.steps import StepCache, step_key

if TYPE_CHECKING:
    from superneurons.experiments.workspace import Workspace
    from superneurons.study.spec import StudyOptions

EXPERIMENTS_DIR = "experiments"
#: experiment parameters a study file names by a string, and the callables they stand for
RELABELLERS = {"synth-presence": ("superneurons.experiments.demo", "synth_presence_truth")}


def _params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    import importlib

    out = {k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items() if k != "datasets"}
    if "relabel" in out:
        if out["relabel"] not in RELABELLERS:
            from superneurons.errors import ConfigError

            raise ConfigError(f"experiment {name!r}: relabel = {out['relabel']!r}; use one of {', '.join(RELABELLERS)}")
        module, attr = RELABELLERS[out["relabel"]]
        out["relabel"] = getattr(importlib.import_module(module), attr)
    return out


def jsonable_result(r: Any, out: Path) -> dict[str, Any]:
    """An `ExperimentResult` as a table of strings + file names relative to the study folder."""
    rows = [[r.cell(row, c) for c in r.columns] for row in r.rows]
    return {"title": r.title, "paper": r.paper, "columns": list(r.columns), "rows": rows,
            "files": [relative(p, out) for p in r.files], "figures": [relative(p, out) for p in r.figures]}


def run_experiments(runs: dict[str, DatasetRun], ws: Workspace, cache: StepCache, o: StudyOptions,
                    out: Path) -> dict[str, Any]:
    """The study's experiments (`options.experiments`, plus overlap across 2+ datasets) into DIR/experiments."""
    from superneurons.experiments._common import Dataset
    from superneurons.experiments.registry import get_experiment

    plan = dict(o.experiments)
    if len(runs) > 1 and "overlap" not in plan:
        plan["overlap"] = {}  # App. Fig. 2 is part of every multi-dataset report; it reads cached stores only
    record: dict[str, Any] = {"which": list(plan), "results": {}, "errors": {}, "skipped": {}}
    for name, params in plan.items():
        exp = get_experiment(name)
        names = list(params.get("datasets") or runs)
        if exp.max_datasets is not None:
            names = names[:exp.max_datasets]
        if len(names) < exp.min_datasets:
            record["skipped"][name] = f"needs at least {exp.min_datasets} datasets, the study has {len(names)}"
            continue
        key = step_key("experiment", name, params, ws.model_key(), [runs[n].keys["probe"] for n in names],
                       [runs[n].keys["evaluate"] for n in names], o.metric, o.token, o.alpha, o.step, o.depth,
                       o.seed, o.batch_size, o.max_new_tokens)

        def run(name: str = name, names: list[str] = names, params: dict[str, Any] = params, exp: Any = exp
                ) -> dict[str, Any]:
            datasets = [Dataset(n, list(runs[n].probe), list(runs[n].val)) for n in names]
            res = exp.load()(ws, datasets, out_dir=out / EXPERIMENTS_DIR, **_params(name, params))
            return jsonable_result(res, out)

        try:
            record["results"][name] = cache.run(f"experiments/{name}", key, run)
        except Exception as exc:  # an experiment's failure must not lose the study's own results
            record["errors"][name] = f"{type(exc).__name__}: {exc}"
    return record


def run_cascade(d: DatasetRun, ws: Workspace, cache: StepCache, o: StudyOptions, out: Path) -> dict[str, Any]:
    """The cascade sweep on one dataset's validation set, with its figure (figures/cascade_sweep.png)."""
    from superneurons.constants import FIGURE_DIR

    key = step_key("cascade", d.keys["evaluate"], o.cascade_margins, o.batch_size)
    rel = f"{FIGURE_DIR}/cascade_sweep.png"

    def run() -> dict[str, Any]:
        from superneurons.evaluation.cascade_sweep import cascade_sweep
        from superneurons.report.cascade_plot import plot_cascade

        clf = load_classifiers(_sel(d), out)[0]
        rows = cascade_sweep(clf, ws.vlm, d.val, margins=o.cascade_margins, batch_size=o.batch_size)
        plot_cascade(rows, out / rel, title=f"Cascade on {d.name}: SNs, deferring to the model "
                                            "when |s - 0.5| < margin")
        return {"margins": list(o.cascade_margins), "family": d.name, "rows": rows, "figure": rel}

    try:
        record = cache.run(f"{d.name}/cascade", key, run)
    except Exception as exc:  # an optional extra: report it, keep the study
        return {"margins": list(o.cascade_margins), "family": d.name, "error": f"{type(exc).__name__}: {exc}"}
    if not (out / rel).is_file():  # the figure went missing: the rows are cached, draw it again
        from superneurons.report.cascade_plot import plot_cascade

        plot_cascade(record["rows"], out / rel, title=f"Cascade on {d.name}: SNs, deferring to the model "
                                                       "when |s - 0.5| < margin")
    return record


def _sel(d: DatasetRun) -> dict[str, Any]:
    return {"classifiers": d.classifiers}


def run_bench_step(d: DatasetRun, ws: Workspace, cache: StepCache, o: StudyOptions, out: Path) -> dict[str, Any]:
    """`superneurons.evaluation.bench.run_bench` on one dataset's validation set with its SN classifiers."""
    batch = o.bench_batch_size or o.batch_size
    key = step_key("bench", d.keys["evaluate"], batch, o.bench_exit_layers, o.bench_repeats, o.bench_warmup,
                   o.max_new_tokens, o.generate)

    def run() -> dict[str, Any]:
        from superneurons.evaluation.bench import run_bench

        exits = [x for x in o.bench_exit_layers if x < ws.vlm.num_layers - 1]
        res = run_bench(ws.vlm, d.val, classifiers=load_classifiers(_sel(d), out), exit_layers=exits,
                        batch_size=batch, max_new_tokens=o.max_new_tokens, repeats=o.bench_repeats,
                        warmup=o.bench_warmup, generate=o.generate, progress=True)
        return res.to_dict()

    return cache.run(f"{d.name}/bench", key, run)
