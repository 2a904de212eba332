"""`run_study`: the paper's whole study on one model and the datasets of a study file, resumable, with the report.

Per dataset (in the file's order): probe (Alg. 1's capture and the model's answers on the probing
set), select (every neuron scored, SNt sweep, the early-exit sets, classifiers saved), evaluate
(Alg. 2 on validation against the model's generation and first-token logits, with AR); then the
experiments, the cascade sweep and the runtime bench on the bench dataset; then the report:

    DIR/report.html  report.md  results.json  figures/*.png
    DIR/classifiers/<dataset>[-early[N]]/  DIR/experiments/ (tables, figures, cache)  DIR/steps/ (cache)

Every step is cached under DIR keyed by its inputs (`superneurons.study.steps`): a killed or repeated
study resumes and redoes only what changed. Under `torchrun` every process takes part in the
probing-set captures (as `superneurons probe`), then rank 0 alone does the rest.

    >>> paths = run_study("study.toml", "out")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superneurons.study.extras import run_bench_step, run_cascade, run_experiments
from superneurons.study.per_dataset import DatasetRun, run_dataset
from superneurons.study.spec import StudySpec, load_study
from superneurons.study.steps import StepCache, Steps

if TYPE_CHECKING:
    from superneurons.models.base import VLM

STEPS_DIR = "steps"
TRAINING_FILE = "training.json"


def _training(model: str) -> dict[str, Any] | None:
    """The model folder's `training.json` (how a local model was trained), or None."""
    p = Path(model) / TRAINING_FILE
    if not p.is_file():
        return None
    from superneurons.errors import DataError
    from superneurons.utils.files import read_json

    return read_json(p, DataError, "fix or remove the file")


def _source(src: Any, out: Path) -> str:
    """Where a set came from, in words: its file (relative to DIR when inside), or the prepare command."""
    from superneurons.study.per_dataset import relative

    if src.file is not None:
        return str(relative(str(src.file), out))
    a = dict(src.prepare)
    flags = " ".join(f"--{k.replace('_', '-')}" if v is True else f"--{k.replace('_', '-')} {v}"
                     for k, v in a.items() if k not in ("dataset", "root", "split") and v is not False)
    return f"datasets prepare {a['dataset']} --root {a['root']} --split {a['split']} {flags}".strip()


