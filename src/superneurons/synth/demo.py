"""`run_demo`: the paper's main results reproduced end to end on the shipped demo VLM (`superneurons demo`).

The demo is a study (`superneurons.study`): it generates the synthetic benchmark, draws each
question family's probing set (class-balanced) and validation set, writes them and a study file
(`study.toml`, which a user can edit and rerun with `superneurons study`) into `out_dir`, and runs
the study on the shipped model: per family probe (Alg. 1), select (SNt sweep, early-exit sets with
L* <= 2 and <= 4), evaluate (Alg. 2 against generation and first-token logits), then the
experiments of `superneurons.experiments.demo.demo_plan`, the cascade sweep and the runtime bench
on presence. Everything lands in `out_dir`:

    report.html  report.md  results.json  figures/*.png  study.toml
    data/ (the benchmark; data/study/ the drawn sets)  classifiers/<family>[-early[N]]/  experiments/  steps/

Every step is cached (see `superneurons.study.steps`), so a second run in the same folder skips the
model work already done.

    >>> paths = run_demo("demo_out", quick=True)     # doctest: +SKIP
    >>> paths["html"]                                # doctest: +SKIP
    PosixPath('demo_out/report.html')
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superneurons.errors import DataError

if TYPE_CHECKING:
    from superneurons.data.samples import Sample

DATA_DIR = "data"
STUDY_DATA_DIR = "data/study"
STUDY_FILE = "study.toml"
#: samples per family: probing set (balanced) and validation set
DEFAULT_SIZES: dict[str, int] = {"probe": 500, "val": 300}
QUICK_SIZES: dict[str, int] = {"probe": 40, "val": 24}
TAB5_FAMILY = "presence"
EXPERIMENT_CHOICES: tuple[str, ...] = ("all", "core", "none")
CORE_EXPERIMENTS: tuple[str, ...] = ("overlap", "probe-size")
CASCADE_MARGINS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
QUICK_CASCADE_MARGINS: tuple[float, ...] = (0.0, 0.25, 0.5)
EARLY_MAX_LAYERS: tuple[int, ...] = (2, 4)
BENCH_BATCH = 4
# questions per scene each family yields at least (occlusion needs an overlapping pair)
_YIELD = {"occlusion": 0.45, "depth": 0.7, "spatial": 0.7, "attribute": 0.8}


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


def demo_experiments(which: str, quick: bool, families: Sequence[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The study file's experiment tables for `which` (all / core / none), and the lines saying which
    experiments were left out for want of their families."""
    from superneurons.experiments.demo import demo_plan, synth_presence_truth

    out: dict[str, dict[str, Any]] = {}
    left_out = []
    for name, wanted, params in demo_plan(quick):
        if which == "none" or (which == "core" and name not in CORE_EXPERIMENTS):
            continue
        missing = [f for f in wanted if f != "*" and f not in families]
        if missing:
            left_out.append(f"{name}: needs famil{'ies' if len(wanted) > 1 else 'y'} {', '.join(wanted)}")
            continue
        table: dict[str, Any] = {} if wanted == ["*"] else {"datasets": list(wanted)}
        for k, v in params.items():
            table[k] = "synth-presence" if v is synth_presence_truth else list(v) if isinstance(v, tuple) else v
        out[name] = table
    return out, left_out


def run_demo(out_dir: str | Path, quick: bool = False, seed: int = 0, model: str | Path | None = None,
             families: Sequence[str] | None = None, n_probe: int | None = None, n_val: int | None = None,
             batch_size: int = 8, max_new_tokens: int = 128, device: str = "auto",
             early_max_layer: int | Sequence[int] = EARLY_MAX_LAYERS, experiments: str | None = None,
             cascade: bool = True, bench: bool = True, progress: bool = True) -> dict[str, Path]:
    """Run the demo (see the module docstring); return the paths written.

    `model`: a model folder or hub id (default: the shipped demo model). `quick`: small sizes
    (CI). `n_probe`/`n_val`: samples per family (default `DEFAULT_SIZES` or `QUICK_SIZES`).
    `experiments`: "all", "core" (overlap and probe-size, which the report's App. Fig. 2 and
    Fig. 5 come from) or "none"; default "all", "core" with `quick`. Returns {"html", "markdown",
    "json", "figures", "out", "study"}.
    """
    from superneurons.data.samples import load_samples, write_samples
    from superneurons.study import load_study, run_study, study_toml
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
    t0 = time.perf_counter()
    paths = generate_benchmark(out / DATA_DIR, n_scenes={"probe": scenes_needed(sizes["probe"], fams),
                                                         "val": scenes_needed(sizes["val"], fams)},
                               seed=seed, families=fams)
    datasets = []
    for f in fams:
        probe, val = pick_samples(load_samples(paths["probe"][f]), load_samples(paths["val"][f]), f,
                                  sizes["probe"], sizes["val"], seed)
        write_samples(probe, out / STUDY_DATA_DIR / f"{f}-probe.jsonl")
        write_samples(val, out / STUDY_DATA_DIR / f"{f}-val.jsonl")
        datasets.append({"name": f, "probe": f"{STUDY_DATA_DIR}/{f}-probe.jsonl",
                         "val": f"{STUDY_DATA_DIR}/{f}-val.jsonl"})
    data_seconds = round(time.perf_counter() - t0, 3)
    label = str(model)
    if model is None:
        from superneurons.synth import demo_model_path

        model = demo_model_path()
        label = "the shipped demo model (superneurons/synth/demo_model)"
    exps, left_out = demo_experiments(experiments, quick, fams)
    caps = [early_max_layer] if isinstance(early_max_layer, int) else list(early_max_layer)
    options: dict[str, Any] = {
        "early_max_layer": caps, "batch_size": batch_size, "max_new_tokens": max_new_tokens, "seed": seed,
        "cascade": cascade, "cascade_margins": list(QUICK_CASCADE_MARGINS if quick else CASCADE_MARGINS),
        "bench": bench, "bench_dataset": TAB5_FAMILY if TAB5_FAMILY in fams else fams[0],
        "bench_batch_size": BENCH_BATCH, "bench_exit_layers": [1], "bench_repeats": 1 if quick else 3,
        "bench_warmup": 0 if quick else 1, "experiments": exps}
    comment = (f"The study `superneurons demo{' --quick' if quick else ''} --seed {seed}` ran; rerun it with\n"
               f"  superneurons study {STUDY_FILE} --out .\n"
               + "".join(f"left out: {line}\n" for line in left_out))
    study_file = out / STUDY_FILE
    study_file.write_text(study_toml(str(Path(model).resolve()) if Path(model).is_dir() else str(model), datasets,
                                     options, title="Super Neurons demo report", comment=comment), encoding="utf-8")
    meta = {"model": label, "quick": quick, "sizes": sizes, "data_seconds": data_seconds,
            "data": f"synthetic benchmark seed {seed}{' (quick sizes)' if quick else ''}",
            "data_description": "Per family, a class-balanced probing set (probe split) and a validation set "
                                "(val split, disjoint scenes) from the synthetic generator."}
    written = run_study(load_study(study_file), out, device=device, progress=progress, meta=meta, label="demo")
    written["study"] = study_file
    return written
