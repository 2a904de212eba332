"""The scorer as it was before the single-pass counter: a baseline for `benchmarks/scoring_scale.py` and tests.

Compares a block of 64 rows at a time into a bool buffer (the int16 bit-pattern trick only for
thresholds with a clear sign bit) and adds each row to the uint8 accumulator of its label, flushed
every 255 rows: the algorithm `score_neurons` used (2.4 s for N = 3000 x 32 x 4096 fp16 in memory,
18x a pure read). Not used by the library; kept so the speed-up and the exactness of the new
counter are measured against it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from superneurons.scoring.counting import round_down_threshold
from superneurons.scoring.metrics import metrics_from_counts


def reference_counts(x: Tensor, y: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """(predicted yes, true positives) int64 `x.shape[1:]` of `x > alpha`, the old way."""
    n, m = x.shape[0], x[0].numel()
    thr = round_down_threshold(alpha, x.dtype)
    xv, tv = x, thr
    if x.dtype in (torch.float16, torch.bfloat16) and x.stride(-1) == 1 and int(thr.view(torch.int16)) >= 0:
        xv, tv = x.view(torch.int16), thr.view(torch.int16)
    groups = y.reshape(-1).tolist()
    totals = [torch.zeros(m, dtype=torch.int64) for _ in range(2)]
    accs = [torch.zeros(m, dtype=torch.uint8) for _ in range(2)]
    filled = [0, 0]
    buf = torch.empty(64 * m, dtype=torch.bool)
    for lo in range(0, n, 64):
        hi = min(lo + 64, n)
        blk = buf[:(hi - lo) * m].view(hi - lo, *x.shape[1:])
        torch.gt(xv[lo:hi], tv, out=blk)
        r8 = blk.view(hi - lo, m).view(torch.uint8)
        for i in range(hi - lo):
            g = groups[lo + i]
            accs[g] += r8[i]
            filled[g] += 1
            if filled[g] == 255:
                totals[g] += accs[g]
                accs[g].zero_()
                filled[g] = 0
    for g in range(2):
        totals[g] += accs[g]
    fp, tp = (t.view(x.shape[1:]) for t in totals)
    return tp + fp, tp


def reference_scores(chunks: Iterable[Tensor], y: Tensor, alpha: float = 0.0) -> dict[str, Tensor]:
    """Accuracy / precision / recall / F1 `[L, D]` of `H > alpha` over chunks `[N, l, D]`, the old way."""
    num_pos = int(y.sum())
    num_neg = y.numel() - num_pos
    parts = []
    for x in chunks:
        pred_yes, tp = reference_counts(x, y, alpha)
        fp = pred_yes - tp
        parts.append((tp, fp, num_pos - tp, num_neg - fp))
    return metrics_from_counts(*(torch.cat([p[i] for p in parts]) for i in range(4)))
