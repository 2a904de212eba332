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
from superneurons.scoring import ALPHA_KEY, RULE_KEY, Probe, probe_neurons, round_down_threshold

DEFAULT_STEP = 0.01
DEFAULT_DEPTH = 0.03
DEFAULT_CHOOSE_BY = "vote_accuracy"
_SWEEP_COLS = 2048
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


def _grid_units(step: float) -> int:
    units = round(1 / step)
    if step <= 0 or abs(units * step - 1) > 1e-6:
        raise DataError(f"step={step} must divide 1 (e.g. 0.01 = 1 point, 0.001 = 0.1 point)")
    return units


def snt_candidates(best: float, step: float = DEFAULT_STEP, depth: float = DEFAULT_DEPTH) -> list[float]:
    """SNt values g = j * step with best - depth <= g < best and g >= 0, highest first.

    >>> snt_candidates(0.925)
    [0.92, 0.91, 0.9]
    """
    units = _grid_units(step)
    j = math.floor(best * units)
    while j / units >= best:  # strictly below best (eq. 5 is strict)
        j -= 1
    while (j + 1) / units < best:
        j += 1
    out = []
    while j >= 0 and j / units >= best - depth - _TOL:
        out.append(j / units)
        j -= 1
    return out


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
                              keep_above=None if snts is None else min(snts), max_layer=max_layer,
                              **probe_kwargs)
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
                        f"probe again with a larger keep_within")
    idx = probe.pool_index
    rows_of = idx // d
    in_range = allowed_rows[rows_of]
    idx, pacts = idx[in_range], probe.pool_acts[:, in_range]
    vals = s.reshape(-1)[idx]
    alpha = scores[ALPHA_KEY].reshape(-1)[idx].to(torch.float64)
    rule = scores[RULE_KEY].reshape(-1)[idx].to(torch.float64)
    flipped = bool((rule < 0).any())
    layer_of = ids[idx // d]
    c = torch.tensor(cands, dtype=torch.float64)
    member = vals[:, None] > c[None, :]  # [k, C]
    n = pacts.shape[0]
    # per candidate: yes votes and sum of margins rule * (h - alpha) = (rule * h) @ w - (rule * alpha) @ w
    yes = torch.zeros(n, len(cands), dtype=torch.float64)
    margin = -((rule * alpha) @ member.to(torch.float64)).expand(n, -1).clone()
    agree = torch.zeros(idx.numel(), dtype=torch.float64)
    m_preds = None if model_preds is None else torch.as_tensor(model_preds).long().reshape(-1)
    if m_preds is not None and m_preds.numel() != n:
        raise DataError(f"model_preds has {m_preds.numel()} entries for {n} probe samples")
    for lo in range(0, idx.numel(), _SWEEP_COLS):
        sl = slice(lo, lo + _SWEEP_COLS)
        h = pacts[:, sl].to(torch.float32)
        votes = h > round_down_threshold(alpha[sl], torch.float32)  # exact: h > alpha
        if flipped:
            votes = torch.where(rule[sl] < 0, ~votes, votes)
            h = h * rule[sl].to(torch.float32)
        w = member[sl].to(torch.float32)
        yes += (votes.to(torch.float32) @ w).to(torch.float64)  # exact integer counts (< 2**24)
        margin += (h @ w).to(torch.float64)
        if m_preds is not None:
            # an unparsed model answer (-1) agrees with no SN
            m_yes, m_no = m_preds == 1, m_preds == 0
            agree[sl] = (votes[m_yes].sum(0) + int(m_no.sum()) - votes[m_no].sum(0)).to(torch.float64)
    y = probe.labels
    table = []
    for j, t in enumerate(cands):
        sel = member[:, j]
        k = int(sel.sum())
        row: dict[str, Any] = {"snt": float(t), "k": k}
        if k == 0:
            row.update({"num_layers": 0, "exit_layer": None})
            table.append(row)
            continue
        used = layer_of[sel]
        row.update({"num_layers": int(torch.unique(used).numel()), "exit_layer": int(used.max())})
        for name, preds in (("vote", (2 * yes[:, j] > k).long()), ("mean", (margin[:, j] / k > 0).long())):
            m = binary_metrics(preds, y)
            for key in (*METRICS, "yes_ratio"):
                row[f"{name}_{key}"] = m[key]
        if m_preds is not None:
            row["ar"] = float(agree[sel].sum() / (k * n))
        table.append(row)
    return table


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
