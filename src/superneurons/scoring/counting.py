"""Exact confusion counts of the rule `H > alpha` for every neuron, as tensor work.

Only two counts per neuron are needed at one threshold: predicted "yes" and true positives; FP, FN
and TN follow from the class totals (`Counter.confusion`). Comparisons are exact: `alpha` is
rounded down to the activations' dtype (`round_down_threshold`), which gives the same decision as
comparing the stored value with the real-valued alpha, and fp16/bf16 values are compared as int16
bit patterns where that is identical and faster (`greater_than`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


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


class Counter:
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


def quantile_thresholds(x: Tensor, quantiles: Sequence[float]) -> Tensor:
    """[Q, l, D] per-neuron thresholds: each neuron's own activation quantiles (actual values)."""
    n = x.shape[0]
    idx = torch.tensor([min(n - 1, max(0, round(q * (n - 1)))) for q in quantiles])
    return x.sort(dim=0).values.index_select(0, idx)
