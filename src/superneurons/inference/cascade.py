"""Cascade inference: answer from the Super Neurons when they are sure, from the model when not.

Beyond the paper (Alg. 2 stops every forward at L*): one prefill per batch runs through a
`LayerTrace` that stops after L*; the SNs give each sample a score s in [0, 1]. A sample whose
|s - 0.5| < `margin` is *deferred*: the same forward continues from the stopped layer-L* state
through the layers above (layers <= L* and the vision tower are not run again) to the final norm
and LM head, and the model's first-token answer decides (yes vs no logits pooled over the
tokenizer's yes/no variants with logsumexp, `VLM.yes_no_margin`, as the first-token baseline).

- SN score s: with the classifier's `vote`/`fraction` aggregation, the share of SNs voting yes.
  With `mean`, the calibrated mean: s = sigmoid(mean_k m_k / T), m_k = rule_k (H_k - alpha_k),
  with a temperature T fitted on the probing set (`calibrate_cascade`, Platt scaling without
  bias; kept in `clf.meta["cascade_temperature"]`, saved with the classifier). Without T it falls
  back to the scale-free yes share of the total margin, sum_k max(m_k, 0) / sum_k |m_k|, whose
  unanimous samples (s = 0 or 1) are deferred only at margin 0.5. Either way s > 0.5 exactly when
  the classifier answers yes: the SN path answers as the classifier does.
- `margin=0` never defers (SNs only); `margin=0.5` defers every sample, unanimous ones included
  (the model only). Each prediction records its path ("sn" or "model"), the decoder layers it
  used (L*+1 or all) and its share of the measured wall time.
- Deferred rows of a mixed batch are resumed alone: the stopped hidden state and the layer call
  arguments (attention mask, position ids / embeddings, cache positions) are sliced row-wise.
  Rows do not interact in a decoder layer, so this equals resuming the whole batch (see the tests);
  when an argument cannot be sliced safely, the whole batch is resumed and the rows picked.
- Resuming is `superneurons.activations.trace`: the family's `LayerReplay` re-adds what the
  language model puts between layers (Qwen3-VL's DeepStack features), so it is exact for every
  L*. Refused there (`check_resumable`): models loaded truncated, and models whose upper layers use
  another attention type than layer L* (sliding-window layers). `verify_resume` checks any other
  family against a plain forward (`superneurons.evaluation.cascade_sweep` does so first).

    >>> out = cascade_predict(clf, vlm, samples, margin=0.2)                 # doctest: +SKIP
    >>> out.paths[:3], out.deferral_rate, out.avg_layers                     # doctest: +SKIP
    (['sn', 'model', 'sn'], 0.18, 9.9)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from superneurons.activations.prefill import prepared_batches
from superneurons.activations.store import ActivationStore
from superneurons.activations.trace import LayerTrace, check_resumable, resume
from superneurons.constants import AGGREGATIONS, Aggregation
from superneurons.errors import DataError
from superneurons.inference.aggregation import aggregate, sn_margins, sn_votes
from superneurons.inference.classifier import ClassifierOutput
from superneurons.scoring.metrics import binary_metrics
from superneurons.utils.progress import progress as progress_bar

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.inference.classifier import SuperNeuronClassifier
    from superneurons.models.base import VLM

SN_PATH = "sn"
MODEL_PATH = "model"
TEMPERATURE_KEY = "cascade_temperature"  # in SuperNeuronClassifier.meta


# ---- output ---------------------------------------------------------------------------------
@dataclass
class CascadeOutput(ClassifierOutput):
    """`ClassifierOutput` plus how each sample was answered.

    `preds` LongTensor[N] (the final answers), `scores` float32 [N] (the SN score s in [0, 1]),
    `acts` float32 [N, K]; `sn_preds` LongTensor[N] (what the SNs alone answered); `deferred`
    BoolTensor[N]; `model_margins` float32 [N] (yes - no pooled first-token logit, NaN where not
    deferred); `layers_used` LongTensor[N]; `seconds` float64 [N] (each sample's share of its
    batch's prefill time, plus its share of the resume time when deferred).
    """

    sn_preds: Tensor
    deferred: Tensor
    model_margins: Tensor
    layers_used: Tensor
    seconds: Tensor
    margin: float
    exit_layer: int
    num_layers: int
    score_kind: str = "fraction"

    @property
    def paths(self) -> list[str]:
        """"sn" or "model" per sample: which path answered it."""
        return [MODEL_PATH if d else SN_PATH for d in self.deferred.tolist()]

    @property
    def deferral_rate(self) -> float:
        return float(self.deferred.float().mean()) if self.deferred.numel() else 0.0

    @property
    def avg_layers(self) -> float:
        """Average decoder layers run per sample (L*+1 for SN answers, all layers for deferred ones)."""
        return float(self.layers_used.double().mean()) if self.layers_used.numel() else 0.0

    @property
    def total_seconds(self) -> float:
        return float(self.seconds.sum())

    @property
    def time_per_sample(self) -> float:
        return float(self.seconds.mean()) if self.seconds.numel() else 0.0

    def summary(self, labels: Tensor | Sequence[int] | None = None) -> dict[str, Any]:
        """JSON-able: margin, deferral rate, average layers (and share of all layers), time per
        sample; with labels, also accuracy, precision, recall and F1 of the final answers."""
        out: dict[str, Any] = {
            "margin": self.margin, "score": self.score_kind, "n": int(self.preds.numel()), "deferred": int(self.deferred.sum()),
            "deferral_rate": self.deferral_rate, "avg_layers": self.avg_layers,
            "layer_fraction": self.avg_layers / self.num_layers, "exit_layer": self.exit_layer,
            "num_layers": self.num_layers, "time_per_sample": self.time_per_sample,
            "seconds": self.total_seconds,
        }
        if labels is not None:
            m = binary_metrics(self.preds, labels)
            out.update({k: m[k] for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")})
        return out

    def records(self, samples: Sequence[Sample]) -> list[dict[str, Any]]:
        """One JSON-able dict per sample: id, answer, prediction, score, path, layers, seconds."""
        if len(samples) != self.preds.numel():
            raise DataError(f"{len(samples)} samples but {self.preds.numel()} predictions")
        rows = []
        for i, s in enumerate(samples):
            p = int(self.preds[i])
            rec: dict[str, Any] = {"id": s.id, "answer": "yes" if p == 1 else "no", "prediction": p,
                                   "score": float(self.scores[i]), "path": self.paths[i],
                                   "layers": int(self.layers_used[i]), "seconds": float(self.seconds[i])}
            if bool(self.deferred[i]):
                rec["model_margin"] = float(self.model_margins[i])
            if s.label is not None:
                rec["label"] = s.label
            rows.append(rec)
        return rows


# ---- SN score ----------------------------------------------------------------------------------
def cascade_score(acts: Tensor, alpha: float | Tensor = 0.0, rule: Tensor | None = None,
                  aggregation: Aggregation = "mean", temperature: float | None = None) -> Tensor:
    """float32 [N] in [0, 1]: how strongly the SNs say yes (0.5: evenly split).

    `vote`/`fraction`: the share of SNs voting yes. `mean` with a `temperature` T:
    sigmoid(mean_k m_k / T) of the SN margins m_k = rule_k (H_k - alpha_k); without one:
    sum_k max(m_k, 0) / sum_k |m_k| (0.5 when every margin is 0). Both are > 0.5 exactly when
    the mean margin is > 0.
    """
    if aggregation not in AGGREGATIONS:
        raise DataError(f"aggregation {aggregation!r} is not one of {', '.join(AGGREGATIONS)}")
    if aggregation != "mean":
        return sn_votes(acts, alpha, rule).to(torch.float32).mean(dim=1)
    m = sn_margins(acts, alpha, rule)
    if temperature is not None:
        return torch.sigmoid(m.mean(dim=1) / _check_temperature(temperature)).to(torch.float32)
    total = m.abs().sum(dim=1)
    yes = m.clamp(min=0).sum(dim=1)
    s = torch.where(total > 0, yes / torch.where(total > 0, total, torch.ones_like(total)), torch.full_like(total, 0.5))
    return s.to(torch.float32)


def defer_mask(scores: Tensor, margin: float) -> Tensor:
    """BoolTensor[N]: |s - 0.5| < margin; margin 0.5 defers everything (the model only)."""
    check_margin(margin)
    if margin >= 0.5:
        return torch.ones_like(scores, dtype=torch.bool)
    return (scores.double() - 0.5).abs() < margin


def check_margin(margin: float) -> float:
    """`margin` as a float in [0, 0.5], else a DataError."""
    try:
        m = float(margin)
    except (TypeError, ValueError):
        raise DataError(f"cascade margin {margin!r} is not a number; use a value in [0, 0.5]") from None
    if not 0.0 <= m <= 0.5:
        raise DataError(f"cascade margin {m} is outside [0, 0.5]: 0 answers from the SNs only, "
                        "0.5 defers every sample to the model")
    return m


def _check_temperature(t: float) -> float:
    t = float(t)
    if not (t > 0 and t < float("inf")):
        raise DataError(f"cascade temperature {t} must be a positive number (fit one with calibrate_cascade)")
    return t


def fit_temperature(mean_margins: Tensor, labels: Tensor | Sequence[int]) -> float:
    """The T > 0 whose sigmoid(mean_margin / T) has the lowest log loss on `labels` (1/0): Platt
    scaling with the bias fixed at 0, so the calibrated score keeps the classifier's threshold.

    A grid of 481 values spanning 10^-4..10^4 times the median |margin|, searched at once.
    """
    m = torch.as_tensor(mean_margins, dtype=torch.float64).reshape(-1)
    y = torch.as_tensor(labels, dtype=torch.float64).reshape(-1)
    if m.numel() == 0 or m.shape != y.shape:
        raise DataError(f"fit_temperature needs one label per margin, got {m.numel()} margins, {y.numel()} labels")
    if bool(((y != 0) & (y != 1)).any()):
        raise DataError("fit_temperature needs labels 1 (yes) / 0 (no); drop unlabelled samples")
    scale = float(m.abs().median()) or float(m.abs().mean()) or 1.0
    ts = scale * torch.logspace(-4, 4, 481, dtype=torch.float64)
    z = m[None, :] / ts[:, None]
    loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y.expand_as(z), reduction="none").mean(dim=1)
    return float(ts[int(loss.argmin())])


def calibrate_cascade(clf: SuperNeuronClassifier, store: Any) -> float:
    """Fit the temperature of the calibrated-mean score on an activation store (the probing set the
    SNs were selected on), keep it in `clf.meta["cascade_temperature"]` (saved by `clf.save`) and
    return it. `store` is an `ActivationStore` or its folder; it must hold the SN layers."""
    if not hasattr(store, "read"):
        store = ActivationStore(store)
    acts = clf.sns.gather(store.read(clf.layers_needed)).float()
    keep = store.labels >= 0
    if not bool(keep.any()):
        raise DataError(f"{store!r} has no labelled sample to calibrate on; probe labelled data")
    mean = sn_margins(acts[keep], clf.sns.alpha, clf.sns.rule).mean(dim=1)
    t = fit_temperature(mean, store.labels[keep])
    clf.meta[TEMPERATURE_KEY] = t
    return t


def resolve_score(clf: SuperNeuronClassifier, aggregation: Aggregation | None = None,
                  temperature: float | None = None) -> tuple[str, float | None, str]:
    """(aggregation, temperature or None, a description of the score) for a cascade run: the
    temperature is the one given, else the classifier's calibrated one (mean aggregation only)."""
    agg = aggregation or clf.aggregation
    if agg not in AGGREGATIONS:
        raise DataError(f"aggregation {agg!r} is not one of {', '.join(AGGREGATIONS)}")
    if agg != "mean":
        return agg, None, "fraction of SNs voting yes"
    t = temperature if temperature is not None else clf.meta.get(TEMPERATURE_KEY)
    if t is None:
        return agg, None, "yes share of the SN margin (uncalibrated)"
    t = _check_temperature(t)
    return agg, t, f"calibrated mean, T={t:.4g}"


# ---- prediction ------------------------------------------------------------------------------
def check_cascade(clf: SuperNeuronClassifier, vlm: VLM, samples: Sequence[Sample], strict: bool) -> None:
    """Raise unless `clf` can run a cascade on `vlm`: token "first", a compatible and resumable model."""
    if not samples:
        raise DataError("cascade_predict() got no samples; pass at least one Sample")
    if clf.token != "first":
        raise DataError(f"the classifier reads the {clf.token!r} token; a cascade needs SNs found on the "
                        "'first' token (the prefill it resumes); probe with --token first")
    clf.check_compatible(vlm, strict=strict)
    check_resumable(vlm, clf.exit_layer)


def cascade_predict(clf: SuperNeuronClassifier, vlm: VLM, samples: Sequence[Sample], margin: float,
                    batch_size: int = 8, aggregation: Aggregation | None = None, strict: bool = True,
                    progress: bool = False, slice_rows: bool = True, *,
                    temperature: float | None = None) -> CascadeOutput:
    """Answer each sample from its SNs, deferring those with |s - 0.5| < `margin` to the model.

    One prefill per batch stops after L*; deferred rows resume from there (see the module doc).
    `aggregation` overrides the classifier's (it sets both the SN answer and the score s);
    `temperature` overrides the calibrated one of a mean classifier (`calibrate_cascade`).
    `slice_rows=False` resumes whole batches and picks the deferred rows (for checking).
    """
    margin = check_margin(margin)
    check_cascade(clf, vlm, samples, strict)
    agg, temp, kind = resolve_score(clf, aggregation, temperature)
    if batch_size < 1:
        raise DataError(f"batch_size={batch_size}; use a positive batch size")
    n, full = len(samples), vlm.num_layers
    acts = torch.empty(n, clf.sns.k)
    model_margins = torch.full((n,), float("nan"))
    deferred = torch.zeros(n, dtype=torch.bool)
    seconds = torch.zeros(n, dtype=torch.float64)
    vlm.yes_no_token_ids()  # the tokenizer, once, before a worker thread uses it
    with progress_bar("cascade", n, enabled=progress) as advance, \
            closing(prepared_batches(vlm, samples, batch_size)) as ready:
        t0 = time.perf_counter()  # per batch: waiting for its (overlapped) preparation, the forward, the rest
        for lo, (_, batch) in zip(range(0, n, batch_size), ready, strict=True):
            sl = slice(lo, min(n, lo + batch_size))
            with torch.inference_mode(), LayerTrace(vlm.decoder_layers, clf.layers_needed, -1,
                                                    stop_after=clf.exit_layer, replay=vlm.layer_replay()) as trace:
                trace.run(vlm.model, **batch, use_cache=False)
            a = clf.sns.gather(trace.stacked()).float().cpu()
            s = cascade_score(a, clf.sns.alpha, clf.sns.rule, agg, temp)
            d = defer_mask(s, margin)
            t1 = time.perf_counter()
            seconds[sl] = (t1 - t0) / a.shape[0]
            acts[sl], deferred[sl] = a, d
            if d.any():
                rows = d.nonzero()[:, 0]
                logits = resume(vlm, trace, rows, slice_rows=slice_rows)
                model_margins[sl.start + rows] = vlm.yes_no_margin(logits).cpu()
                seconds[sl.start + rows] += (time.perf_counter() - t1) / rows.numel()
            del trace
            advance(a.shape[0])
            t0 = time.perf_counter()
    sn_preds, _ = aggregate(acts, agg, clf.sns.alpha, clf.sns.rule)
    scores = cascade_score(acts, clf.sns.alpha, clf.sns.rule, agg, temp)
    preds = torch.where(deferred, (model_margins > 0).long(), sn_preds)
    layers_used = torch.where(deferred, torch.tensor(full), torch.tensor(clf.exit_layer + 1)).long()
    return CascadeOutput(preds=preds, scores=scores, acts=acts, sn_preds=sn_preds, deferred=deferred,
                         model_margins=model_margins, layers_used=layers_used, seconds=seconds,
                         margin=margin, exit_layer=clf.exit_layer, num_layers=full, score_kind=kind)
