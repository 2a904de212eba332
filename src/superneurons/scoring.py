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
- `per_neuron_alpha=True` tries each neuron's own activation quantiles as its threshold and keeps
  the best one on `rule_metric`; the returned `alpha` tensor holds it.
Both are fitted on the probing set, so judge them on held-out data (tests do).

`probe_neurons` is the same single pass that also keeps the activations of the neurons close
to the best score (the only ones an SNt sweep can select), so `superneurons.selection.snt_sweep`
needs no second read of the store.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from superneurons.errors import DataError, StoreError
from superneurons.metrics import METRICS, metrics_from_counts

ALPHA_KEY = "alpha"
RULE_KEY = "rule"
COUNT_KEYS: tuple[str, ...] = ("tp", "fp", "fn", "tn")
POLARITIES: tuple[str, ...] = ("positive", "both")
DEFAULT_QUANTILES: tuple[float, ...] = tuple(i / 20 for i in range(1, 20))
DEFAULT_ALPHAS: tuple[float, ...] = tuple(i / 2 for i in range(-6, 7))  # Fig. 3a: [-3, 3]
DEFAULT_CHUNK_LAYERS = 4
_EPS = 1e-9

Polarity = Literal["positive", "both"]


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


# ----------------------------------------------------------------------------- inputs
def _is_store(source: Any) -> bool:
    return hasattr(source, "iter_layer_chunks")


def _check_names(names: Sequence[str], what: str) -> None:
    bad = [m for m in names if m not in METRICS]
    if bad:
        raise DataError(f"unknown {what} {bad[0]!r}; valid names: {', '.join(METRICS)}")


def _labels_for(source: Any, labels: Tensor | Sequence[int] | None, n: int) -> Tensor:
    if labels is None:
        if not hasattr(source, "labels"):
            raise DataError("labels are missing; pass labels (1 yes / 0 no per sample) with a plain tensor")
        labels = source.labels
    y = torch.as_tensor(labels)
    if y.is_floating_point() and not torch.equal(y, y.round()):
        raise DataError("labels must be 1 (yes) or 0 (no), got fractional values")
    y = y.long().reshape(-1)
    if y.numel() != n:
        raise DataError(f"{y.numel()} labels for {n} samples; pass one label per activation row")
    if ((y != 0) & (y != 1)).any():
        i = int(((y != 0) & (y != 1)).nonzero()[0])
        raise DataError(f"label {int(y[i])} at sample {i} is not 1 (yes) or 0 (no)")
    return y


def _source_shape(source: Any) -> tuple[list[int], int, int]:
    """(model layer of each row, N, D) of a tensor or store."""
    if _is_store(source):
        layers = [int(x) for x in source.layers]
        return layers, int(source.num_samples), int(source.hidden_size)
    if not isinstance(source, Tensor):
        raise DataError(f"activations must be a Tensor[N, L, D] or an ActivationStore, got {type(source).__name__}")
    if source.dim() != 3:
        raise DataError(f"activations must have shape [N, L, D], got {list(source.shape)}; "
                        "add a layer axis with acts[:, None] for one layer")
    if not source.is_floating_point():
        raise DataError(f"activations must be floating point, got {source.dtype}")
    n, n_layers, d = source.shape
    return list(range(n_layers)), n, d


def _iter_chunks(source: Any, chunk_layers: int, max_layer: int | None
                 ) -> Iterator[tuple[int, list[int], Tensor]]:
    """Yield (first row, model layers, activations [N, l, D]) for rows with layer <= max_layer."""
    if chunk_layers < 1:
        raise DataError(f"chunk_layers={chunk_layers}; use a positive number of layers per chunk")
    row = 0
    if _is_store(source):
        chunks: Iterator[tuple[Sequence[int], Tensor]] = source.iter_layer_chunks(chunk_layers)
    else:
        n_layers = source.shape[1]
        chunks = ((list(range(i, min(i + chunk_layers, n_layers))), source[:, i:i + chunk_layers])
                  for i in range(0, n_layers, chunk_layers))
    for layer_ids, x in chunks:
        ids = [int(v) for v in layer_ids]
        if x.dim() != 3 or x.shape[1] != len(ids):
            raise StoreError(f"store chunk for layers {ids} has shape {list(x.shape)}; expected [N, {len(ids)}, D]")
        if max_layer is not None:
            keep = sum(1 for v in ids if v <= max_layer)
            if keep == 0:
                break
            ids, x = ids[:keep], x[:, :keep]
        yield row, ids, x
        row += len(ids)
        if max_layer is not None and len(ids) and ids[-1] >= max_layer:
            break


