"""What every experiment shares: datasets, options, a workspace that caches model work, results.

- `Dataset(name, probe, val)`: a named probing set and validation set (lists of `Sample`).
- `ExperimentOptions`: the settings common to all experiments (token, alpha, metric, SNt sweep
  step/depth, batch size, generation budget, seed, stored dtype).
- `Workspace(vlm, options, cache_dir)`: runs the expensive steps once and caches them on disk,
  keyed by the model (config hash and weight sketch of its fingerprint, prompt template, dtype)
  and the exact samples (id, question, image, label): activation stores (`store`, written by
  `superneurons.store.probe`, so a cached store is checked and resumed like any other) and the
  model's generated answers (`model_answers`, POPE-parsed, with their wall-clock time). Several experiments on one workspace share both.
  `fit` runs Alg. 1 (`superneurons.classifier.fit_classifier`) on a store or a row subset of one
  (`StoreView`); `sn_predictions` answers a validation store with the fitted SNs.
- `ExperimentResult`: one table (rows of plain numbers) + metadata + figure paths; `write(dir)`
  saves `<name>.json` and `<name>.md` and returns the paths.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from superneurons.errors import DataError, SuperNeuronsError
from superneurons.metrics import METRICS, binary_metrics

if TYPE_CHECKING:
    from superneurons.classifier import FitResult, SuperNeuronClassifier
    from superneurons.data.samples import Sample
    from superneurons.models.base import VLM
    from superneurons.store import ActivationStore

RESULT_JSON = "{name}.json"
RESULT_MD = "{name}.md"
FIGURE_PNG = "{name}.png"
CACHE_DIR = "cache"
ANSWERS_FILE = "answers-{key}.json"
STORE_DIR = "acts-{token}-{key}"
AGGREGATIONS: tuple[str, ...] = ("mean", "vote")
METRIC_COLUMNS: tuple[str, ...] = (*METRICS, "yes_ratio")
REPORT_EXTRA = "pip install superneurons[report]"
#: Display names of columns (paper style); others print as they are.
HEADERS: dict[str, str] = {"accuracy": "Acc.", "precision": "Prec.", "recall": "Recall", "f1": "F1",
                           "yes_ratio": "Yes %", "exit_layer": "L*", "seconds_per_sample": "s/sample",
                           "n_datasets": "#datasets", "accuracy_std": "Acc. std", "f1_std": "F1 std",
                           "early_exit": "early exit"}


# ----------------------------------------------------------------------------- inputs
@dataclass
class Dataset:
    """A named pair of labelled sample lists: `probe` (SNs are found on it) and `val` (scored on it).

    Either may be None where an experiment does not need it (e.g. the source side of `transfer`).
    """

    name: str
    probe: list[Sample] | None = None
    val: list[Sample] | None = None

    def __post_init__(self) -> None:
        for split in ("probe", "val"):
            samples = getattr(self, split)
            if samples is None:
                continue
            if not samples:
                raise DataError(f"dataset {self.name!r}: the {split} set is empty; pass at least 2 labelled samples")
            unlabelled = [s.id for s in samples if s.label is None]
            if unlabelled:
                raise DataError(f"dataset {self.name!r}: {split} sample(s) {unlabelled[:5]} have no label; "
                                "experiments compare answers with yes/no labels")

    def need(self, split: str, experiment: str) -> list[Sample]:
        samples = getattr(self, split)
        if samples is None:
            raise DataError(f"experiment {experiment!r} needs a {split} set for dataset {self.name!r}; "
                            f"pass --{split} FILE")
        return samples


@dataclass
class ExperimentOptions:
    """Settings shared by every experiment (paper defaults).

    `token`: activation position ("first": the last prompt position, paper Tab. 6's best);
    `alpha`: activation threshold (paper: 0); `metric`: what SNs are optimised for; `step`/`depth`:
    the SNt sweep grid (0.01 = 1 point for LLaVA, 0.001 for Qwen) and how far below the best
    neuron it goes; `max_new_tokens`: the model baseline's generation budget (paper: 128);
    `store_dtype`: how cached activations are stored.
    """

    token: str = "first"
    alpha: float = 0.0
    metric: str = "accuracy"
    step: float = 0.01
    depth: float = 0.03
    batch_size: int = 8
    max_new_tokens: int = 128
    seed: int = 0
    store_dtype: str = "float16"
    progress: bool = False

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise DataError(f"metric {self.metric!r} is not one of {', '.join(METRICS)}")
        if self.token not in ("first", "last"):
            raise DataError(f"token {self.token!r} is not first or last")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise DataError("batch_size and max_new_tokens must be positive")


# ----------------------------------------------------------------------------- results
@dataclass
class ExperimentResult:
    """One experiment's table: `rows` of plain values, shown in `columns` order.

    Columns named in `percent` hold fractions in [0, 1] and print as percentages (paper style);
    the JSON keeps the raw fractions. `figures` are the plots written (PNG), `files` what
    `write` wrote.
    """

    name: str
    title: str
    paper: str
    columns: list[str]
    rows: list[dict[str, Any]]
    percent: tuple[str, ...] = METRIC_COLUMNS
    meta: dict[str, Any] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def cell(self, row: dict[str, Any], col: str) -> str:
        """The display string of one cell."""
        v = row.get(col)
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            if col in self.percent:
                return f"{100 * v:.1f}"
            return f"{v:.4g}"
        return str(v)

    @staticmethod
    def header(col: str) -> str:
        """The display name of a column (paper style: Acc., Prec., Recall, F1, L*)."""
        return HEADERS.get(col, col)

    def to_markdown(self) -> str:
        lines = [f"## {self.title}", "", f"Paper: {self.paper}.", ""]
        lines.append("| " + " | ".join(self.header(c) for c in self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        for r in self.rows:
            lines.append("| " + " | ".join(self.cell(r, c) for c in self.columns) + " |")
        if any(c in self.percent for c in self.columns):
            lines += ["", "Metrics in %."]
        for fig in self.figures:
            lines += ["", f"![{self.name}]({fig.name})"]
        notes = self.meta.get("notes")
        if notes:
            lines += [""] + [f"- {n}" for n in notes]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "paper": self.paper, "columns": self.columns,
                "rows": self.rows, "meta": self.meta, "figures": [f.name for f in self.figures]}

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write `<name>.json` and `<name>.md` into `out_dir`; return both paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        js, md = out / RESULT_JSON.format(name=self.name), out / RESULT_MD.format(name=self.name)
        js.write_text(json.dumps(self.to_dict(), indent=1, default=_jsonable) + "\n", encoding="utf-8")
        md.write_text(self.to_markdown(), encoding="utf-8")
        self.files = [js, md, *self.figures]
        return [js, md]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Tensor):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def finish(result: ExperimentResult, out_dir: str | Path | None) -> ExperimentResult:
    """Write the result when an output folder is given; return it."""
    if out_dir is not None:
        result.write(out_dir)
    return result


def metric_row(preds: Tensor | Sequence[int], labels: Tensor | Sequence[int], /, **cols: Any) -> dict[str, Any]:
    """A table row: `cols` + accuracy, precision, recall, F1, yes-ratio and n of `preds` vs `labels`."""
    m = binary_metrics(preds, labels)
    return {**cols, **{k: m[k] for k in METRIC_COLUMNS}, "n": m["n"]}


def labels_of(samples: Sequence[Sample]) -> Tensor:
    return torch.tensor([s.y for s in samples], dtype=torch.long)


# ----------------------------------------------------------------------------- plotting
def require_matplotlib(experiment: str) -> None:
    """Raise a clear error naming the pip extra when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SuperNeuronsError(f"the plot of experiment {experiment!r} needs matplotlib: {REPORT_EXTRA} "
                                "(or pass plot=False / --no-plot)") from None


def new_figure(width: float, height: float, ncols: int = 1, nrows: int = 1) -> tuple[Any, Any]:
    """A matplotlib `Figure` (no pyplot, no global backend state) and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


# ----------------------------------------------------------------------------- store views
class StoreView:
    """A row subset of an activation store, readable wherever a store is (scoring, `fit_classifier`).

    `rows` are sample positions in `store`; reads slice the store's tensors, so a probe-size
    sweep scores subsets of one capture instead of capturing each subset again.
    """

    def __init__(self, store: Any, rows: Sequence[int]) -> None:
        self.store = store
        self.rows = torch.as_tensor(list(rows), dtype=torch.long)
        if self.rows.numel() == 0:
            raise DataError("a store view needs at least one sample row")
        self.ids = [store.ids[i] for i in self.rows.tolist()]
        self.labels = store.labels[self.rows]
        self.layers = list(store.layers)
        self.hidden_size = store.hidden_size
        self.dtype = store.dtype
        self.num_samples = int(self.rows.numel())
        m = dict(store.manifest)
        m.update(ids=self.ids, labels=[m["labels"][i] for i in self.rows.tolist()], num_samples=self.num_samples)
        self.manifest = m

    def read(self, layers: Sequence[int] | None = None) -> Tensor:
        return self.store.read(layers)[self.rows]

    def iter_layer_chunks(self, chunk_layers: int) -> Iterator[tuple[list[int], Tensor]]:
        for ids, x in self.store.iter_layer_chunks(chunk_layers):
            yield ids, x[self.rows]


def sn_activations(clf: SuperNeuronClassifier, store: Any) -> Tensor:
    """float32 [N, K]: the classifier's SN columns read from a store captured at the same token."""
    if store.manifest.get("token") != clf.token:
        raise DataError(f"the store holds token {store.manifest.get('token')!r} but the SNs were found at "
                        f"{clf.token!r}; capture the validation set at the same token")
    needed = clf.layers_needed
    acts = store.read(needed)
    pos = torch.tensor([needed.index(int(v)) for v in clf.sns.layers])
    return acts[:, pos, clf.sns.neurons].float()


def sn_predictions(clf: SuperNeuronClassifier, store: Any, aggregation: str | None = None) -> Tensor:
    """LongTensor[N] of 1/0 answers of the SNs on a store's samples (Alg. 2 on stored activations)."""
    return clf.predict_from_acts(sn_activations(clf, store), aggregation).preds


def sn_row(fit: FitResult, store: Any, labels: Tensor, **cols: Any) -> dict[str, Any]:
    """A table row for fitted SNs answering a store: metrics, method "SNs (<aggregation>)", SNt, K, L*."""
    clf = fit.classifier
    preds = sn_predictions(clf, store)
    return metric_row(preds, labels, **{"method": f"SNs ({clf.aggregation})", **cols}, snt=clf.sns.snt,
                      k=clf.sns.k, exit_layer=clf.exit_layer)


# ----------------------------------------------------------------------------- workspace
def _image_key(sample: Sample) -> str:
    from PIL import Image

    if isinstance(sample.image, Image.Image):
        return "pil:" + hashlib.sha1(sample.image.tobytes()).hexdigest()
    return str(Path(sample.image).resolve())


def samples_key(samples: Sequence[Sample], *extra: Any) -> str:
    """A content hash of samples (id, question, image, label) and `extra` values."""
    h = hashlib.sha1()
    for s in samples:
        h.update(json.dumps([s.id, s.question, _image_key(s), s.label]).encode())
    h.update(json.dumps([str(e) for e in extra]).encode())
    return h.hexdigest()[:20]


@dataclass
class ModelRun:
    """The model's generated answers to a sample list, POPE-parsed (`preds`: 1/0 per sample)."""

    preds: list[int]
    texts: list[str]
    seconds: float

    @property
    def seconds_per_sample(self) -> float:
        return self.seconds / max(1, len(self.preds))


class Workspace:
    """A model + options + a cache folder shared by experiments (see the module docstring).

    With `cache_dir=None` a temporary folder is used and removed by `close()` (or on leaving a
    `with` block).
    """

    def __init__(self, vlm: VLM, options: ExperimentOptions | None = None, cache_dir: str | Path | None = None):
        self.vlm = vlm
        self.options = options or ExperimentOptions()
        self._tmp = None if cache_dir is not None else tempfile.mkdtemp(prefix="superneurons-exp-")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path(self._tmp)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._answers: dict[str, ModelRun] = {}

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _model_key(self) -> list[Any]:
        return [self.vlm.fingerprint.get("config_hash"), self.vlm.prompt_template, str(self.vlm.dtype),
                self.vlm.fingerprint.get("weights")]

    def store(self, samples: Sequence[Sample], token: str | None = None) -> ActivationStore:
        """The activation store of `samples` (all layers) at `token`, captured once and cached."""
        from superneurons.store import probe

        token = token or self.options.token
        key = samples_key(samples, *self._model_key(), token, self.options.max_new_tokens, self.options.store_dtype)
        out = self.cache_dir / STORE_DIR.format(token=token, key=key)
        return probe(self.vlm, list(samples), out, token=token, dtype=self.options.store_dtype,
                     batch_size=self.options.batch_size, progress=self.options.progress,
                     max_new_tokens=self.options.max_new_tokens if token == "last" else None,
                     require_labels=False)

    def model_answers(self, samples: Sequence[Sample]) -> ModelRun:
        """The model's greedy answers (POPE parser, paper Sec. 4.2), generated once and cached."""
        from superneurons.baselines import generate_answers, parse_answers

        key = samples_key(samples, *self._model_key(), self.options.max_new_tokens, "generate")
        if key in self._answers:
            return self._answers[key]
        path = self.cache_dir / ANSWERS_FILE.format(key=key)
        if path.is_file():
            d = json.loads(path.read_text(encoding="utf-8"))
            run = ModelRun(preds=list(d["preds"]), texts=list(d["texts"]), seconds=float(d["seconds"]))
        else:
            t0 = time.perf_counter()
            texts = generate_answers(self.vlm, list(samples), max_new_tokens=self.options.max_new_tokens,
                                     batch_size=self.options.batch_size)
            run = ModelRun(preds=parse_answers(texts, "pope"), texts=texts, seconds=time.perf_counter() - t0)
            path.write_text(json.dumps({"ids": [s.id for s in samples], "preds": run.preds, "texts": run.texts,
                                        "seconds": run.seconds}) + "\n", encoding="utf-8")
        self._answers[key] = run
        return run

    def fit(self, source: Any, metric: str | None = None, aggregation: str = "mean",
            max_layer: int | None = None) -> FitResult:
        """Alg. 1 with the SNt sweep (`fit_classifier`) on a store or `StoreView`."""
        from superneurons.classifier import fit_classifier

        o = self.options
        return fit_classifier(source, metric=metric or o.metric, alpha=o.alpha, aggregation=aggregation,
                              step=o.step, depth=o.depth, max_layer=max_layer)

    def fit_both(self, source: Any, metric: str | None = None) -> dict[str, FitResult]:
        """`fit` once per aggregation (mean, vote): each picks its own SNt on the probing set."""
        return {how: self.fit(source, metric=metric, aggregation=how) for how in AGGREGATIONS}

    def sn_rows(self, probe_source: Any, val_store: Any, labels: Tensor, metric: str | None = None,
                **cols: Any) -> list[dict[str, Any]]:
        """Fit SNs on `probe_source` for each aggregation and score them on `val_store`: two rows
        ("SNs (mean)", "SNs (vote)") with the metrics, SNt, K and L*."""
        return [sn_row(fit, val_store, labels, **cols) for fit in self.fit_both(probe_source, metric).values()]

    def model_row(self, samples: Sequence[Sample], **cols: Any) -> dict[str, Any]:
        """The model baseline's row on `samples` (generation + POPE parser)."""
        run = self.model_answers(samples)
        return metric_row(run.preds, labels_of(samples), **cols, method="model",
                          seconds_per_sample=run.seconds_per_sample)
