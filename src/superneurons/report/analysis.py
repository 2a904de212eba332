"""What the demo measures for one question family, as JSON-able dicts (the numbers behind the report).

- `analyse_probe(acts, model_preds)`: Alg. 1 on the probing set (a store or tensor), in one pass: every
  neuron scored on accuracy / precision / recall / F1 (alpha = 0), the best single neuron per
  metric (Tab. 1), the paper's SNt sweep and the chosen SNt (Tab. 2), AR@SNt over a wider SNt
  range (Fig. 4), the neurons beating the model per layer and where they are (Fig. 3b, App.
  Fig. 1), the alpha sweep (Fig. 3a) and an early-exit SN set restricted to layers <= a cap.
Alg. 2 on the validation set is `superneurons.evaluation.compare` (with the cached generation passed
as `generated=`).

A neuron "beats the model" when its probe accuracy is strictly above the accuracy of the model's
generated answers on the same samples (as `superneurons.experiments.overlap.beating_masks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from superneurons.config import ScoreConfig, SelectConfig
from superneurons.constants import SNT_DEPTH, SNT_STEP
from superneurons.errors import DataError
from superneurons.scoring.metrics import binary_metrics
from superneurons.scoring.neurons import DEFAULT_ALPHAS, alpha_sweep
from superneurons.selection.driver import best_single, fit
from superneurons.selection.sets import SuperNeurons
from superneurons.selection.sweep import NoSuperNeurons, snt_candidates, snt_sweep

#: how far below the best neuron the AR@SNt curve (Fig. 4) goes, in score units
AR_SPAN = 0.25
CHOOSE_BY = "vote_accuracy"
METRIC = "accuracy"


@dataclass
class ProbeAnalysis:
    """`summary` (JSON-able) plus the selected SN sets (chosen SNt; the first cap's early-exit set or
    None; every cap's early-exit set as (cap, set))."""

    summary: dict[str, Any]
    sns: SuperNeurons
    early: SuperNeurons | None
    early_sets: list[tuple[int, SuperNeurons]] = field(default_factory=list)


def analyse_probe(acts: Any, model_preds: Sequence[int], labels: torch.Tensor | Sequence[int] | None = None, *,
                  alpha: float = 0.0, step: float = SNT_STEP, depth: float = SNT_DEPTH,
                  choose_by: str | None = None, early_max_layer: int | Sequence[int] | None = 2,
                  ar_span: float = AR_SPAN, alphas: Sequence[float] = DEFAULT_ALPHAS,
                  metric: str = METRIC) -> ProbeAnalysis:
    """Alg. 1 (`selection.fit`) and the probe-set figures for one family (see the module docstring).

    `acts` is an activation store or a `Tensor[N, L, D]`; `labels` (1/0 per sample) default to
    the store's; `model_preds` are the model's parsed answers (1/0) on the same samples, in order.
    `metric` is what SNt is optimised for (chosen by the majority vote's `metric` unless `choose_by`).
    `early_max_layer`: one cap or several; per cap, the SN set restricted to layers <= it
    (`early_sets`, `summary["early_sets"]`; caps with no neuron passing the sweep are left out);
    `early` / `summary["early"]` is the first cap's set or None.
    """
    if labels is None:
        if not hasattr(acts, "labels"):
            raise DataError("labels are missing; pass labels (1 yes / 0 no per sample) with a plain tensor")
        labels = acts.labels
    y = torch.as_tensor(labels).long().reshape(-1)
    preds = torch.as_tensor(list(model_preds)).long()
    if preds.numel() != y.numel():
        raise DataError(f"{preds.numel()} model answers for {y.numel()} probe samples; answer every sample")
    model = binary_metrics(preds, y)
    score = ScoreConfig(alpha=alpha)
    sel = SelectConfig(metric=metric, step=step, depth=depth,  # type: ignore[arg-type]
                       choose_by=choose_by or (CHOOSE_BY if metric == METRIC else f"vote_{metric}"))
    found = fit(acts, sel, score, labels=y, model_preds=preds, keep_within=ar_span)
    scores = found.probe.scores
    layer_ids = scores.layers
    best_sn = {m: best_single(scores, m) for m in (METRIC, "f1")}
    best = float(scores[metric].max())
    ar_curve = snt_sweep(found.probe, metric=metric, snts=snt_candidates(best, step, ar_span), model_preds=preds)
    beats = scores[METRIC] > model["accuracy"]  # [L, D]
    li, di = beats.nonzero(as_tuple=True)
    n_layers = max(layer_ids) + 1
    per_layer = [0] * n_layers
    for row, count in enumerate(beats.sum(dim=1).tolist()):
        per_layer[layer_ids[row]] = int(count)
    summary: dict[str, Any] = {
        "n": int(y.numel()), "model": model, "best_sn": best_sn, "sweep": found.sweep, "chosen": found.chosen,
        "ar_curve": [{k: r.get(k) for k in ("snt", "k", "exit_layer", "ar", "vote_accuracy", "mean_accuracy")}
                     for r in ar_curve],
        "beating": {"count": int(beats.sum()), "per_layer": per_layer,
                    "neurons": [[layer_ids[int(a)], int(b)] for a, b in zip(li, di, strict=True)]},
        "alpha_sweep": alpha_sweep(acts, y, alphas=alphas, metric=METRIC),
        "early": None, "early_sets": [],
    }
    caps = [] if early_max_layer is None else [early_max_layer] if isinstance(early_max_layer, int) \
        else list(early_max_layer)
    sets: list[tuple[int, SuperNeurons]] = []
    for cap in caps:
        if cap >= max(layer_ids):
            continue
        try:
            found_e = fit(acts, replace(sel, max_layer=cap), score, labels=y, model_preds=preds)
        except NoSuperNeurons:
            continue
        sets.append((cap, found_e.sns))
        summary["early_sets"].append({"max_layer": cap, "sweep": found_e.sweep, "chosen": found_e.chosen})
    early = sets[0][1] if sets and caps and sets[0][0] == caps[0] else None
    if early is not None:
        summary["early"] = summary["early_sets"][0]
    return ProbeAnalysis(summary=summary, sns=found.sns, early=early, early_sets=sets)


def families_matching_model(results: dict[str, Any]) -> list[str]:
    """Families whose SNs (mean or vote) match or beat the model's generated answers in accuracy."""
    out = []
    for f in results["families"]:
        m = results["family"][f]["val"]["methods"]
        if "model_generation" in m and max(m["sns_mean"]["accuracy"], m["sns_vote"]["accuracy"]) \
                >= m["model_generation"]["accuracy"]:
            out.append(f)
    return out