def round_down_threshold(alpha: float | Tensor, dtype: torch.dtype) -> Tensor:
    """`alpha` as the largest value of `dtype` that is <= alpha.

    For x of that dtype, `x > round_down_threshold(alpha)` is exactly `x > alpha` (real-valued),
    so comparing fp16 activations needs no upcast.
    """
    a = torch.as_tensor(alpha, dtype=torch.float64)
    a_d = a.to(dtype)
    too_high = a_d.to(torch.float64) > a
    if bool(too_high.any()):
        a_d = torch.where(too_high, torch.nextafter(a_d, torch.full_like(a_d, -math.inf)), a_d)
    return a_d


def _comparable(x: Tensor, thr: Tensor) -> tuple[Tensor, Tensor]:
    """(x, thr) or their int16 bit patterns, whichever compares faster with the same answer.

    For fp16/bf16 and a non-negative threshold (sign bit clear, e.g. the paper's alpha = 0),
    non-negative floats sort like their bit patterns and negative ones have negative patterns,
    so `x > thr` is identical for finite values and about 1.7x faster on CPU than a
    half-precision comparison. (A NaN activation, which capture never stores, would count as
    above such a threshold.)
    """
    if x.dtype in (torch.float16, torch.bfloat16) and x.stride(-1) == 1:
        bits = thr.contiguous().view(torch.int16)
        if bool((bits >= 0).all()):
            return x.view(torch.int16), bits
    return x, thr


def greater_than(x: Tensor, thr: Tensor, out: Tensor) -> Tensor:
    """`out = x > thr` for `thr` already in x's dtype (see `round_down_threshold`)."""
    xv, tv = _comparable(x, thr)
    return torch.gt(xv, tv, out=out)


class _RowSums:
    """Adds bool rows into per-group counts: uint8 accumulators flushed every 255 rows.

    Contiguous in-place byte adds of whole rows are several times faster on CPU than torch's
    reductions over dim 0, and rows of a group need no gathering.
    """

    def __init__(self, m: int, num_groups: int):
        self.totals = [torch.zeros(m, dtype=torch.int64) for _ in range(num_groups)]
        self.accs = [torch.zeros(m, dtype=torch.uint8) for _ in range(num_groups)]
        self.filled = [0] * num_groups

    def add(self, rows: Tensor, groups: Sequence[int] | None) -> None:
        """Add each row of a bool [r, m] tensor to its group (all to group 0 if `groups` is None)."""
        r8 = rows.view(torch.uint8)
        for i in range(rows.shape[0]):
            g = 0 if groups is None else groups[i]
            self.accs[g] += r8[i]
            self.filled[g] += 1
            if self.filled[g] == 255:
                self.totals[g] += self.accs[g]
                self.accs[g].zero_()
                self.filled[g] = 0

    def result(self) -> list[Tensor]:
        for g, acc in enumerate(self.accs):
            if self.filled[g]:
                self.totals[g] += acc
                acc.zero_()
                self.filled[g] = 0
        return self.totals


def column_counts(b: Tensor, groups: Sequence[int] | None = None, num_groups: int = 1) -> list[Tensor]:
    """Number of True along dim 0 of a bool [n, ...] tensor, per group of rows, as int64 [...].

    `groups[i]` (0..num_groups-1) is row i's group (default: one group).
    """
    n = b.shape[0]
    sums = _RowSums(b[0].numel() if n else 0, num_groups)
    sums.add(b.reshape(n, -1), groups)
    return [t.view(b.shape[1:]) for t in sums.result()]


