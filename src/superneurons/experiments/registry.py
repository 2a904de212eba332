"""The experiments by name: `EXPERIMENTS`, `get_experiment(name)`, `run_experiment(name, ...)`.

Each entry names the module holding its `run(ws, datasets, out_dir=None, **params)` function,
imported only when the experiment runs (so listing names stays cheap). An unknown name raises a
DataError listing the valid ones.

    >>> result = run_experiment("savs", vlm, probe=probe, val=val, out_dir="exp/")   # doctest: +SKIP
    >>> result.rows[0]["accuracy"]                                                   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superneurons.errors import DataError

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.experiments._common import Dataset, ExperimentOptions, ExperimentResult
    from superneurons.models.base import VLM


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its `name`, the `module` with `run`, what it reproduces, and how many
    datasets it takes (`min_datasets`..`max_datasets`, None = any number)."""

    name: str
    module: str
    summary: str
    paper: str
    min_datasets: int = 1
    max_datasets: int | None = None

    def load(self) -> Callable[..., ExperimentResult]:
        return importlib.import_module(f"superneurons.experiments.{self.module}").run


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("savs", "savs", "Sparse Attention Vectors vs SNs at the same probe size N", "Tab. 3"),
    Experiment("nshot", "nshot", "n-shot prompting (n solved probe examples with images) vs SNs", "Tab. 8"),
    Experiment("prompts", "prompts", "key word replaced by alternatives and random strings", "App. Tab. 5"),
    Experiment("shuffled", "shuffled", "images shuffled across questions (Im) and questions across images (Txt)",
               "App. Tab. 6"),
    Experiment("transfer", "transfer", "probe on one dataset, validate on another", "Tab. 7", 2, 2),
    Experiment("metric", "metric", "SNs optimised for accuracy / F1 / precision / recall", "Tab. 9"),
    Experiment("token", "token", "first vs last token: L*, metrics, time per sample", "Tab. 6"),
    Experiment("overlap", "overlap", "neurons beating the model on every listed dataset", "App. Fig. 2", 2),
    Experiment("probe-size", "probe_size", "metrics vs probing set size N", "Fig. 5"),
)}


def experiment_names() -> list[str]:
    return list(EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    """The registered experiment called `name`; an unknown name raises listing the valid ones."""
    if name not in EXPERIMENTS:
        raise DataError(f"unknown experiment {name!r}; valid names: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def run_experiment(name: str, vlm: VLM, probe: Sequence[Sample] | None = None, val: Sequence[Sample] | None = None,
                   *, datasets: Sequence[Dataset] | Mapping[str, tuple[Any, Any]] | None = None,
                   out_dir: str | Path | None = None, options: ExperimentOptions | None = None,
                   cache_dir: str | Path | None = None, **params: Any) -> ExperimentResult:
    """Run experiment `name` on `vlm` and return its result (written to `out_dir` when given).

    Pass one `probe`/`val` pair, or `datasets` (a list of `Dataset`, or `{name: (probe, val)}`) for
    the experiments that take several (transfer: source then target; overlap: two or more).
    Activations and model answers are cached under `cache_dir` (default `<out_dir>/cache`, or a
    temporary folder). `params` go to the experiment (e.g. `n=40, k=20` for savs).
    """
    from superneurons.experiments._common import CACHE_DIR
    from superneurons.experiments.workspace import Workspace

    exp = get_experiment(name)
    ds = as_datasets(probe, val, datasets)
    if len(ds) < exp.min_datasets or (exp.max_datasets is not None and len(ds) > exp.max_datasets):
        want = (f"exactly {exp.min_datasets}" if exp.min_datasets == exp.max_datasets
                else f"at least {exp.min_datasets}")
        raise DataError(f"experiment {name!r} takes {want} dataset(s), got {len(ds)}; pass datasets=[...]")
    run = exp.load()
    if cache_dir is None and out_dir is not None:
        cache_dir = Path(out_dir) / CACHE_DIR
    with Workspace(vlm, options, cache_dir) as ws:
        return run(ws, ds, out_dir=out_dir, **params)


def as_datasets(probe: Sequence[Sample] | None, val: Sequence[Sample] | None,
                datasets: Sequence[Dataset] | Mapping[str, tuple[Any, Any]] | None) -> list[Dataset]:
    """Normalise the ways of passing data into a list of `Dataset`."""
    from superneurons.experiments._common import Dataset

    if datasets is not None:
        if probe is not None or val is not None:
            raise DataError("pass either probe/val or datasets, not both")
        if isinstance(datasets, Mapping):
            return [Dataset(n, _opt_list(p), _opt_list(v)) for n, (p, v) in datasets.items()]
        return list(datasets)
    if probe is None and val is None:
        raise DataError("no data: pass probe and val sample lists (or datasets)")
    return [Dataset("data", _opt_list(probe), _opt_list(val))]


def _opt_list(samples: Sequence[Sample] | None) -> list[Sample] | None:
    return None if samples is None else list(samples)
