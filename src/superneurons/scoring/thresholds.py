"""Exact per-neuron best thresholds (`per_neuron_alpha`): every cut of each neuron's sorted values is tried.

A threshold only matters through which samples fall above it, so for N samples there are at most
N + 1 distinct rules per neuron: the cuts between consecutive distinct sorted values. Sorting each
neuron's values once and taking cumulative sums of the labels in that order gives the confusion
counts of every cut, so the best cut on the rule metric is exact, not one of a few quantile guesses,
for the price of one sort. The threshold reported for a cut is the midpoint of the two values it
separates (the widest margin on both sides; rounded down to the stored dtype it makes the same
decisions on the probing set). Ties between cuts go to the lower threshold, then to the paper rule.

A NaN activation is never above a threshold (it sorts below every value here), as in
`superneurons.scoring.counting`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from superneurons.scoring.counting import float_bits, run_split, sortable_keys
from superneurons.scoring.metrics import metric_from_counts

_VALUES = 1 << 20  # sorted values per column tile (the cut tensors are float64 of this size)


def best_cuts(x: Tensor, y: Tensor, metric: str, both_rules: bool
              ) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], Tensor, Tensor]:
    """((TP, FP, FN, TN) int64, threshold float64, rule int8) per neuron of `x [N, ...]`, each `x.shape[1:]`.

    The cut maximising `metric` over all cuts of each neuron's values (and, with `both_rules`,
    over the flipped rule `x <= thr` too, rule -1).
    """
    n = x.shape[0]
    shape = tuple(x.shape[1:])
    x2 = x.reshape(n, -1)
    m = x2.shape[1]
    yd = y.reshape(-1).to(device=x.device, dtype=torch.int64)
    counts = torch.zeros(4, m, dtype=torch.int64, device=x.device)
    thr = torch.zeros(m, dtype=torch.float64, device=x.device)
    rule = torch.ones(m, dtype=torch.int8, device=x.device)
    width = max(1, min(m, _VALUES // max(n, 1)))

    def part(lo: int, hi: int) -> None:
        for c0 in range(lo, hi, width):
            c1 = min(hi, c0 + width)
            c, t, r = _tile_cuts(x2[:, c0:c1], yd, metric, both_rules)
            counts[:, c0:c1], thr[c0:c1], rule[c0:c1] = c, t, r

    run_split(part, m, width, x.device)
    tp, fp, fn, tn = (c.view(shape) for c in counts)
    return (tp, fp, fn, tn), thr.view(shape), rule.view(shape)


def _tile_cuts(v: Tensor, y: Tensor, metric: str, both_rules: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Best cut of each column of `v [n, w]`; the work is done neuron-major ([w, n], contiguous rows)."""
    n, w = v.shape
    v = torch.where(torch.isnan(v), torch.full_like(v, -math.inf), v)
    keys, order = sortable_keys(float_bits(v.T.contiguous())).sort(dim=1)  # integers: 40% faster than floats
    vs = sortable_keys(keys).view(v.dtype)  # the sorted values back (the map is its own inverse; -0 read as +0)
    below = torch.zeros(w, n + 1, dtype=torch.int64, device=v.device)  # positives among the i smallest
    torch.cumsum(y[order], dim=1, out=below[:, 1:])
    i = torch.arange(n + 1, device=v.device)
    tp = int(y.sum()) - below       # cut i: the i smallest say "no", the rest "yes"
    fp = (n - i) - tp
    fn = below
    tn = i - below
    vd = vs.to(torch.float64)
    inf = torch.full((w, 1), math.inf, dtype=torch.float64, device=v.device)
    lower, upper = torch.cat([-inf, vd], dim=1), torch.cat([vd, inf], dim=1)
    valid = lower < upper           # no cut between equal values
    score = _masked(metric_from_counts(metric, tp, fp, fn, tn), valid)
    if both_rules:
        flipped = _masked(metric_from_counts(metric, fn, tn, tp, fp), valid)
        score = torch.stack([score, flipped], dim=2).reshape(w, 2 * (n + 1))  # cut-major: paper rule first
    best = score.argmax(dim=1)      # first maximum: lowest cut, then the paper rule
    cut = best // 2 if both_rules else best
    flip = (best % 2 == 1) if both_rules else torch.zeros_like(best, dtype=torch.bool)
    pick = cut.unsqueeze(1)
    tp_, fp_, fn_, tn_ = (t.gather(1, pick).squeeze(1) for t in (tp, fp, fn, tn))
    chosen = torch.stack([torch.where(flip, a, b) for a, b in ((fn_, tp_), (tn_, fp_), (tp_, fn_), (fp_, tn_))])
    lo, hi = lower.gather(1, pick).squeeze(1), upper.gather(1, pick).squeeze(1)
    mid = lo / 2 + hi / 2
    threshold = torch.where(mid < hi, mid, lo)  # -inf below the minimum; the lower value next to +inf
    return chosen, threshold, torch.where(flip, -1, 1).to(torch.int8)


def _masked(score: Tensor, valid: Tensor) -> Tensor:
    return torch.where(valid, score, torch.full_like(score, -math.inf))
