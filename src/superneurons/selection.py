"""Pick Super Neurons from per-neuron scores (Alg. 1 line 7, eq. 5) and sweep SNt (Sec. 4.2).

- `select_super_neurons`: the neurons whose score is strictly above SNt (eq. 5), optionally
  only the `top_k` best and only layers <= `max_layer` (so inference can exit early). Ordering
  is by score, best first; equal scores keep the shallower (layer, neuron) first.
- `snt_candidates`: the paper's protocol: SNt values on a grid of `step` (1 point = 0.01 for
  LLaVA, 0.1 point = 0.001 for Qwen) from the largest grid value strictly below the best single
  neuron's score (SNt = best would select nothing, since eq. 5 is strict) down to best - depth
  (3 points = 0.03).
- `snt_sweep`: evaluates the SN set of every candidate SNt on the probing set (vote and mean
  aggregation metrics, SN count, exit layer L*, and AR@SNt when model answers are given) and
  returns the table; `choose_snt` picks a row from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from superneurons.errors import DataError
from superneurons.metrics import METRICS, binary_metrics
from superneurons.scoring import (
    ALPHA_KEY,
    RULE_KEY,
    Probe,
    column_counts,
    greater_than,
    grid_units,
    lowest_grid_index,
    probe_neurons,
    round_down_threshold,
)

DEFAULT_STEP = 0.01
DEFAULT_DEPTH = 0.03
DEFAULT_CHOOSE_BY = "vote_accuracy"
_SWEEP_ROWS = 4096
_TOL = 1e-9


@dataclass
class SuperNeurons:
    """A selected set of K neurons, best first.

    `layers` are model layer indices, `neurons` hidden units, `scores` the probe score on
    `metric`; `alpha`/`rule` are each neuron's threshold and rule (+1: `H > alpha` is yes, -1:
    `H <= alpha` is yes). `exit_layer` (L*) is the deepest layer used: inference can stop there.
    """

    layers: Tensor
    neurons: Tensor
    scores: Tensor
    alpha: Tensor
    rule: Tensor
    metric: str = "accuracy"
    snt: float | None = None
    top_k: int | None = None
    max_layer: int | None = None

    def __post_init__(self) -> None:
        k = self.layers.numel()
        for name in ("neurons", "scores", "alpha", "rule"):
            if getattr(self, name).numel() != k:
                raise DataError(f"SuperNeurons.{name} has {getattr(self, name).numel()} entries for {k} neurons")

    @property
    def k(self) -> int:
        return int(self.layers.numel())

    @property
    def exit_layer(self) -> int:
        """L*: the deepest selected layer."""
        if self.k == 0:
            raise DataError("an empty SN set has no exit layer")
        return int(self.layers.max())

    def per_layer(self) -> dict[int, int]:
        """Number of SNs in each layer (paper Fig. 3b), layers ascending."""
        ids, counts = torch.unique(self.layers, return_counts=True)
        return {int(i): int(c) for i, c in zip(ids, counts, strict=True)}

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-able dict per SN: layer, neuron, score, alpha, rule."""
        return [{"layer": int(layer), "neuron": int(n), "score": float(s), "alpha": float(a), "rule": int(r)}
                for layer, n, s, a, r in zip(self.layers, self.neurons, self.scores, self.alpha, self.rule,
                                             strict=True)]


def _layer_ids(scores: dict[str, Tensor], metric: str, layers: Sequence[int] | None) -> list[int]:
    n_rows = scores[metric].shape[0]
    ids = list(layers) if layers is not None else getattr(scores, "layers", None) or list(range(n_rows))
    if len(ids) != n_rows:
        raise DataError(f"{len(ids)} layer ids for {n_rows} score rows; pass one model layer per row")
    return [int(v) for v in ids]


