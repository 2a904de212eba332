"""The SNt sweep (Sec. 4.2): evaluate the SN set of every candidate SNt on the probing set.

- `snt_candidates`: the paper's protocol: SNt values on a grid of `step` (1 point = 0.01 for
  LLaVA, 0.1 point = 0.001 for Qwen) from the largest grid value strictly below the best single
  neuron's score (SNt = best would select nothing, since eq. 5 is strict) down to best - depth
  (3 points = 0.03).
- `snt_sweep`: evaluates the SN set of every candidate SNt on the probing set (vote and mean
  aggregation metrics, SN count, exit layer L*, and AR@SNt when model answers are given, eq. 7)
  and returns the table; `choose_snt` picks a row from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from superneurons.constants import METRICS, SNT_DEPTH, SNT_STEP
from superneurons.errors import DataError
from superneurons.scoring.counting import column_counts, greater_than, round_down_threshold
from superneurons.scoring.metrics import binary_metrics
from superneurons.scoring.neurons import ALPHA_KEY, RULE_KEY, Probe, probe_neurons
from superneurons.scoring.pool import grid_units, lowest_grid_index
from superneurons.selection.sets import layer_ids

DEFAULT_STEP = SNT_STEP
DEFAULT_DEPTH = SNT_DEPTH
DEFAULT_CHOOSE_BY = "vote_accuracy"
_SWEEP_ROWS = 4096
_TOL = 1e-9


class NoSuperNeurons(DataError):
    """The SNt sweep selected no neuron at any candidate SNt (e.g. layers <= max_layer hold none)."""


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
    ids = torch.tensor(layer_ids(scores, metric, None))
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
            yes += column_counts(above).to(torch.float64)
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
        raise NoSuperNeurons("the SNt sweep selected no neuron at any SNt; lower the SNt or check the scores")
    if by not in rows[0]:
        keys = [k for k in rows[0] if k.startswith(("vote_", "mean_")) or k == "ar"]
        raise DataError(f"cannot choose by {by!r}; sweep columns: {', '.join(keys)}")
    return max(rows, key=lambda r: (r[by], -r["exit_layer"], r["snt"]))
