"""Super Neuron sets (Alg. 1 line 7, eq. 5): `SuperNeurons` and `select_super_neurons`.

`select_super_neurons` keeps the neurons whose score is strictly above SNt (eq. 5), optionally
only the `top_k` best and only layers <= `max_layer` (so inference can exit early). Ordering is
by score, best first; equal scores keep the shallower (layer, neuron) first. A `SuperNeurons`
set knows the layers it needs (`layers_needed`), where inference can stop (`exit_layer`, L*) and
how to read its K columns out of captured activations (`gather`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from superneurons.constants import METRICS, Metric
from superneurons.errors import DataError
from superneurons.scoring.neurons import ALPHA_KEY, RULE_KEY


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
    metric: Metric = "accuracy"
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

    @property
    def layers_needed(self) -> list[int]:
        """The distinct SN layers, ascending: the only ones inference records."""
        return sorted({int(v) for v in self.layers})

    def gather(self, acts: Tensor, layers: Sequence[int] | None = None) -> Tensor:
        """The K SN columns [N, K] (in set order) of activations [N, l, D] whose l rows are the model
        layers `layers` (default `layers_needed`, what inference captures)."""
        rows = self.layers_needed if layers is None else [int(v) for v in layers]
        where = {layer: i for i, layer in enumerate(rows)}
        missing = sorted({int(v) for v in self.layers} - set(where))
        if missing:
            raise DataError(f"the activations hold layers {rows}, not the SN layer(s) {missing}; capture them")
        if acts.dim() != 3 or acts.shape[1] != len(rows):
            raise DataError(f"activations must be [N, {len(rows)}, D] (one row per layer {rows}), "
                            f"got {list(acts.shape)}")
        pos = torch.tensor([where[int(v)] for v in self.layers], device=acts.device)
        return acts[:, pos, self.neurons.to(acts.device)]

    def per_layer(self) -> dict[int, int]:
        """Number of SNs in each layer (paper Fig. 3b), layers ascending."""
        ids, counts = torch.unique(self.layers, return_counts=True)
        return {int(i): int(c) for i, c in zip(ids, counts, strict=True)}

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-able dict per SN: layer, neuron, score, alpha, rule."""
        return [{"layer": int(layer), "neuron": int(n), "score": float(s), "alpha": float(a), "rule": int(r)}
                for layer, n, s, a, r in zip(self.layers, self.neurons, self.scores, self.alpha, self.rule,
                                             strict=True)]


def layer_ids(scores: dict[str, Tensor], metric: str, layers: Sequence[int] | None) -> list[int]:
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
    ids = torch.tensor(layer_ids(scores, metric, layers))
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