def select_super_neurons(scores: dict[str, Tensor], metric: str = "accuracy", snt: float | None = None,
                         top_k: int | None = None, max_layer: int | None = None,
                         layers: Sequence[int] | None = None) -> SuperNeurons:
    """Select SNs by SNt (score > snt, eq. 5) and/or the `top_k` best, in layers <= `max_layer`.

    With neither `snt` nor `top_k`, returns the single best neuron (paper Tab. 1). `layers` maps
    score rows to model layers (default: `scores.layers` of `NeuronScores`, else 0..L-1).
    """
    if metric not in scores:
        valid = [m for m in METRICS if m in scores]
        raise DataError(f"no {metric!r} scores; scored metrics: {', '.join(valid)} (score it with metrics=...)")
    if snt is not None and not 0.0 <= snt <= 1.0:
        raise DataError(f"snt={snt} is outside [0, 1]; SNt is a score fraction (0.92, not 92)")
    if top_k is not None and top_k < 1:
        raise DataError(f"top_k={top_k}; ask for at least one neuron")
    s = scores[metric].to(torch.float64)
    n_rows, d = s.shape
    ids = torch.tensor(_layer_ids(scores, metric, layers))
    allowed = torch.ones(n_rows, dtype=torch.bool) if max_layer is None else ids <= max_layer
    if not bool(allowed.any()):
        raise DataError(f"max_layer={max_layer} keeps no scored layer (scored layers start at {int(ids.min())})")
    flat = s.masked_fill(~allowed[:, None], -math.inf).reshape(-1)
    order = torch.sort(-flat, stable=True).indices  # best first, ties: shallower first
    keep = flat[order] > -math.inf
    if snt is not None:
        keep &= flat[order] > snt
    order = order[keep]
    if snt is None and top_k is None:
        top_k = 1
    if top_k is not None:
        order = order[:top_k]
    if order.numel() == 0:
        best = int(flat.argmax())
        raise DataError(f"no neuron has {metric} > {snt} (best: {float(flat[best]):.4f} at layer "
                        f"{int(ids[best // d])}, neuron {best % d}); lower snt or use top_k")
    rows, neurons = order // d, order % d
    alpha = scores[ALPHA_KEY].reshape(-1)[order] if ALPHA_KEY in scores else torch.zeros(order.numel())
    rule = scores[RULE_KEY].reshape(-1)[order] if RULE_KEY in scores else torch.ones(order.numel())
    return SuperNeurons(layers=ids[rows], neurons=neurons, scores=flat[order], alpha=alpha.to(torch.float64),
                        rule=rule.to(torch.int8), metric=metric, snt=snt, top_k=top_k, max_layer=max_layer)


def snt_candidates(best: float, step: float = DEFAULT_STEP, depth: float = DEFAULT_DEPTH) -> list[float]:
    """SNt values g = j * step with best - depth <= g < best and g >= 0, highest first.

    >>> snt_candidates(0.925)
    [0.92, 0.91, 0.9]
    """
    units = grid_units(step)
    top = lowest_grid_index(best, units) - 1  # strictly below best (eq. 5 is strict)
    low = max(0, lowest_grid_index(best - depth - _TOL, units))
    return [j / units for j in range(top, low - 1, -1)]