class _Counter:
    """Counts predicted-yes and true-positive per neuron for one chunk.

    Compares a block of rows at a time into a small reused buffer (it stays in cache) and adds
    each row to the count of its label.
    """

    _BLOCK = 64

    def __init__(self, y: Tensor):
        self.n = y.numel()
        self.num_pos = int(y.sum())
        self.num_neg = self.n - self.num_pos
        self.groups = y.tolist()
        self._buf = torch.empty(0, dtype=torch.bool)

    def count(self, x: Tensor, thr: Tensor) -> tuple[Tensor, Tensor]:
        """(predicted yes, true positives) per neuron for `x > thr`, int64 [l, D]."""
        xv, tv = _comparable(x, thr)
        m = x[0].numel()
        if self._buf.numel() < self._BLOCK * m:
            self._buf = torch.empty(self._BLOCK * m, dtype=torch.bool)
        sums = _RowSums(m, 2)
        for lo in range(0, self.n, self._BLOCK):
            hi = min(lo + self._BLOCK, self.n)
            blk = self._buf[:(hi - lo) * m].view(hi - lo, *x.shape[1:])
            torch.gt(xv[lo:hi], tv, out=blk)
            sums.add(blk.view(hi - lo, m), self.groups[lo:hi])
        fp, tp = (t.view(x.shape[1:]) for t in sums.result())
        return tp + fp, tp

    def confusion(self, pred_yes: Tensor, tp: Tensor, flipped: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        fp = pred_yes - tp
        fn = self.num_pos - tp
        tn = self.num_neg - fp
        if flipped:  # yes iff x <= thr: every "no" of the paper rule becomes "yes"
            return fn, tn, tp, fp
        return tp, fp, fn, tn


def _quantile_thresholds(x: Tensor, quantiles: Sequence[float]) -> Tensor:
    """[Q, l, D] per-neuron thresholds: each neuron's own activation quantiles (actual values)."""
    n = x.shape[0]
    idx = torch.tensor([min(n - 1, max(0, round(q * (n - 1)))) for q in quantiles])
    return x.sort(dim=0).values.index_select(0, idx)


# ----------------------------------------------------------------------------- SNt grid
def grid_units(step: float) -> int:
    """1 / step as an integer (100 for 1-point steps, 1000 for 0.1-point steps)."""
    units = round(1 / step) if step > 0 else 0
    if units < 1 or abs(units * step - 1) > 1e-6:
        raise DataError(f"step={step} must divide 1 (e.g. 0.01 = 1 point, 0.001 = 0.1 point)")
    return units


def lowest_grid_index(value: float, units: int) -> int:
    """The smallest j with j / units >= value."""
    j = math.ceil(value * units)
    while (j - 1) / units >= value:
        j -= 1
    while j / units < value:
        j += 1
    return j


# ----------------------------------------------------------------------------- main pass
def _reported_alpha(alpha: Tensor | float, shape: tuple[int, ...]) -> Tensor:
    """The threshold as the caller gave it (not rounded to the activations' dtype), float64."""
    if isinstance(alpha, Tensor):
        return alpha.to(torch.float64).expand(shape).clone()
    return torch.full(shape, float(alpha), dtype=torch.float64)


def _chunk_scores(counter: _Counter, x: Tensor, alpha: Tensor | float, rule: Tensor | None,
                  polarity: str, per_neuron_alpha: bool, quantiles: Sequence[float],
                  rule_metric: str) -> tuple[tuple[Tensor, ...], Tensor, Tensor]:
    """Chosen (tp, fp, fn, tn), threshold (float64) and rule (int8) per neuron of one chunk."""
    shape = tuple(x.shape[1:])
    if per_neuron_alpha:
        candidates = list(_quantile_thresholds(x, quantiles))
    else:
        a = alpha if isinstance(alpha, Tensor) else torch.tensor(float(alpha), dtype=torch.float64)
        candidates = [round_down_threshold(a, x.dtype)]
    if rule is not None:  # re-score given classifiers: no fitting
        pred_yes, tp = counter.count(x, candidates[0])
        flip = rule < 0
        counts = tuple(torch.where(flip, b, a) for a, b in
                       zip(counter.confusion(pred_yes, tp, False), counter.confusion(pred_yes, tp, True), strict=True))
        return counts, _reported_alpha(alpha, shape), rule.to(torch.int8)
    rules = (1, -1) if polarity == "both" else (1,)
    best_val = torch.full(shape, -math.inf, dtype=torch.float64)
    best_counts = tuple(torch.zeros(shape, dtype=torch.int64) for _ in range(4))
    best_thr = torch.zeros(shape, dtype=torch.float64)
    best_rule = torch.ones(shape, dtype=torch.int8)
    for thr in candidates:
        pred_yes, tp = counter.count(x, thr)
        for r in rules:
            counts = counter.confusion(pred_yes, tp, r < 0)
            if len(candidates) == 1 and len(rules) == 1:
                return counts, _reported_alpha(alpha, shape), best_rule
            val = metrics_from_counts(*counts)[rule_metric]
            better = val > best_val  # strict: the lower quantile and the paper rule win ties
            best_val = torch.where(better, val, best_val)
            best_counts = tuple(torch.where(better, c, b) for c, b in zip(counts, best_counts, strict=True))
            best_thr = torch.where(better, thr.to(torch.float64).expand(shape), best_thr)
            best_rule = torch.where(better, torch.full_like(best_rule, r), best_rule)
    if not per_neuron_alpha:
        best_thr = _reported_alpha(alpha, shape)
    return best_counts, best_thr, best_rule


def probe_neurons(acts: Any, labels: Tensor | Sequence[int] | None = None, alpha: float | Tensor = 0.0,
                  metrics: Sequence[str] = METRICS, *, polarity: Polarity = "positive",
                  per_neuron_alpha: bool = False, quantiles: Sequence[float] = DEFAULT_QUANTILES,
                  rule_metric: str | None = None, rule: Tensor | None = None, max_layer: int | None = None,
                  chunk_layers: int = DEFAULT_CHUNK_LAYERS, return_counts: bool = False,
                  keep_metric: str | None = None, keep_within: float = 0.03,
                  keep_step: float | None = None, keep_above: float | None = None) -> Probe:
    """Score every neuron in one streamed pass; optionally keep the near-best neurons' activations.

    Args:
        acts: `Tensor[N, L, D]` (any float dtype) or a store with `iter_layer_chunks`.
        labels: `[N]` of 1 (yes) / 0 (no); defaults to `acts.labels` for a store.
        alpha: activation threshold (paper: 0), or `Tensor[L, D]` of per-neuron thresholds.
        metrics: names out of `METRICS` to return.
        polarity: "positive" (paper) or "both" (also fit the flipped rule per neuron).
        per_neuron_alpha: fit each neuron's threshold among its own `quantiles`.
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
    if per_neuron_alpha and not quantiles:
        raise DataError("per_neuron_alpha needs at least one quantile")
    if keep_metric is not None:
        _check_names([keep_metric], "keep_metric")
        if keep_metric not in metrics:
            metrics = (*metrics, keep_metric)
    all_layers, n, d = _source_shape(acts)
    layers = all_layers
    if n == 0:
        raise DataError("no samples to score; the activations have N = 0")
    y = _labels_for(acts, labels, n)
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
    counter = _Counter(y)
    pool = _Pool(keep_within, keep_above, d, keep_step) if keep_metric else None
    seen = 0
    for row, ids, x in _iter_chunks(acts, chunk_layers, max_layer):
        if x.shape[0] != n or x.shape[2] != d:
            raise StoreError(f"chunk for layers {ids} has shape {list(x.shape)}; expected [{n}, {len(ids)}, {d}]")
        sl = slice(row, row + len(ids))
        a = alpha[sl] if isinstance(alpha, Tensor) else alpha
        r = rule[sl] if rule is not None else None
        counts, thr, rl = _chunk_scores(counter, x, a, r, polarity, per_neuron_alpha, quantiles, rule_metric)
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


class _Pool:
    """Running set of neurons scoring above `above`, or within `within` of the best seen so far.

    Parts are kept as gathered ([N, m] per chunk) and only filtered again when more than half of
    what is held has fallen below the rising floor, and at the end (then made neuron-major).
    """

    def __init__(self, within: float, above: float | None, d: int, step: float | None = None):
        self.within, self.above, self.d = within, above, d
        self.units = None if step is None else grid_units(step)
        self.best = -math.inf
        self.parts: list[tuple[Tensor, Tensor, Tensor]] = []  # (flat index, values, acts [N, m])

    def floor(self) -> float:
        if self.above is not None:
            return self.above - _EPS
        if self.units is None:
            return self.best - self.within - _EPS
        return lowest_grid_index(self.best - self.within - _EPS, self.units) / self.units - _EPS

    def add(self, x: Tensor, row: int, vals: Tensor) -> None:
        self.best = max(self.best, float(vals.max()))
        floor = self.floor()
        flat = (vals.reshape(-1) > floor).nonzero().squeeze(1)
        if flat.numel():
            self.parts.append((row * self.d + flat, vals.reshape(-1)[flat], _columns(x.reshape(x.shape[0], -1), flat)))
        held = sum(p[0].numel() for p in self.parts)
        alive = sum(int((p[1] > floor).sum()) for p in self.parts)
        if alive < held // 2:
            self._prune(floor)

    def _prune(self, floor: float) -> None:
        kept = []
        for idx, vals, a in self.parts:
            m = vals > floor
            if bool(m.all()):
                kept.append((idx, vals, a))
            elif bool(m.any()):
                keep = m.nonzero().squeeze(1)
                kept.append((idx[keep], vals[keep], _columns(a, keep)))
        self.parts = kept

    def finish(self, n: int) -> tuple[Tensor, Tensor, Tensor, float]:
        """(flat index, acts [k, N], scores), best score first (stable: lower index first), and the floor."""
        floor = self.floor()
        if not self.parts:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, n), torch.zeros(0, dtype=torch.float64), floor
        idx = torch.cat([p[0] for p in self.parts])
        vals = torch.cat([p[1] for p in self.parts])
        keep = (vals > floor).nonzero().squeeze(1)
        keep = keep[torch.sort(-vals[keep], stable=True).indices]  # parts are in ascending index order
        acts = torch.cat([p[2] for p in self.parts], dim=1) if len(self.parts) > 1 else self.parts[0][2]
        self.parts = []
        return idx[keep], _columns(acts, keep).T.contiguous(), vals[keep], floor


def _columns(x2d: Tensor, cols: Tensor) -> Tensor:
    """x2d[:, cols] by a row-wise gather (reads each row once: much faster than index_select on dim 1);
    16-bit floats are moved as int16 (a plain copy)."""
    src = x2d.view(torch.int16) if x2d.element_size() == 2 and x2d.stride(-1) == 1 else x2d
    out = torch.gather(src, 1, cols.expand(x2d.shape[0], -1))
    return out.view(x2d.dtype) if src is not x2d else out


def alpha_sweep(acts: Any, labels: Tensor | Sequence[int] | None = None,
                alphas: Sequence[float] = DEFAULT_ALPHAS, metric: str = "accuracy",
                chunk_layers: int = DEFAULT_CHUNK_LAYERS) -> list[dict[str, Any]]:
    """Best single-neuron probe score for each alpha (paper Fig. 3a), in one streamed pass.

    Returns one row per alpha: `{"alpha", "best", "layer", "neuron"}` (layer = model layer).
    """
    _check_names([metric], "metric")
    if not alphas:
        raise DataError("alphas is empty; pass the thresholds to try, e.g. -3..3")
    layers, n, d = _source_shape(acts)
    y = _labels_for(acts, labels, n)
    counter = _Counter(y)
    best = [(-math.inf, -1, -1)] * len(alphas)
    for _row, ids, x in _iter_chunks(acts, chunk_layers, None):
        for i, a in enumerate(alphas):
            pred_yes, tp = counter.count(x, round_down_threshold(float(a), x.dtype))
            vals = metrics_from_counts(*counter.confusion(pred_yes, tp, False))[metric]
            flat = int(vals.reshape(-1).argmax())
            v = float(vals.reshape(-1)[flat])
            if v > best[i][0]:
                best[i] = (v, ids[flat // d], flat % d)
    return [{"alpha": float(a), "best": b[0], "layer": b[1], "neuron": b[2]}
            for a, b in zip(alphas, best, strict=True)]
