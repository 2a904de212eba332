"""The `token` experiment: SNs from the first vs the last token (paper Tab. 6).

"first" is the last prompt position, the state that produces the first answer token: the forward
can stop after the deepest SN layer L*. "last" is the final token of the model's greedy answer
(its EOS, or the last of max_new_tokens): the whole answer must be generated first. For each, SNs
are found on the probing set (mean and vote), then answer the validation set from a fresh capture
of their layers only (early exit at L* for the first token), timed per sample, beside the model's
generation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from superneurons.activations.extract import capture
from superneurons.errors import DataError
from superneurons.experiments._common import Dataset, ExperimentResult, finish, labels_of, metric_row
from superneurons.experiments.workspace import Workspace

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.inference.classifier import SuperNeuronClassifier

TOKENS: tuple[str, ...] = ("first", "last")


def answer(ws: Workspace, clf: SuperNeuronClassifier, samples: Sequence[Sample]) -> Tensor:
    """The classifier's answers from a fresh capture (what a user's inference runs, timed by the caller):
    SN layers only, stopping after L* for the first token; for the last token, generation with the
    same budget as the probing store (`max_new_tokens`)."""
    first = clf.token == "first"
    acts = capture(ws.vlm, samples, token=clf.token, layers=clf.layers_needed,
                   exit_layer=clf.exit_layer if first else None, batch_size=ws.options.batch_size,
                   progress=False, max_new_tokens=ws.options.max_new_tokens)
    return clf.predict_from_acts(clf.sns.gather(acts)).preds


def run(ws: Workspace, datasets: Sequence[Dataset], out_dir: str | Path | None = None,
        tokens: Sequence[str] = TOKENS) -> ExperimentResult:
    """L*, metrics and seconds per sample of SNs at each token position, and of the model."""
    bad = [t for t in tokens if t not in TOKENS]
    if bad or not tokens:
        raise DataError(f"token(s) {bad or list(tokens)} not valid; choose from {', '.join(TOKENS)}")
    o = ws.options
    rows: list[dict[str, Any]] = []
    for ds in datasets:
        probe, val = ds.need("probe", "token"), ds.need("val", "token")
        y = labels_of(val)
        model = ws.model_row(val, dataset=ds.name, token=None, early_exit=False)
        rows.append(model)
        for tok in tokens:
            for how, fit in ws.fit_both(ws.store(probe, token=tok)).items():
                clf = fit.classifier
                answer(ws, clf, val[:o.batch_size])  # warm-up, not timed
                t0 = time.perf_counter()
                preds = answer(ws, clf, val)
                sec = (time.perf_counter() - t0) / len(val)
                rows.append(metric_row(preds, y, dataset=ds.name, token=tok, method=f"SNs ({how})",
                                       exit_layer=clf.exit_layer, early_exit=tok == "first", k=clf.sns.k,
                                       seconds_per_sample=sec, speedup=model["seconds_per_sample"] / sec))
    result = ExperimentResult(
        name="token", title="Token position for SN discovery: first vs last", paper="Tab. 6",
        columns=["dataset", "token", "method", "exit_layer", "early_exit", "accuracy", "precision", "recall", "f1",
                 "k", "seconds_per_sample", "speedup"],
        rows=rows, meta={"model": ws.vlm.name_or_path, "num_layers": ws.vlm.num_layers, "options": vars(o),
                         "notes": ["seconds_per_sample: wall clock of answering the validation set, divided by N; "
                                   "the model row is greedy generation (max_new_tokens="
                                   f"{o.max_new_tokens}); speedup = model time / SN time; one untimed warm-up batch first.",
                                   "L*: the deepest SN layer; with the last token the whole answer is "
                                   "generated first, so the forward cannot stop there."]})
    return finish(result, out_dir)