def run_study(study: StudySpec | str | Path, out_dir: str | Path, *, vlm: VLM | None = None, device: str = "auto",
              model_dtype: str = "auto", limit: int | None = None, progress: bool = True,
              meta: dict[str, Any] | None = None, label: str = "study") -> dict[str, Path]:
    """Run (or resume) a study; return the paths written ({"html", "markdown", "json", "figures", "out"}).

    `study` is a `StudySpec` or a study file. `vlm` skips loading the model (tests, the demo);
    `limit` keeps the first N samples of every set; `meta` adds fields to results["meta"] (the
    demo's seed and sizes). Under a multi-process launcher the non-main ranks return {}.
    """
    import torch

    from superneurons.activations import distributed as dist
    from superneurons.constants import __version__
    from superneurons.experiments._common import CACHE_DIR, ExperimentOptions
    from superneurons.experiments.workspace import Workspace
    from superneurons.report.build import write_report
    from superneurons.study.data import dataset_samples
    from superneurons.utils.optional import require_matplotlib

    require_matplotlib()
    spec = study if isinstance(study, StudySpec) else load_study(study)
    o = spec.options
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    info = dist.init_distributed()
    runs: dict[str, DatasetRun] = {}
    failed = None
    if info.is_main:  # rank 0 writes DIR (the study file's copy, prepared data) before the others read it
        if spec.source is not None and spec.source.resolve() != (out / "study.toml").resolve():
            (out / "study.toml").write_text(spec.source.read_text(encoding="utf-8"), encoding="utf-8")
        try:
            runs = {d.name: DatasetRun(d.name, *dataset_samples(d, out, limit)) for d in spec.datasets}
        except Exception as exc:
            failed = exc
    if info.distributed and dist.all_gather(None if failed is None else str(failed), info)[0] is not None \
            and not info.is_main:
        return {}  # rank 0 raises the reason
    if failed is not None:
        raise failed
    if not info.is_main:
        runs = {d.name: DatasetRun(d.name, *dataset_samples(d, out, limit)) for d in spec.datasets}
    bench_name = o.bench_dataset or spec.datasets[0].name
    n_steps = 1 + 3 * len(runs) + 1 + o.cascade + o.bench + 1
    with Steps(n_steps, progress and info.is_main, label) as steps:
        with steps.step("model", "loading the model"):
            if vlm is None:
                from superneurons.models import load_model

                vlm = load_model(spec.model, dtype=model_dtype, device=dist.rank_device(device, info))
        opts = ExperimentOptions(token=o.token, alpha=o.alpha, metric=o.metric, step=o.step, depth=o.depth,  # type: ignore[arg-type]
                                 batch_size=o.batch_size, max_new_tokens=o.max_new_tokens, seed=o.seed,
                                 store_dtype=o.store_dtype, progress=progress and info.is_main)
        ws = Workspace(vlm, opts, out / "experiments" / CACHE_DIR)
        if info.distributed:  # every rank captures its slice of each probing set, then rank 0 goes on alone
            for r in runs.values():
                ws.store(r.probe)
            dist.shutdown_distributed()
            if not info.is_main:
                return {}
            ws.rank_split = False
        cache = StepCache(out / STEPS_DIR)
        results: dict[str, Any] = {
            "meta": {"title": spec.title, "model": spec.model, "model_path": spec.model, "num_layers": vlm.num_layers,
                     "hidden_size": vlm.hidden_size, "seed": o.seed, "batch_size": o.batch_size,
                     "max_new_tokens": o.max_new_tokens, "early_max_layer": o.early_max_layer,
                     "options": spec.to_dict()["options"], "limit": limit, "device": str(vlm.device),
                     "threads": torch.get_num_threads(), "library_version": __version__, "torch": torch.__version__,
                     "python": platform.python_version(), "machine": platform.machine(),
                     "study_file": str(spec.source) if spec.source else None, **(meta or {})},
            "families": list(runs), "family": {}, "classifiers": {}, "figures": {}, "tab5_family": bench_name,
            "model_training": _training(spec.model),
            "datasets": {d.name: {"probe": _source(d.probe, out), "val": _source(d.val, out)} for d in spec.datasets},
        }
        for i, r in enumerate(runs.values(), 1):
            run_dataset(r, ws, cache, o, out, steps, f"[{i}/{len(runs)}] {r.name}")
            results["family"][r.name] = r.summary
            results["classifiers"].update(r.classifiers)
        with steps.step("experiments", "experiments"):
            results["experiments"] = run_experiments(runs, ws, cache, o, out)
        for key, name in (("overlap", "overlap"), ("probe_size", "probe-size")):
            figs = results["experiments"]["results"].get(name, {}).get("figures")
            if figs:
                results["figures"][key] = figs[0]
        if o.cascade:
            with steps.step("cascade", f"cascade sweep on {bench_name}"):
                results["cascade"] = run_cascade(runs[bench_name], ws, cache, o, out)
                if results["cascade"].get("figure"):
                    results["figures"]["cascade"] = results["cascade"]["figure"]
        if o.bench:
            with steps.step("bench", f"runtime comparison on {bench_name}"):
                results["bench"] = run_bench_step(runs[bench_name], ws, cache, o, out)
        ws.close()
        results["steps"] = {"ran": cache.ran, "reused": cache.reused}
        with steps.step("report", "writing the report"):
            extra = float(results["meta"].get("data_seconds") or 0)  # work done before the study (the demo's data)
            results["meta"]["seconds"] = round(time.perf_counter() - t_start + extra, 1)
            results["meta"]["step_seconds"] = steps.times
            written = write_report(results, out)
    written["out"] = out
    return written


def rebuild_report(out_dir: str | Path) -> dict[str, Path]:
    """Write report.html / report.md / figures again from DIR/results.json, without the model."""
    from superneurons.constants import RESULTS_JSON
    from superneurons.errors import DataError
    from superneurons.report.build import write_report
    from superneurons.utils.files import read_json

    out = Path(out_dir)
    path = out / RESULTS_JSON
    if not path.is_file():
        raise DataError(f"{path} not found; run `superneurons study STUDY.toml --out {out}` first")
    results = read_json(path, DataError, "run the study again to rewrite it")
    if not isinstance(results, dict) or "family" not in results:
        raise DataError(f"{path} is not a study's results.json (no per-dataset results); run the study again")
    written = write_report(json.loads(json.dumps(results)), out)
    written["out"] = out
    return written
