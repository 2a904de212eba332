"""A workspace that runs the expensive model steps once and caches them, shared by experiments.

`Workspace(vlm, options, cache_dir)` caches on disk, keyed by the model (config hash and weight
sketch of its fingerprint, prompt template, dtype) and the exact samples (id, question, image,
label): activation stores (`store`, written by `superneurons.activations.probing`, so a cached store is
checked and resumed like any other) and the model's generated answers (`model_answers`,
POPE-parsed, with their wall-clock time). Several experiments on one workspace share both.
`fit` runs Alg. 1 (`superneurons.inference.fit_classifier`) on a store or a row subset of one
(`StoreView`); `sn_predictions` answers a validation store with the fitted SNs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from superneurons.activations.probing import probe
from superneurons.constants import ANSWER_AGGREGATIONS, MANIFEST_NAME, Aggregation, Metric, Token
from superneurons.errors import DataError
from superneurons.evaluation.baselines import generate_answers, parse_answers
from superneurons.experiments._common import ExperimentOptions, labels_of, metric_row
from superneurons.inference.classifier import fit_classifier

if TYPE_CHECKING:
    from superneurons.activations.store import ActivationStore
    from superneurons.data.samples import Sample
    from superneurons.inference.classifier import FitResult, SuperNeuronClassifier
    from superneurons.models.base import VLM

ANSWERS_FILE = "answers-{key}.json"
STORE_DIR = "acts-{token}-{key}"


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
    return clf.sns.gather(store.read(clf.layers_needed)).float()


def sn_predictions(clf: SuperNeuronClassifier, store: Any, aggregation: Aggregation | None = None) -> Tensor:
    """LongTensor[N] of 1/0 answers of the SNs on a store's samples (Alg. 2 on stored activations)."""
    return clf.predict_from_acts(sn_activations(clf, store), aggregation).preds


def sn_row(fit: FitResult, store: Any, labels: Tensor, **cols: Any) -> dict[str, Any]:
    """A table row for fitted SNs answering a store: metrics, method "SNs (<aggregation>)", SNt, K, L*."""
    clf = fit.classifier
    preds = sn_predictions(clf, store)
    return metric_row(preds, labels, **{"method": f"SNs ({clf.aggregation})", **cols}, snt=clf.sns.snt,
                      k=clf.sns.k, exit_layer=clf.exit_layer)


def image_key(sample: Sample) -> str:
    """What identifies a sample's image in cache keys: its resolved path, or a hash of an in-memory image's pixels."""
    from PIL import Image

    if isinstance(sample.image, Image.Image):
        return "pil:" + hashlib.sha1(sample.image.tobytes()).hexdigest()
    return str(Path(sample.image).resolve())


def samples_key(samples: Sequence[Sample], *extra: Any) -> str:
    """A content hash of samples (id, question, image, label) and `extra` values."""
    h = hashlib.sha1()
    for s in samples:
        h.update(json.dumps([s.id, s.question, image_key(s), s.label]).encode())
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
    `with` block). `rank_split=False` captures in this process alone even under a multi-process
    launcher (a driver whose other ranks have already left).
    """

    def __init__(self, vlm: VLM, options: ExperimentOptions | None = None, cache_dir: str | Path | None = None):
        self.vlm = vlm
        self.options = options or ExperimentOptions()
        self._tmp = None if cache_dir is not None else tempfile.mkdtemp(prefix="superneurons-exp-")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path(self._tmp)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._answers: dict[str, ModelRun] = {}
        self.rank_split = True

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def model_key(self) -> list[Any]:
        """What identifies the model in cache keys: config hash, prompt template, dtype, weight sketch."""
        return [self.vlm.fingerprint.get("config_hash"), self.vlm.prompt_template, str(self.vlm.dtype),
                self.vlm.fingerprint.get("weights")]

    def store(self, samples: Sequence[Sample], token: Token | None = None) -> ActivationStore:
        """The activation store of `samples` (all layers) at `token`, captured once and cached."""
        token = token or self.options.token
        key = samples_key(samples, *self.model_key(), token, self.options.max_new_tokens, self.options.store_dtype)
        out = self.cache_dir / STORE_DIR.format(token=token, key=key)
        if (out / MANIFEST_NAME).is_file():  # finished before (by this process or every rank of a launcher)
            from superneurons.activations.store import ActivationStore
            from superneurons.errors import StoreError

            try:
                return ActivationStore(out)
            except StoreError:  # unfinished: resume it below
                pass
        return probe(self.vlm, list(samples), out, token=token, dtype=self.options.store_dtype,
                     batch_size=self.options.batch_size, progress=self.options.progress,
                     max_new_tokens=self.options.max_new_tokens, require_labels=False, rank_split=self.rank_split)

    def model_answers(self, samples: Sequence[Sample]) -> ModelRun:
        """The model's greedy answers (POPE parser, paper Sec. 4.2), generated once and cached."""
        key = samples_key(samples, *self.model_key(), self.options.max_new_tokens, "generate")
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

    def fit(self, source: Any, metric: Metric | None = None, aggregation: Aggregation = "mean",
            max_layer: int | None = None) -> FitResult:
        """Alg. 1 with the SNt sweep (`fit_classifier`) on a store or `StoreView`."""
        o = self.options
        return fit_classifier(source, metric=metric or o.metric, alpha=o.alpha, aggregation=aggregation,
                              step=o.step, depth=o.depth, max_layer=max_layer)

    def fit_both(self, source: Any, metric: Metric | None = None) -> dict[str, FitResult]:
        """`fit` once per aggregation (mean, vote): each picks its own SNt on the probing set."""
        return {how: self.fit(source, metric=metric, aggregation=how) for how in ANSWER_AGGREGATIONS}

    def sn_rows(self, probe_source: Any, val_store: Any, labels: Tensor, metric: Metric | None = None,
                **cols: Any) -> list[dict[str, Any]]:
        """Fit SNs on `probe_source` for each aggregation and score them on `val_store`: two rows
        ("SNs (mean)", "SNs (vote)") with the metrics, SNt, K and L*."""
        return [sn_row(fit, val_store, labels, **cols) for fit in self.fit_both(probe_source, metric).values()]

    def model_row(self, samples: Sequence[Sample], **cols: Any) -> dict[str, Any]:
        """The model baseline's row on `samples` (generation + POPE parser)."""
        run = self.model_answers(samples)
        return metric_row(run.preds, labels_of(samples), **cols, method="model",
                          seconds_per_sample=run.seconds_per_sample)
