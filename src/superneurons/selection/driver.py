"""The one Alg. 1 driver: score every neuron of a probing set, sweep SNt, select the Super Neurons.

`fit(source)` runs `superneurons.scoring.probe_neurons` once (one streamed pass over a tensor or
an activation store, keeping the near-best neurons' activations), the SNt sweep of Sec. 4.2 on
them (`snt_sweep`), picks SNt by the sweep's `choose_by` column (unless `snt` / `top_k` are
given) and selects the set (`select_super_neurons`). Every caller that finds SNs goes through it:
`superneurons.inference.fit_classifier` (wraps the result as a classifier), the report's probe
analysis and the experiments.

    >>> sel = fit(store, SelectConfig(metric="accuracy"))        # doctest: +SKIP
    >>> sel.sns.k, sel.sns.exit_layer, sel.chosen["snt"]         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from superneurons.config import ScoreConfig, SelectConfig
from superneurons.constants import METRICS, Aggregation, Metric
from superneurons.scoring.neurons import NeuronScores, Probe, probe_neurons
from superneurons.selection.sets import SuperNeurons, select_super_neurons
from superneurons.selection.sweep import choose_snt, snt_sweep


@dataclass
class Selection:
    """What `fit` found: the SN set, the SNt sweep table and its chosen row (None when SNt or top-k
    was given), the best single neuron (layer, neuron and its scores), and the scoring pass itself
    (every neuron's scores and the near-best pool, for more sweeps and figures)."""

    sns: SuperNeurons
    sweep: list[dict[str, Any]]
    chosen: dict[str, Any] | None
    best_single: dict[str, Any]
    probe: Probe


def best_single(scores: NeuronScores, metric: Metric, max_layer: int | None = None) -> dict[str, Any]:
    """The best single neuron on `metric` (paper Tab. 1): {"layer", "neuron", <each scored metric>}."""
    best = select_super_neurons(scores, metric=metric, top_k=1, max_layer=max_layer)
    layer, neuron = int(best.layers[0]), int(best.neurons[0])
    row = scores.layers.index(layer)
    return {"layer": layer, "neuron": neuron,
            **{m: float(t[row, neuron]) for m, t in scores.items() if m in METRICS}}


def fit(source: Any, select: SelectConfig | None = None, score: ScoreConfig | None = None, *,
        labels: Tensor | Sequence[int] | None = None, aggregation: Aggregation = "mean",
        model_preds: Tensor | Sequence[int] | None = None, keep_within: float | None = None) -> Selection:
    """Alg. 1 on `source` (Tensor[N, L, D] or an activation store; `labels` default to the store's).

    `aggregation` names the sweep column SNt is chosen by when `select.choose_by` is None
    (`<aggregation>_<metric>`; fraction answers as vote). `model_preds` (the model's answers on the
    probing set) add the agreement rate AR@SNt to the sweep. `keep_within` keeps neurons further
    below the best than the sweep depth (for longer AR curves).
    """
    sel = select or SelectConfig()
    sc = score or ScoreConfig()
    probe = probe_neurons(source, labels, sc.alpha, sc.metrics, polarity=sc.polarity,
                          per_neuron_alpha=sc.per_neuron_alpha, quantiles=sc.quantiles, rule_metric=sel.metric,
                          max_layer=sel.max_layer, chunk_layers=sc.chunk_layers, keep_metric=sel.metric,
                          keep_within=max(sel.depth, keep_within or 0.0), keep_step=sel.step)
    sweep = snt_sweep(probe, metric=sel.metric, step=sel.step, depth=sel.depth, max_layer=sel.max_layer,
                      model_preds=model_preds)
    chosen, snt = None, sel.snt
    if sel.snt is None and sel.top_k is None:
        agg = "vote" if aggregation == "fraction" else aggregation
        chosen = choose_snt(sweep, by=sel.choose_by or f"{agg}_{sel.metric}")
        snt = chosen["snt"]
    sns = select_super_neurons(probe.scores, metric=sel.metric, snt=snt, top_k=sel.top_k, max_layer=sel.max_layer)
    return Selection(sns=sns, sweep=sweep, chosen=chosen, best_single=best_single(probe.scores, sel.metric,
                                                                                   sel.max_layer), probe=probe)

