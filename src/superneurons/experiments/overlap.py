"""The `overlap` experiment: neurons that beat the model on several datasets at once (paper appendix Fig. 2).

For each dataset, every neuron is scored on the probing set (`score_neurons`, one metric,
accuracy by default) and compared with the model's own score on the same samples (generation +
POPE parser). A neuron "beats the model" on a dataset when its score is strictly higher. The
table counts, for each dataset, each pair and all of them together (and the 10 most shared
combinations of every size in between), the neurons beating the model on all of them, with the
layers they sit in; the figure shows, as a layer x neuron map, on how many
datasets each neuron beats the model, the neurons that beat it on all of them, and the pairwise
counts.

`overlap_from_scores` does the counting from per-neuron scores (e.g. of existing stores, with
model scores measured elsewhere); `run` computes both from data.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from superneurons.constants import METRICS
from superneurons.errors import DataError
from superneurons.experiments._common import (
    FIGURE_PNG,
    Dataset,
    ExperimentResult,
    finish,
    labels_of,
    new_figure,
    require_matplotlib,
)
from superneurons.experiments.workspace import Workspace
from superneurons.scoring.metrics import binary_metrics

MAX_LARGE_COMBOS = 10  # rows per combination size between 3 and all-but-one


def beating_masks(scores: Mapping[str, Tensor], model_scores: Mapping[str, float]) -> dict[str, Tensor]:
    """Bool `[L, D]` per dataset: neuron score > the model's score on that dataset."""
    missing = [n for n in scores if n not in model_scores]
    if missing:
        raise DataError(f"no model score for dataset(s) {missing}; give one per dataset")
    shapes = {tuple(s.shape) for s in scores.values()}
    if len(shapes) != 1:
        raise DataError(f"per-neuron scores have different shapes {sorted(shapes)}; use stores of one model "
                        "with the same layers")
    return {n: s.to(torch.float64) > float(model_scores[n]) for n, s in scores.items()}


def _layer_summary(mask: Tensor, layers: Sequence[int]) -> str:
    per = mask.sum(dim=1)
    return ", ".join(f"{layers[i]}:{int(c)}" for i, c in enumerate(per.tolist()) if c)


def overlap_from_scores(scores: Mapping[str, Tensor], model_scores: Mapping[str, float], metric: str = "accuracy",
                        layers: Sequence[int] | None = None, out_dir: str | Path | None = None, plot: bool = True,
                        meta: dict[str, Any] | None = None) -> ExperimentResult:
    """Counts (and the figure) of neurons beating the model on each combination of datasets.

    `scores[name]` is `[L, D]` (rows = model `layers`, default 0..L-1); `model_scores[name]` the
    model's score on the same metric and samples.
    """
    if len(scores) < 2:
        raise DataError(f"overlap needs at least 2 datasets, got {len(scores)}")
    if plot and out_dir is not None:
        require_matplotlib("overlap")
    masks = beating_masks(scores, model_scores)
    names = list(masks)
    n_rows = next(iter(masks.values())).shape[0]
    layers = list(layers) if layers is not None else list(range(n_rows))
    rows: list[dict[str, Any]] = []
    for size in range(1, len(names) + 1):
        group = []
        for combo in itertools.combinations(names, size):
            m = torch.stack([masks[c] for c in combo]).all(dim=0)
            group.append({"datasets": " & ".join(combo), "n_datasets": size, "count": int(m.sum()),
                          "layers": _layer_summary(m, layers)})
        if 2 < size < len(names):  # the larger combinations: only the most shared ones
            group = sorted((g for g in group if g["count"]), key=lambda g: -g["count"])[:MAX_LARGE_COMBOS]
        rows += group
    every = torch.stack(list(masks.values())).all(dim=0)
    li, di = every.nonzero(as_tuple=True)
    result = ExperimentResult(
        name="overlap", title=f"Neurons beating the model ({metric}) on several datasets", paper="App. Fig. 2",
        columns=["datasets", "n_datasets", "count", "layers"], rows=rows, percent=(),
        meta={**(meta or {}), "metric": metric, "model_scores": dict(model_scores),
              "on_all": [{"layer": layers[int(a)], "neuron": int(b),
                          **{n: float(scores[n][a, b]) for n in names}} for a, b in zip(li, di, strict=True)][:200],
              "notes": ["count: neurons whose probe score is above the model's on every listed dataset; "
                        "layers: layer:count of those neurons."]})
    if plot and out_dir is not None:
        result.figures.append(_plot(masks, layers, Path(out_dir), metric))
    return finish(result, out_dir)


def _plot(masks: Mapping[str, Tensor], layers: Sequence[int], out_dir: Path, metric: str) -> Path:
    names = list(masks)
    count = torch.stack([m.long() for m in masks.values()]).sum(dim=0)  # [L, D]
    every = count == len(names)
    fig, axes = new_figure(15, 4.2, ncols=3)
    ax = axes[0, 0]
    im = ax.imshow(count.numpy(), aspect="auto", interpolation="nearest", cmap="viridis", origin="lower",
                   vmin=0, vmax=len(names))
    fig.colorbar(im, ax=ax, label="datasets beaten", ticks=range(len(names) + 1))
    ax.set(title="datasets on which each neuron beats the model", xlabel="neuron", ylabel="layer")
    if len(layers) <= 40:
        ax.set_yticks(range(len(layers)), [str(v) for v in layers])
    ax = axes[0, 1]
    li, di = every.nonzero(as_tuple=True)
    ax.scatter(di.numpy(), [layers[i] for i in li.tolist()], s=12, c="C3")
    ax.set(xlim=(-0.5, count.shape[1] - 0.5), ylim=(min(layers) - 0.5, max(layers) + 0.5), xlabel="neuron",
           ylabel="layer", title=f"beat the model on all {len(names)} ({int(every.sum())} neurons)")
    if len(layers) <= 40:
        ax.set_yticks(list(layers), [str(v) for v in layers])
    ax = axes[0, 2]
    pair = torch.tensor([[int((masks[a] & masks[b]).sum()) for b in names] for a in names])
    ax.imshow(pair.numpy(), cmap="Blues")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(int(pair[i, j])), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_title("neurons beating the model on both")
    fig.suptitle(f"Super Neuron overlap across datasets ({metric})")
    path = out_dir / FIGURE_PNG.format(name="overlap")
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def run(ws: Workspace, datasets: Sequence[Dataset], out_dir: str | Path | None = None, metric: str | None = None,
        plot: bool = True) -> ExperimentResult:
    """Score every neuron on each dataset's probing set and count the neurons beating the model."""
    from superneurons.scoring import score_neurons

    metric = metric or ws.options.metric
    if metric not in METRICS:
        raise DataError(f"metric {metric!r} is not one of {', '.join(METRICS)}")
    if plot and out_dir is not None:
        require_matplotlib("overlap")
    scores: dict[str, Tensor] = {}
    model_scores: dict[str, float] = {}
    layers: list[int] | None = None
    for ds in datasets:
        probe = ds.need("probe", "overlap")
        s = score_neurons(ws.store(probe), metrics=(metric,), alpha=ws.options.alpha)
        scores[ds.name], layers = s[metric], s.layers
        model_scores[ds.name] = float(binary_metrics(ws.model_answers(probe).preds, labels_of(probe))[metric])
    return overlap_from_scores(scores, model_scores, metric, layers, out_dir, plot,
                               meta={"model": ws.vlm.name_or_path, "options": vars(ws.options)})
