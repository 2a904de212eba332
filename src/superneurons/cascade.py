"""Cascade inference: answer from the Super Neurons when they are sure, from the model when not.

Beyond the paper (Alg. 2 stops every forward at L*): one prefill per batch runs through a
`LayerTrace` that stops after L*; the SNs give each sample a score s in [0, 1]. A sample whose
|s - 0.5| < `margin` is *deferred*: the same forward continues from the stopped layer-L* state
through the layers above (layers <= L* and the vision tower are not run again) to the final norm
and LM head, and the model's first-token answer decides (yes vs no logits pooled over the
tokenizer's yes/no variants with logsumexp, as `baselines.first_token_margins`).

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
- Qwen3-VL adds DeepStack visual features to the first layers' outputs (after the layer hook
  fires). The cascade records those features from the language model's call and replays them
  while resuming, so resume is exact for every L*, including L* below the last DeepStack layer
  (`capture.resume_forward` alone is exact only from above them).
- Refused (`check_resumable`): models loaded truncated (`load_model(..., max_layer=k)`: no upper
  layers, norm or head), and models whose upper layers use another attention type than layer L*
  (sliding-window layers): the stop layer's mask would be wrong for them. `verify_resume` checks
  any other family against a plain forward (`cascade_sweep` does so first).

    >>> out = cascade_predict(clf, vlm, samples, margin=0.2)                 # doctest: +SKIP
    >>> out.paths[:3], out.deferral_rate, out.avg_layers                     # doctest: +SKIP
    (['sn', 'model', 'sn'], 0.18, 9.9)
    >>> rows = cascade_sweep(clf, vlm, labelled, margins=DEFAULT_MARGINS)    # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from superneurons.aggregation import AGGREGATIONS, aggregate, sn_margins, sn_votes
from superneurons.capture import LayerTrace, _hidden
from superneurons.classifier import ClassifierOutput
from superneurons.errors import DataError, ModelError
from superneurons.metrics import binary_metrics

if TYPE_CHECKING:
    from superneurons.classifier import SuperNeuronClassifier
    from superneurons.data.samples import Sample
    from superneurons.models.base import VLM

SN_PATH = "sn"
MODEL_PATH = "model"
#: margins of `cascade_sweep` / `superneurons cascade-sweep`: 0 (SNs only) to 0.5 (model only).
DEFAULT_MARGINS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(11))
CASCADE_JSON = "cascade_sweep.json"
CASCADE_PLOT = "cascade_sweep.png"
TEMPERATURE_KEY = "cascade_temperature"  # in SuperNeuronClassifier.meta
RESUME_ATOL = 1e-3  # max |logit difference| accepted by `verify_resume` (float32 tiny models: ~1e-6)


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
                  aggregation: str = "mean", temperature: float | None = None) -> Tensor:
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
        from superneurons.store import ActivationStore

        store = ActivationStore(store)
    needed = clf.layers_needed
    col = torch.tensor([needed.index(int(v)) for v in clf.sns.layers])
    acts = store.read(needed)[:, col, clf.sns.neurons].float()
    keep = store.labels >= 0
    if not bool(keep.any()):
        raise DataError(f"{store!r} has no labelled sample to calibrate on; probe labelled data")
    mean = sn_margins(acts[keep], clf.sns.alpha, clf.sns.rule).mean(dim=1)
    t = fit_temperature(mean, store.labels[keep])
    clf.meta[TEMPERATURE_KEY] = t
    return t


def resolve_score(clf: SuperNeuronClassifier, aggregation: str | None = None,
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


# ---- resuming the stopped forward --------------------------------------------------------------
class _DeepStack:
    """Records the DeepStack inputs (Qwen3-VL) the language model is called with, to replay them.

    A forward pre-hook on the language model keeps `visual_pos_masks` [B, S] and
    `deepstack_visual_embeds` (one [n_visual, D] tensor per early layer); for other families
    both stay None and `apply` is the identity.
    """

    def __init__(self, lm: torch.nn.Module) -> None:
        self.lm = lm
        self.mask: Tensor | None = None
        self.embeds: list[Tensor] | None = None
        self._handle: Any = None

    def _hook(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.mask = kwargs.get("visual_pos_masks")
        self.embeds = kwargs.get("deepstack_visual_embeds")

    def __enter__(self) -> _DeepStack:
        self._handle = self.lm.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def rows(self, idx: Tensor) -> _DeepStack:
        """The DeepStack inputs of batch rows `idx` (ascending) only."""
        out = _DeepStack(self.lm)
        if self.mask is None or not self.embeds:
            out.mask, out.embeds = self.mask, self.embeds
            return out
        idx = idx.to(self.mask.device)
        owner = self.mask.nonzero()[:, 0]  # batch row of each visual position, in row-major order
        keep = torch.isin(owner, idx)
        out.mask = self.mask[idx]
        out.embeds = [e[keep.to(e.device)] for e in self.embeds]
        return out

    def apply(self, h: Tensor, layer_idx: int) -> Tensor:
        """What the language model does after decoder layer `layer_idx`: add its DeepStack features."""
        if self.mask is None or not self.embeds or layer_idx >= len(self.embeds):
            return h
        process = getattr(self.lm, "_deepstack_process", None)
        if process is None:
            raise ModelError(f"{type(self.lm).__name__} takes DeepStack features but has no _deepstack_process; "
                             "cascade resume does not know how to replay them for this model")
        return process(h, self.mask, self.embeds[layer_idx])


_UNSLICEABLE = object()


def _slice_value(name: str, v: Any, idx: Tensor, batch: int) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, Tensor):
        if v.dim() == 0 or name == "cache_position":
            return v
        if name in ("position_ids", "position_embeddings") and v.dim() == (3 if name == "position_ids" else 4):
            return v[:, idx.to(v.device)] if v.shape[1] == batch else _UNSLICEABLE  # mrope: [3|4, B, ...]
        if v.shape[0] == batch:
            return v[idx.to(v.device)]
        return v if v.shape[0] == 1 else _UNSLICEABLE  # broadcast over the batch
    if isinstance(v, (tuple, list)):
        parts = [_slice_value(name, x, idx, batch) for x in v]
        return _UNSLICEABLE if any(p is _UNSLICEABLE for p in parts) else type(v)(parts)
    if isinstance(v, dict):
        d = {k: _slice_value(k, x, idx, batch) for k, x in v.items()}
        return _UNSLICEABLE if any(p is _UNSLICEABLE for p in d.values()) else d
    return _UNSLICEABLE  # a cache object, a flex-attention BlockMask, ...


def slice_layer_kwargs(kwargs: dict[str, Any], idx: Tensor, batch: int) -> dict[str, Any] | None:
    """The decoder-layer call arguments of batch rows `idx` only, or None if one cannot be sliced
    exactly (then resume the whole batch and pick the rows)."""
    out = {k: _slice_value(k, v, idx, batch) for k, v in kwargs.items()}
    return None if any(v is _UNSLICEABLE for v in out.values()) else out


def check_resumable(vlm: VLM, exit_layer: int) -> None:
    """Raise a ModelError if the model cannot finish a forward from `exit_layer`: it was loaded
    truncated (no upper layers, norm or LM head), or its upper layers need other call arguments."""
    if getattr(vlm, "max_layer", None) is not None:
        raise ModelError(f"{vlm.name_or_path!r} was loaded with only layers 0..{vlm.max_layer} (max_layer / "
                         "--truncate); a cascade needs the whole model: load it without max_layer")
    types = getattr(vlm.text_config, "layer_types", None)
    if types and len(set(types[exit_layer:])) > 1:
        raise ModelError(f"layers {exit_layer}..{len(types) - 1} mix attention types {sorted(set(types[exit_layer:]))}: "
                         "a cascade resumes with layer L*'s attention mask, which is wrong for the others; "
                         "use SNs only (no cascade margin) with this model")


def resume_rows(vlm: VLM, trace: LayerTrace, rows: Tensor | None = None,
                deepstack: _DeepStack | None = None, slice_rows: bool = True) -> Tensor:
    """Finish the forward `trace` stopped, for batch `rows` (default all): float32 logits [r, V] at
    the last position (the first answer token). Runs only the layers above the stop layer, the
    final norm and the LM head; with `slice_rows` only the chosen rows go through them."""
    if not trace.stopped or trace.stop_hidden is None or trace.stop_after is None:
        raise ValueError("resume_rows needs a LayerTrace that stopped a forward (stop_after=k)")
    h_all = trace.stop_hidden
    batch = h_all.shape[0]
    idx = torch.arange(batch) if rows is None else rows.to(torch.long).cpu()
    ds = deepstack if deepstack is not None else _DeepStack(vlm.language_model)
    kwargs: dict[str, Any] | None = trace.stop_kwargs
    pick: Tensor | None = None
    if idx.numel() != batch:
        kwargs = slice_layer_kwargs(trace.stop_kwargs, idx, batch) if slice_rows else None
        if kwargs is None:  # resume everything, keep the rows asked for
            kwargs, pick = trace.stop_kwargs, idx
        else:
            h_all, ds = h_all[idx.to(h_all.device)], ds.rows(idx)
    lm = vlm.language_model
    with torch.inference_mode():
        h = ds.apply(h_all, trace.stop_after)
        for i in range(trace.stop_after + 1, vlm.num_layers):
            h = ds.apply(_hidden(vlm.decoder_layers[i](h, **kwargs)), i)
        h = lm.norm(h[:, -1:])
        logits = vlm.model.get_output_embeddings()(h)[:, -1].float()
    return logits if pick is None else logits[pick.to(logits.device)]


def yes_no_margin(logits: Tensor, yes_ids: Sequence[int], no_ids: Sequence[int]) -> Tensor:
    """float32 [B]: logsumexp of yes-token logits minus that of no-token logits (> 0 answers yes)."""
    logits = logits.float()
    return torch.logsumexp(logits[:, list(yes_ids)], dim=1) - torch.logsumexp(logits[:, list(no_ids)], dim=1)


# ---- prediction ------------------------------------------------------------------------------
def _batches(n: int, size: int) -> Iterator[slice]:
    if size < 1:
        raise DataError(f"batch_size={size}; use a positive batch size")
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def _check(clf: SuperNeuronClassifier, vlm: VLM, samples: Sequence[Sample], strict: bool) -> None:
    if not samples:
        raise DataError("cascade_predict() got no samples; pass at least one Sample")
    if clf.token != "first":
        raise DataError(f"the classifier reads the {clf.token!r} token; a cascade needs SNs found on the "
                        "'first' token (the prefill it resumes); probe with --token first")
    clf.check_compatible(vlm, strict=strict)
    check_resumable(vlm, clf.exit_layer)


def cascade_predict(clf: SuperNeuronClassifier, vlm: VLM, samples: Sequence[Sample], margin: float,
                    batch_size: int = 8, aggregation: str | None = None, strict: bool = True,
                    progress: bool = False, slice_rows: bool = True, *,
                    temperature: float | None = None) -> CascadeOutput:
    """Answer each sample from its SNs, deferring those with |s - 0.5| < `margin` to the model.

    One prefill per batch stops after L*; deferred rows resume from there (see the module doc).
    `aggregation` overrides the classifier's (it sets both the SN answer and the score s);
    `temperature` overrides the calibrated one of a mean classifier (`calibrate_cascade`).
    `slice_rows=False` resumes whole batches and picks the deferred rows (for checking).
    """
    margin = check_margin(margin)
    _check(clf, vlm, samples, strict)
    agg, temp, kind = resolve_score(clf, aggregation, temperature)
    needed = clf.layers_needed
    col = torch.tensor([needed.index(int(v)) for v in clf.sns.layers])
    yes_ids, no_ids = vlm.yes_no_token_ids()
    n, full = len(samples), vlm.num_layers
    acts = torch.empty(n, clf.sns.k)
    model_margins = torch.full((n,), float("nan"))
    deferred = torch.zeros(n, dtype=torch.bool)
    seconds = torch.zeros(n, dtype=torch.float64)
    advance = _progress(progress, n)
    try:
        for sl in _batches(n, batch_size):
            t0 = time.perf_counter()
            batch = vlm.prepare(samples[sl])
            with torch.inference_mode(), _DeepStack(vlm.language_model) as ds, \
                    LayerTrace(vlm.decoder_layers, needed, -1, stop_after=clf.exit_layer) as trace:
                trace.run(vlm.model, **batch, use_cache=False)
            a = trace.stacked()[:, col, clf.sns.neurons.to(trace.stop_hidden.device)].float().cpu()
            s = cascade_score(a, clf.sns.alpha, clf.sns.rule, agg, temp)
            d = defer_mask(s, margin)
            t1 = time.perf_counter()
            seconds[sl] = (t1 - t0) / a.shape[0]
            acts[sl], deferred[sl] = a, d
            if d.any():
                rows = d.nonzero()[:, 0]
                logits = resume_rows(vlm, trace, rows, ds, slice_rows=slice_rows)
                model_margins[sl.start + rows] = yes_no_margin(logits, yes_ids, no_ids).cpu()
                seconds[sl.start + rows] += (time.perf_counter() - t1) / rows.numel()
            del trace, ds
            advance(a.shape[0])
    finally:
        advance(None)
    sn_preds, _ = aggregate(acts, agg, clf.sns.alpha, clf.sns.rule)
    scores = cascade_score(acts, clf.sns.alpha, clf.sns.rule, agg, temp)
    preds = torch.where(deferred, (model_margins > 0).long(), sn_preds)
    layers_used = torch.where(deferred, torch.tensor(full), torch.tensor(clf.exit_layer + 1)).long()
    return CascadeOutput(preds=preds, scores=scores, acts=acts, sn_preds=sn_preds, deferred=deferred,
                         model_margins=model_margins, layers_used=layers_used, seconds=seconds,
                         margin=margin, exit_layer=clf.exit_layer, num_layers=full, score_kind=kind)


def _progress(show: bool, total: int) -> Callable[[int | None], None]:
    """A callback advancing a rich progress bar by k samples (None closes it); a no-op if not shown."""
    if not show:
        return lambda k: None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(transient=True, console=Console(stderr=True))
    task = bar.add_task("cascade", total=total)
    bar.start()

    def advance(k: int | None) -> None:
        if k is None:
            bar.stop()
        else:
            bar.advance(task, k)

    return advance


def verify_resume(vlm: VLM, samples: Sequence[Sample], exit_layer: int, atol: float = RESUME_ATOL) -> float:
    """Check on `samples` (one batch) that resuming from `exit_layer` gives the logits of a plain full
    forward at the first answer position; return the max |difference|, raise ModelError above `atol`.

    Cheap insurance for a model family the tests do not cover (it costs one extra forward).
    """
    check_resumable(vlm, exit_layer)
    batch = vlm.prepare(samples)
    with torch.inference_mode():
        ref = vlm.model(**batch, use_cache=False).logits[:, -1].float()
        with _DeepStack(vlm.language_model) as ds, LayerTrace(vlm.decoder_layers, [exit_layer], -1, stop_after=exit_layer) as trace:
            trace.run(vlm.model, **batch, use_cache=False)
    diff = float((resume_rows(vlm, trace, None, ds) - ref).abs().max())
    if not diff <= atol:
        raise ModelError(f"resuming {vlm.name_or_path!r} from layer {exit_layer} differs from a full forward "
                         f"by {diff:.3g} (> {atol}); the cascade does not support this model family")
    return diff


# ---- sweep -------------------------------------------------------------------------------------
def cascade_sweep(clf: SuperNeuronClassifier, vlm: VLM, samples: Sequence[Sample],
                  margins: Sequence[float] = DEFAULT_MARGINS, batch_size: int = 8, aggregation: str | None = None,
                  strict: bool = True, progress: bool = False, verify: bool = True,
                  temperature: float | None = None, repeats: int = 1) -> list[dict[str, Any]]:
    """One row per margin (ascending, with 0 = SNs only and 0.5 = the model only always included):
    margin, score kind, deferral rate, average layers per sample (and share of all layers),
    accuracy, precision, recall, F1, yes-ratio and measured time per sample, plus a `point` name
    for the end points. Every margin is a real, timed `cascade_predict` run over `samples` (labelled).

    `repeats` > 1 runs every margin that many times, round-robin over the margins (so a change in
    machine load hits all of them alike), and reports each margin's fastest run: the usual defence
    against a shared, noisy machine (the answers are the same every run). `verify` first checks
    resume against a plain forward on one batch (also a warm-up, so the first timed run does not
    pay one-off costs). `aggregation` / `temperature`: as `cascade_predict`.
    """
    if not samples:
        raise DataError("cascade_sweep() got no samples")
    unlabelled = [s.id for s in samples if s.label is None]
    if unlabelled:
        raise DataError(f"sample(s) {unlabelled[:5]} have no label; a sweep needs yes/no labels")
    if repeats < 1:
        raise DataError(f"repeats={repeats}; use 1 or more timed runs per margin")
    ms = sorted({check_margin(m) for m in margins} | {0.0, 0.5})
    _check(clf, vlm, samples, strict)
    if verify:
        verify_resume(vlm, samples[:batch_size], clf.exit_layer)
    y = torch.tensor([s.y for s in samples])
    rows: dict[float, dict[str, Any]] = {}
    for _ in range(repeats):
        for m in ms:
            out = cascade_predict(clf, vlm, samples, m, batch_size=batch_size, aggregation=aggregation,
                                  strict=strict, progress=progress, temperature=temperature)
            row = out.summary(y)
            if m in rows and rows[m]["seconds"] <= row["seconds"]:
                continue
            row["point"] = "SNs only" if m == 0.0 else "model only" if m == 0.5 else ""
            rows[m] = row
    return [rows[m] for m in ms]


def best_margin(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The cheapest cascade row (0 < margin < 0.5) whose accuracy is >= both end points' (SNs only,
    model only) and whose average layers are below the model's; None if no margin does that."""
    ends = {r["point"]: r for r in rows if r.get("point")}
    if set(ends) != {"SNs only", "model only"}:
        raise DataError("the sweep rows lack the SNs-only (m=0) and model-only (m=0.5) end points")
    floor = max(ends["SNs only"]["accuracy"], ends["model only"]["accuracy"])
    ok = [r for r in rows if not r.get("point") and r["accuracy"] >= floor
          and r["avg_layers"] < ends["model only"]["avg_layers"]]
    return min(ok, key=lambda r: (r["avg_layers"], -r["accuracy"])) if ok else None
