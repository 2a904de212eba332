"""Turn K Super Neuron activations into one answer (Alg. 2, line 6) and the agreement rate (eq. 7).

Each SN k votes "yes" on sample n when `H[n, k] > alpha_k` (paper rule, `rule_k = +1`) or, for a
neuron fitted with the flipped polarity (`rule_k = -1`), when `H[n, k] <= alpha_k` (eq. 6).

Aggregations (`AGGREGATIONS`):
- `vote`: majority of the K binary SN predictions. **Tie rule:** "yes" needs strictly more than
  half of the votes, so a tie (possible for even K) answers "no" (the same as the argmax over
  (no, yes) vote counts, which returns the first class on a tie).
- `mean`: the paper's "average all SN predictions" is ambiguous: averaging the binary votes and
  thresholding at 1/2 is just `vote`. We implement the variant that differs: average the *raw*
  SN activations and threshold the mean at alpha, i.e. `mean_k(H[n, k]) > alpha`. In general
  (per-neuron alphas and rules) it is `mean_k rule_k * (H[n, k] - alpha_k) > 0`, which reduces
  to the former for the paper's rule and one alpha. Its score is that mean margin.
- `fraction`: the share of SNs voting yes, a score in [0, 1] for ROC curves; its prediction
  (`fraction > 1/2`) equals `vote`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from superneurons.constants import AGGREGATIONS, Aggregation
from superneurons.errors import DataError


def _check_acts(acts: Tensor) -> Tensor:
    if acts.dim() != 2:
        raise DataError(f"SN activations must be [N, K], got shape {list(acts.shape)}")
    if acts.shape[1] == 0:
        raise DataError("no Super Neurons to aggregate (K = 0); select at least one neuron")
    return acts


def _per_neuron(value: float | Tensor | None, k: int, default: float, name: str) -> Tensor:
    if value is None:
        return torch.full((k,), default, dtype=torch.float64)
    t = torch.as_tensor(value, dtype=torch.float64)
    if t.dim() == 0:
        return t.expand(k)
    if t.shape != (k,):
        raise DataError(f"{name} has shape {list(t.shape)}; give one value or one per SN ({k})")
    return t


def sn_votes(acts: Tensor, alpha: float | Tensor = 0.0, rule: Tensor | None = None) -> Tensor:
    """Binary SN predictions `[N, K]` (True = yes) of eq. 6, honouring per-neuron alpha and rule."""
    acts = _check_acts(acts)
    k = acts.shape[1]
    a = _per_neuron(alpha, k, 0.0, "alpha")
    r = _per_neuron(rule, k, 1.0, "rule")
    above = acts.to(torch.float64) > a
    return torch.where(r < 0, ~above, above)


def sn_margins(acts: Tensor, alpha: float | Tensor = 0.0, rule: Tensor | None = None) -> Tensor:
    """`rule_k * (H[n, k] - alpha_k)` as float64 `[N, K]`: > 0 leans yes."""
    acts = _check_acts(acts)
    k = acts.shape[1]
    a = _per_neuron(alpha, k, 0.0, "alpha")
    r = _per_neuron(rule, k, 1.0, "rule")
    return (acts.to(torch.float64) - a) * r


def fraction(votes: Tensor) -> Tensor:
    """Share of SNs voting yes per sample, float32 `[N]` in [0, 1]."""
    votes = _check_acts(votes)
    return votes.to(torch.float32).mean(dim=1)


def vote(votes: Tensor) -> Tensor:
    """Majority vote `[N]` (1 yes / 0 no) of binary SN predictions `[N, K]`; ties answer no."""
    votes = _check_acts(votes)
    yes = votes.to(torch.int64).sum(dim=1)
    return (2 * yes > votes.shape[1]).long()


def aggregate(acts: Tensor, how: Aggregation = "mean", alpha: float | Tensor = 0.0,
              rule: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(predictions `[N]` 1/0, scores `[N]` float32) of SN activations `[N, K]` by `how`.

    Scores rank samples for ROC curves: the mean margin for `mean`, the yes-fraction otherwise.
    """
    if how not in AGGREGATIONS:
        raise DataError(f"aggregation {how!r} is not one of {', '.join(AGGREGATIONS)}")
    if how == "mean":
        m = sn_margins(acts, alpha, rule).mean(dim=1)
        return (m > 0).long(), m.to(torch.float32)
    votes = sn_votes(acts, alpha, rule)
    return vote(votes), fraction(votes)


def agreement_rate(sn_preds: Tensor, model_preds: Tensor | Sequence[int]) -> float:
    """Eq. 7: share of (sample, SN) pairs where the SN's answer equals the model's.

    `sn_preds` is `[N, K]` binary SN predictions (or `[N]` for one aggregated answer);
    `model_preds` is `[N]` of 1/0 (an unparsed model answer, -1, never agrees).
    """
    p = torch.as_tensor(sn_preds)
    if p.dim() == 1:
        p = p[:, None]
    m = torch.as_tensor(model_preds).long().reshape(-1)
    if p.dim() != 2 or p.shape[0] != m.numel():
        raise DataError(f"sn_preds {list(p.shape)} and model_preds [{m.numel()}] must share N")
    if p.numel() == 0:
        raise DataError("agreement rate of an empty set: need at least one sample and one SN")
    return float((p.long() == m[:, None]).to(torch.float64).mean())
