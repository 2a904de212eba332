"""Binary classification metrics (paper eqs. 8-11), shared by scoring, selection and evaluation.

One formula for every caller: `metrics_from_counts` turns confusion counts into accuracy,
precision, recall and F1 and is used both per neuron (on tensors of counts, see
`superneurons.scoring.neurons`) and on a method's final predictions (`binary_metrics`). Undefined ratios
(no "yes" prediction, no positive label) are 0, never NaN.

Predictions are 1 (yes), 0 (no) or -1 (unparsed: a generated answer the strict parser could not
read). An unparsed answer is never correct: it counts against accuracy and, on a positive sample,
as a false negative; it is also reported as its own count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from superneurons.errors import DataError

UNPARSED = -1  #: a generated answer the strict parser could not read


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def metrics_from_counts(tp: Tensor | int, fp: Tensor | int, fn: Tensor | int, tn: Tensor | int,
                        n: Tensor | int | None = None) -> dict[str, Tensor]:
    """Accuracy, precision, recall and F1 (float64) from confusion counts of any (equal) shape.

    Eq. 8-11 of the paper: accuracy = (TP+TN)/N, precision = TP/(TP+FP), recall = TP/(TP+FN),
    F1 = 2PR/(P+R); a ratio whose denominator is 0 is 0. `n` defaults to TP+FP+FN+TN (pass it
    when some answers are in no cell, e.g. unparsed answers on negative samples).
    """
    tp, fp, fn, tn = (torch.as_tensor(v, dtype=torch.float64) for v in (tp, fp, fn, tn))
    n = tp + fp + fn + tn if n is None else torch.as_tensor(n, dtype=torch.float64)
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    return {
        "accuracy": _safe_div(tp + tn, n),
        "precision": precision,
        "recall": recall,
        "f1": _safe_div(2 * precision * recall, precision + recall),
    }


def metric_from_counts(name: str, tp: Tensor, fp: Tensor, fn: Tensor, tn: Tensor) -> Tensor:
    """`metrics_from_counts(tp, fp, fn, tn)[name]`, computing only that metric (for large count tensors)."""
    if name == "f1":
        return metrics_from_counts(tp, fp, fn, tn)["f1"]
    tp, fp, fn, tn = (torch.as_tensor(v, dtype=torch.float64) for v in (tp, fp, fn, tn))
    num, den = {"accuracy": (tp + tn, tp + fp + fn + tn), "precision": (tp, tp + fp), "recall": (tp, tp + fn)}[name]
    return _safe_div(num, den)


def _as_long(values: Tensor | Sequence[int], name: str) -> Tensor:
    t = torch.as_tensor(values)
    if t.dtype == torch.bool:
        t = t.long()
    if t.is_floating_point() and t.numel():
        raise DataError(f"{name} must hold integer predictions (1 yes, 0 no, -1 unparsed), got {t.dtype}; "
                        "threshold scores first")
    return t.long().reshape(-1)


def confusion_counts(preds: Tensor | Sequence[int], labels: Tensor | Sequence[int]) -> dict[str, int]:
    """TP, FP, FN, TN and unparsed counts of predictions (1/0/-1) against labels (1/0).

    An unparsed answer on a positive sample is also a false negative; on a negative sample it is
    in no cell (not a true negative).
    """
    p = _as_long(preds, "preds")
    y = _as_long(labels, "labels")
    if p.shape != y.shape:
        raise DataError(f"preds has {p.numel()} entries but labels has {y.numel()}; pass one prediction per label")
    bad = ~((p == 1) | (p == 0) | (p == UNPARSED))
    if bad.any():
        raise DataError(f"prediction {int(p[bad][0])} at position {int(bad.nonzero()[0])} is not 1, 0 or -1 (unparsed)")
    if ((y != 0) & (y != 1)).any():
        i = int(((y != 0) & (y != 1)).nonzero()[0])
        raise DataError(f"label {int(y[i])} at position {i} is not 1 (yes) or 0 (no)")
    pos = y == 1
    return {
        "tp": int(((p == 1) & pos).sum()),
        "fp": int(((p == 1) & ~pos).sum()),
        "fn": int(((p != 1) & pos).sum()),
        "tn": int(((p == 0) & ~pos).sum()),
        "unparsed": int((p == UNPARSED).sum()),
    }


def binary_metrics(preds: Tensor | Sequence[int], labels: Tensor | Sequence[int]) -> dict[str, Any]:
    """All reported numbers for one method: accuracy, precision, recall, F1, yes-ratio and counts.

    `yes_ratio` is the share of "yes" predictions among all N (the answer-bias check of the
    paper's VizWiz/SAVs discussion). Returns plain Python numbers (JSON-able).

    >>> binary_metrics([1, 0, 1, 1], [1, 0, 0, 1])["accuracy"]
    0.75
    """
    c = confusion_counts(preds, labels)
    n = torch.as_tensor(preds).numel()
    if n == 0:
        raise DataError("no predictions to score; pass at least one sample")
    m = {k: float(v) for k, v in metrics_from_counts(c["tp"], c["fp"], c["fn"], c["tn"], n).items()}
    m["yes_ratio"] = (c["tp"] + c["fp"]) / n
    m["n"] = n
    m.update(c)
    return m
