"""Score every neuron as a one-scalar classifier (Alg. 1 lines 5-6, eqs. 3-4 and 8-11).

A neuron (layer l, unit d) predicts "yes" for sample n when its activation `H[n, l, d] > alpha`.
`score_neurons` counts TP/FP/FN/TN for every neuron at once and derives accuracy, precision,
recall and F1 (0 where undefined). It streams over chunks of layers, from an in-memory
`[N, L, D]` tensor or from anything with `iter_layer_chunks(chunk_layers)` (the activation store),
so a 3000 x 32 x 4096 fp16 probe never needs more than one chunk of working memory.

Counting is exact: `alpha` is rounded down to the activations' dtype, which gives the same
decision as comparing the stored value with the real-valued alpha, and the metrics come from
integer counts in float64.

Beyond the paper (off by default):
- `polarity="both"` also scores the flipped rule (`H <= alpha` means yes) and keeps, per neuron,
  the rule that scores higher on `rule_metric` (the paper's rule wins ties). The returned `rule`
  tensor is +1 (paper rule) or -1 (flipped).
- `per_neuron_alpha=True` fits each neuron's threshold: the exact best cut of its sorted values on
  `rule_metric` (`superneurons.scoring.thresholds`; with `quantiles`, the best of those quantiles of
  its own values); the returned `alpha` tensor holds it.
Both are fitted on the probing set, so judge them on held-out data (tests do).

`probe_neurons` is the same single pass that also keeps the activations of the neurons close
to the best score (the only ones an SNt sweep can select), so `superneurons.selection.snt_sweep`
needs no second read of the store (`superneurons.scoring.pool`). The counts themselves are
`superneurons.scoring.counting` (one read per chunk for one alpha or a whole `alpha_sweep`);
what is read, `superneurons.scoring.streaming`. Tensors on a GPU are counted on the GPU; the
scores come back on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from superneurons.constants import METRICS, POLARITIES, Metric, Polarity
from superneurons.errors import DataError, StoreError
from superneurons.scoring.counting import Counter, quantile_thresholds
from superneurons.scoring.metrics import metrics_from_counts
from superneurons.scoring.pool import Pool
from superneurons.scoring.streaming import is_store, iter_chunks, labels_for, source_shape
from superneurons.scoring.thresholds import best_cuts

ALPHA_KEY = "alpha"
RULE_KEY = "rule"
COUNT_KEYS: tuple[str, ...] = ("tp", "fp", "fn", "tn")
DEFAULT_ALPHAS: tuple[float, ...] = tuple(i / 2 for i in range(-6, 7))  # Fig. 3a: [-3, 3]
DEFAULT_CHUNK_LAYERS = 4


class NeuronScores(dict):
    """`dict[str, Tensor[L, D]]` of per-neuron scores, plus the model layer of each row.

    Keys: the requested metric names (float64), `alpha` (float64 threshold of each neuron),
    `rule` (int8, +1: `H > alpha` means yes, -1: `H <= alpha` means yes) and, with
    `return_counts`, `tp`/`fp`/`fn`/`tn` (int64). `layers[i]` is the model layer of row i
    (a store may hold a subset of layers); `num_samples` is N.
    """

    def __init__(self, data: dict[str, Tensor], layers: Sequence[int], num_samples: int):
        super().__init__(data)
        self.layers: list[int] = [int(x) for x in layers]
        self.num_samples = int(num_samples)


@dataclass
class Probe:
    """One probing pass: scores for every neuron + activations of the near-best neurons.

    `pool_index` are flat positions (row * D + neuron) into the scores, best `keep_metric` score
    first (ties: lower position first), `pool_acts` their activations `[k, N]` (neuron-major,
    stored dtype), `pool_scores` their `keep_metric` scores. Every neuron whose score is above
    `pool_floor` is in the pool, so any SNt >= pool_floor can be evaluated from it.
    """

    scores: NeuronScores
    labels: Tensor
    keep_metric: str
    pool_index: Tensor
    pool_acts: Tensor
    pool_scores: Tensor
    pool_floor: float

    @property
    def hidden_size(self) -> int:
        return int(self.scores[self.keep_metric].shape[1])


def _check_names(names: Sequence[str], what: str) -> None:
    bad = [m for m in names if m not in METRICS]
    if bad:
        raise DataError(f"unknown {what} {bad[0]!r}; valid names: {', '.join(METRICS)}")


# ----------------------------------------------------------------------------- main pass
def _reported_alpha(alpha: Tensor | float, shape: tuple[int, ...]) -> Tensor:
    """The threshold as the caller gave it (not rounded to the activations' dtype), float64."""
    if isinstance(alpha, Tensor):
        return alpha.to(device="cpu", dtype=torch.float64).expand(shape).clone()
    return torch.full(shape, float(alpha), dtype=torch.float64)


def _pick_best(options: list[tuple[tuple[Tensor, ...], Tensor, int]], rule_metric: str, shape: tuple[int, ...]
               ) -> tuple[tuple[Tensor, ...], Tensor, Tensor]:
    """The (counts, threshold, rule) option scoring highest on `rule_metric` per neuron; the first wins ties."""
    best_val = torch.full(shape, -math.inf, dtype=torch.float64)
    best_counts = tuple(torch.zeros(shape, dtype=torch.int64) for _ in range(4))
    best_thr = torch.zeros(shape, dtype=torch.float64)
    best_rule = torch.ones(shape, dtype=torch.int8)
    for counts, thr, r in options:
        val = metrics_from_counts(*counts)[rule_metric]
        better = val > best_val  # strict: earlier options (lower quantile, the paper rule) win ties
        best_val = torch.where(better, val, best_val)
        best_counts = tuple(torch.where(better, c, b) for c, b in zip(counts, best_counts, strict=True))
        best_thr = torch.where(better, thr.expand(shape), best_thr)
        best_rule = torch.where(better, torch.full_like(best_rule, r), best_rule)
    return best_counts, best_thr, best_rule


def _chunk_scores(counter: Counter, x: Tensor, y: Tensor, alpha: Tensor | float, rule: Tensor | None,
                  polarity: Polarity, per_neuron_alpha: bool, quantiles: Sequence[float] | None,
                  rule_metric: str) -> tuple[tuple[Tensor, ...], Tensor, Tensor]:
    """Chosen (tp, fp, fn, tn), threshold (float64) and rule (int8) per neuron of one chunk (on the CPU)."""
    shape = tuple(x.shape[1:])
    rules = (1, -1) if polarity == "both" else (1,)
    if per_neuron_alpha and quantiles is None:  # exact: every cut of the sorted values
        counts, thr, rl = best_cuts(x, y, rule_metric, polarity == "both")
        return tuple(c.cpu() for c in counts), thr.cpu(), rl.cpu()
    if per_neuron_alpha:
        cands = quantile_thresholds(x, list(quantiles or ()))
        pred_yes, tp = (t.cpu() for t in counter.count_many(x, cands))
        options = [(counter.confusion(pred_yes[q], tp[q], r < 0), cands[q].cpu().to(torch.float64), r)
                   for q in range(cands.shape[0]) for r in rules]
        return _pick_best(options, rule_metric, shape)
    a = alpha.to(x.device) if isinstance(alpha, Tensor) else torch.tensor(float(alpha), dtype=torch.float64)
    pred_yes, tp = (t.cpu() for t in counter.count(x, a))
    reported = _reported_alpha(alpha, shape)
    if rule is not None:  # re-score given classifiers: no fitting
        flip = rule < 0
        counts = tuple(torch.where(flip, b, a) for a, b in
                       zip(counter.confusion(pred_yes, tp, False), counter.confusion(pred_yes, tp, True), strict=True))
        return counts, reported, rule.to(torch.int8)
    if len(rules) == 1:
        return counter.confusion(pred_yes, tp, False), reported, torch.ones(shape, dtype=torch.int8)
    counts, _, rl = _pick_best([(counter.confusion(pred_yes, tp, r < 0), reported, r) for r in rules],
                               rule_metric, shape)
    return counts, reported, rl


def probe_neurons(acts: Any, labels: Tensor | Sequence[int] | None = None, alpha: float | Tensor = 0.0,
                  metrics: Sequence[str] = METRICS, *, polarity: Polarity = "positive",
                  per_neuron_alpha: bool = False, quantiles: Sequence[float] | None = None,
                  rule_metric: str | None = None, rule: Tensor | None = None, max_layer: int | None = None,
                  chunk_layers: int = DEFAULT_CHUNK_LAYERS, return_counts: bool = False,
                  keep_metric: str | None = None, keep_within: float = 0.03,
                  keep_step: float | None = None, keep_above: float | None = None) -> Probe:
    """Score every neuron in one streamed pass; optionally keep the near-best neurons' activations.

    Args:
        acts: `Tensor[N, L, D]` (any float dtype, on any device: counted there) or a store with
            `iter_layer_chunks` (read one chunk ahead of the counting, in a reader thread).
        labels: `[N]` of 1 (yes) / 0 (no); defaults to `acts.labels` for a store.
        alpha: activation threshold (paper: 0), or `Tensor[L, D]` of per-neuron thresholds.
        metrics: names out of `METRICS` to return.
        polarity: "positive" (paper) or "both" (also fit the flipped rule per neuron).
        per_neuron_alpha: fit each neuron's threshold: the exact best cut of its sorted values
            (`superneurons.scoring.thresholds`), or the best of its own `quantiles` when given.
        rule_metric: the metric that picks rule/threshold (default: the first of `metrics`).
        rule: fixed `Tensor[L, D]` of +1/-1 rules (to re-score a fitted classifier on new data).
        max_layer: only score layers <= max_layer (for early exit); later chunks are not read.
        keep_metric: keep activations of neurons with this score > best - keep_within (for the
            SNt sweep), or > keep_above when that is given; None keeps nothing. With
            `keep_step`, only what a sweep on that grid can select is kept: neurons above the
            lowest multiple of keep_step that is >= best - keep_within (far fewer on flat data).
    """
    _check_names(list(metrics), "metric")
    if not metrics:
        raise DataError("metrics is empty; ask for at least one of " + ", ".join(METRICS))
    rule_metric = rule_metric or metrics[0]
    _check_names([rule_metric], "rule_metric")
    if polarity not in POLARITIES:
        raise DataError(f"polarity {polarity!r} is not one of {', '.join(POLARITIES)}")
    if rule is not None and (polarity != "positive" or per_neuron_alpha):
        raise DataError("a fixed `rule` re-scores given neurons; do not combine it with polarity='both' "
                        "or per_neuron_alpha")
    if per_neuron_alpha and isinstance(alpha, Tensor):
        raise DataError("per_neuron_alpha fits the thresholds; pass a scalar alpha (it is ignored) or no alpha")
    if per_neuron_alpha and quantiles is not None and not quantiles:
        raise DataError("per_neuron_alpha needs at least one quantile (or quantiles=None: every cut)")
    if bool(torch.isnan(torch.as_tensor(alpha, dtype=torch.float64)).any()):
        raise DataError("alpha is NaN; use a number (the paper uses 0) or per-neuron numbers")
    if keep_metric is not None:
        _check_names([keep_metric], "keep_metric")
        if keep_metric not in metrics:
            metrics = (*metrics, keep_metric)
    all_layers, n, d = source_shape(acts)
    layers = all_layers
    if n == 0:
        raise DataError("no samples to score; the activations have N = 0")
    y = labels_for(acts, labels, n)
    if max_layer is not None:
        layers = [v for v in layers if v <= max_layer]
        if not layers:
            raise DataError(f"max_layer={max_layer} keeps no layer; stored layers start at "
                            f"{all_layers[0]}")
    n_rows = len(layers)
    for name, t in (("alpha", alpha), ("rule", rule)):
        if isinstance(t, Tensor) and tuple(t.shape) != (len(all_layers), d):
            raise DataError(f"{name} has shape {list(t.shape)}; per-neuron {name} must be [L, D] = "
                            f"[{len(all_layers)}, {d}]")

    out_counts = {k: torch.zeros(n_rows, d, dtype=torch.int64) for k in COUNT_KEYS}
    out_alpha = torch.zeros(n_rows, d, dtype=torch.float64)
    out_rule = torch.ones(n_rows, d, dtype=torch.int8)
    counter = Counter(y, device=_device(acts))
    pool = Pool(keep_within, keep_above, d, keep_step) if keep_metric else None
    seen = 0
    for row, ids, x in iter_chunks(acts, chunk_layers, max_layer):
        if x.shape[0] != n or x.shape[2] != d:
            raise StoreError(f"chunk for layers {ids} has shape {list(x.shape)}; expected [{n}, {len(ids)}, {d}]")
        sl = slice(row, row + len(ids))
        a = alpha[sl] if isinstance(alpha, Tensor) else alpha
        r = rule[sl].cpu() if rule is not None else None
        counts, thr, rl = _chunk_scores(counter, x, y, a, r, polarity, per_neuron_alpha, quantiles, rule_metric)
        for k, c in zip(COUNT_KEYS, counts, strict=True):
            out_counts[k][sl] = c
        out_alpha[sl], out_rule[sl] = thr, rl
        if pool is not None:
            vals = metrics_from_counts(*counts)[keep_metric]
            pool.add(x, row, vals)
        seen += len(ids)
    if seen != n_rows:
        raise StoreError(f"the activations yielded {seen} layers but {n_rows} were expected; "
                         "the store may be incomplete: run the same `superneurons probe` command again to finish it")
    all_metrics = metrics_from_counts(*(out_counts[k] for k in COUNT_KEYS))
    data: dict[str, Tensor] = {m: all_metrics[m] for m in metrics}
    data[ALPHA_KEY], data[RULE_KEY] = out_alpha, out_rule
    if return_counts:
        data.update(out_counts)
    scores = NeuronScores(data, layers, n)
    if pool is None:
        return Probe(scores, y, rule_metric, torch.zeros(0, dtype=torch.long), torch.zeros(0, n),
                     torch.zeros(0, dtype=torch.float64), math.inf)
    index, pacts, pscores, floor = pool.finish(n)
    return Probe(scores, y, keep_metric, index, pacts, pscores, floor)


def score_neurons(acts: Any, labels: Tensor | Sequence[int] | None = None, alpha: float | Tensor = 0.0,
                  metrics: Sequence[str] = METRICS, **kwargs: Any) -> NeuronScores:
    """Per-neuron accuracy/precision/recall/F1 of the rule `acts > alpha` (Alg. 1, lines 5-6).

    Returns a `NeuronScores` (`dict[str, Tensor[L, D]]`, see there); keyword options are those
    of `probe_neurons` (polarity, per_neuron_alpha, rule_metric, max_layer, chunk_layers, ...).

    >>> acts = torch.randn(8, 2, 4); y = torch.tensor([1, 0] * 4); acts[:, 1, 3] = y * 2 - 1.0
    >>> float(score_neurons(acts, y)["accuracy"][1, 3])
    1.0
    """
    return probe_neurons(acts, labels, alpha, metrics, **kwargs).scores


def alpha_sweep(acts: Any, labels: Tensor | Sequence[int] | None = None,
                alphas: Sequence[float] = DEFAULT_ALPHAS, metric: Metric = "accuracy",
                chunk_layers: int = DEFAULT_CHUNK_LAYERS) -> list[dict[str, Any]]:
    """Best single-neuron probe score for each alpha (paper Fig. 3a), from one read of the activations.

    Every alpha is counted in the same pass over each chunk (`Counter.count_many`). Returns one
    row per alpha: `{"alpha", "best", "layer", "neuron"}` (layer = model layer; ties: first neuron).
    """
    _check_names([metric], "metric")
    if not alphas:
        raise DataError("alphas is empty; pass the thresholds to try, e.g. -3..3")
    thrs = torch.tensor([float(a) for a in alphas], dtype=torch.float64)
    if bool(torch.isnan(thrs).any()):
        raise DataError("alphas hold a NaN; pass numbers")
    _layers, n, d = source_shape(acts)
    y = labels_for(acts, labels, n)
    counter = Counter(y, device=_device(acts))
    best = [(-math.inf, -1, -1)] * len(alphas)
    for _row, ids, x in iter_chunks(acts, chunk_layers, None):
        pred_yes, tp = (t.cpu() for t in counter.count_many(x, thrs))
        vals = metrics_from_counts(*counter.confusion(pred_yes, tp, False))[metric].reshape(len(alphas), -1)
        flat = vals.argmax(dim=1)  # the first neuron wins ties
        top = vals.gather(1, flat.unsqueeze(1)).squeeze(1)
        for i, (v, f) in enumerate(zip(top.tolist(), flat.tolist(), strict=True)):
            if v > best[i][0]:
                best[i] = (v, ids[f // d], f % d)
    return [{"alpha": float(a), "best": b[0], "layer": b[1], "neuron": b[2]}
            for a, b in zip(alphas, best, strict=True)]


def _device(acts: Any) -> torch.device:
    return torch.device("cpu") if is_store(acts) else acts.device