def snt_sweep(source: Any, labels: Tensor | Sequence[int] | None = None, *, metric: str = "accuracy",
              step: float = DEFAULT_STEP, depth: float = DEFAULT_DEPTH, max_layer: int | None = None,
              model_preds: Tensor | Sequence[int] | None = None, snts: Sequence[float] | None = None,
              **probe_kwargs: Any) -> list[dict[str, Any]]:
    """Evaluate the SN set of each candidate SNt on the probing set; one table row per SNt.

    `source` is a `Probe` from `probe_neurons(..., keep_metric=metric, keep_within>=depth)` or
    activations (tensor or store, then probed here in one pass with `probe_kwargs`). Candidates
    come from `snt_candidates(best, step, depth)` unless `snts` is given. Row keys: `snt`, `k`,
    `num_layers`, `exit_layer`, `vote_*` and `mean_*` (accuracy, precision, recall, f1,
    yes_ratio) and, with `model_preds`, `ar` (eq. 7 agreement of the SNs with the model).
    """
    if isinstance(source, Probe):
        probe = source
        if probe.keep_metric != metric:
            raise DataError(f"the probe kept neurons by {probe.keep_metric!r} but the sweep is on {metric!r}; "
                            f"probe with keep_metric={metric!r}")
    else:
        probe = probe_neurons(source, labels, metrics=(metric,), keep_metric=metric, keep_within=depth,
                              keep_step=step, keep_above=None if snts is None else min(snts),
                              max_layer=max_layer, **probe_kwargs)
    scores = probe.scores
    ids = torch.tensor(_layer_ids(scores, metric, None))
    s = scores[metric].to(torch.float64)
    d = s.shape[1]
    allowed_rows = torch.ones(len(ids), dtype=torch.bool) if max_layer is None else ids <= max_layer
    if not bool(allowed_rows.any()):
        raise DataError(f"max_layer={max_layer} keeps no scored layer")
    best = float(s[allowed_rows].max())
    cands = list(snts) if snts is not None else snt_candidates(best, step, depth)
    if not cands:
        return []
    if min(cands) < probe.pool_floor - _TOL:
        raise DataError(f"SNt {min(cands)} is below what the probe kept ({probe.pool_floor:.4f}); "
                        "probe again with a larger keep_within, a finer keep_step or keep_above")
    keep = allowed_rows[probe.pool_index // d].nonzero().squeeze(1)
    idx, vals = probe.pool_index[keep], probe.pool_scores[keep]  # best first
    pacts = probe.pool_acts.index_select(0, keep) if keep.numel() < probe.pool_index.numel() else probe.pool_acts
    alpha = scores[ALPHA_KEY].reshape(-1)[idx].to(torch.float64)
    rule = scores[RULE_KEY].reshape(-1)[idx].to(torch.float64)
    layer_of = ids[idx // d]
    n = probe.labels.numel()
    m_preds = None if model_preds is None else torch.as_tensor(model_preds).long().reshape(-1)
    if m_preds is not None and m_preds.numel() != n:
        raise DataError(f"model_preds has {m_preds.numel()} entries for {n} probe samples")
    counts = _nested_counts(pacts, vals, alpha, rule, cands, m_preds)
    y = probe.labels
    table = []
    for j, t in enumerate(cands):
        k, yes, margin, agree = counts[j]
        row: dict[str, Any] = {"snt": float(t), "k": k}
        if k == 0:
            row.update({"num_layers": 0, "exit_layer": None})
            table.append(row)
            continue
        used = layer_of[:k]
        row.update({"num_layers": int(torch.unique(used).numel()), "exit_layer": int(used.max())})
        for name, preds in (("vote", (2 * yes > k).long()), ("mean", (margin / k > 0).long())):
            m = binary_metrics(preds, y)
            for key in (*METRICS, "yes_ratio"):
                row[f"{name}_{key}"] = m[key]
        if agree is not None:
            row["ar"] = agree / (k * n)
        table.append(row)
    return table


def _nested_counts(acts: Tensor, vals: Tensor, alpha: Tensor, rule: Tensor, cands: Sequence[float],
                   model_preds: Tensor | None) -> list[tuple[int, Tensor, Tensor, float | None]]:
    """Per SNt: (K, yes votes [N], sum of margins [N], agreeing (sample, SN) pairs or None).

    `acts` [k, N] are sorted by score (`vals`) best first, so each SNt's set (score > SNt) is a
    prefix: one pass over the rows, accumulating segment by segment.
    """
    n = acts.shape[1]
    flipped = bool((rule < 0).any())
    order = sorted(range(len(cands)), key=lambda j: -cands[j])
    prefix = torch.searchsorted(-vals.contiguous(), -torch.tensor([cands[j] for j in order], dtype=torch.float64))
    yes = torch.zeros(n, dtype=torch.float64)
    margin = torch.zeros(n, dtype=torch.float64)
    agree = 0.0
    if model_preds is not None:
        m_yes, m_no = (model_preds == 1).to(torch.float32), (model_preds == 0).to(torch.float32)
        n_no = float(m_no.sum())
    out: list[tuple[int, Tensor, Tensor, float | None]] = [None] * len(cands)  # type: ignore[list-item]
    done = 0
    for j, p in zip(order, prefix.tolist(), strict=True):
        for lo in range(done, p, _SWEEP_ROWS):
            sl = slice(lo, min(lo + _SWEEP_ROWS, p))
            h = acts[sl]
            above = torch.empty(h.shape, dtype=torch.bool)
            greater_than(h, round_down_threshold(alpha[sl], h.dtype)[:, None], above)  # exact: h > alpha
            if flipped:
                neg = (rule[sl] < 0)[:, None]
                above ^= neg
                margin += (h.to(torch.float32) * rule[sl, None].to(torch.float32)).sum(0, dtype=torch.float64)
            else:
                margin += torch.sum(h, dim=0, dtype=torch.float32).to(torch.float64)
            margin -= float((rule[sl] * alpha[sl]).sum())
            yes += column_counts(above)[0].to(torch.float64)
            if model_preds is not None:  # an unparsed model answer (-1) agrees with no SN
                a = above.to(torch.float32)
                agree += float((a @ m_yes).sum()) + n_no * a.shape[0] - float((a @ m_no).sum())
        done = max(done, p)
        out[j] = (p, yes.clone(), margin.clone(), agree if model_preds is not None else None)
    return out


def choose_snt(table: Sequence[dict[str, Any]], by: str = DEFAULT_CHOOSE_BY) -> dict[str, Any]:
    """The sweep row with the highest `by` (e.g. "vote_accuracy", "mean_f1").

    Ties go to the shallower exit layer, then to the higher SNt (fewer neurons).
    """
    rows = [r for r in table if r.get("k")]
    if not rows:
        raise DataError("the SNt sweep selected no neuron at any SNt; lower the SNt or check the scores")
    if by not in rows[0]:
        keys = [k for k in rows[0] if k.startswith(("vote_", "mean_")) or k == "ar"]
        raise DataError(f"cannot choose by {by!r}; sweep columns: {', '.join(keys)}")
    return max(rows, key=lambda r: (r[by], -r["exit_layer"], r["snt"]))
