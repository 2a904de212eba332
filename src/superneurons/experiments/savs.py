"""Sparse Attention Vectors (SAVs, Mitra et al., ICCV 2025), rebuilt from the paper's description,
and the `savs` experiment: SAVs vs Super Neurons with the same N probing samples (paper Tab. 3).

A SAV classifier, as described:
1. Per attention head, the head's output at the last prompt position: the input of the decoder
   layer's attention output projection (`VLM.attention_output`, `self_attn.o_proj` in Llama/Qwen
   layers: the concatenated heads before they are mixed), split into heads `[H * hd] -> [H, hd]`.
   Recorded by the trace (`record_inputs`); the forward stops after the deepest layer needed
   (early exit, as SNs do).
2. For every head, the mean output of each class ("no" = 0, "yes" = 1) over the probing set.
3. A head answers by the nearest class mean in cosine similarity (a tie answers no). Heads are
   ranked by that accuracy on the probing set (ties: larger mean cosine margin towards the true
   class, then shallower layer, lower head index); the top `k` (default 20) are kept.
4. The answer is the majority vote of those k heads (`aggregation.vote`: a tie answers no).

The paper compares both methods at N = 40 (SAVs' own budget) on balanced VizWiz; the experiment
draws one balanced probing subset of N samples and gives it to both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from superneurons.activations.trace import LayerTrace
from superneurons.errors import DataError, ModelError
from superneurons.experiments._common import Dataset, ExperimentResult, finish, labels_of, metric_row
from superneurons.experiments.workspace import Workspace
from superneurons.inference.aggregation import vote

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.models.base import VLM

DEFAULT_N = 40
DEFAULT_K = 20
NO, YES = 0, 1


# ----------------------------------------------------------------------------- head outputs
def head_layout(vlm: VLM) -> tuple[int, int]:
    """(number of attention heads H, head dim hd) of the language model's attention output."""
    heads = int(vlm.text_config.num_attention_heads)
    width = int(vlm.attention_output(0).in_features)
    if width % heads:
        raise ModelError(f"o_proj input width {width} is not a multiple of {heads} heads")
    return heads, width // heads


def head_outputs(vlm: VLM, samples: Sequence[Sample], layers: Sequence[int] | None = None,
                 heads: Tensor | None = None, batch_size: int = 8) -> Tensor:
    """Per-head attention outputs at the last prompt position, float32.

    With `heads=None`: `[N, len(layers), H, hd]` for `layers` (default: all). With `heads` a
    LongTensor `[k, 2]` of (layer, head): `[N, k, hd]`, only those heads. The forward stops after
    the deepest layer needed.
    """
    if not samples:
        raise DataError("head_outputs() got no samples")
    n_heads, hd = head_layout(vlm)
    if heads is not None:
        heads = torch.as_tensor(heads, dtype=torch.long).reshape(-1, 2)
        layers = sorted({int(v) for v in heads[:, 0]})
    layers = list(range(vlm.num_layers)) if layers is None else sorted({int(v) for v in layers})
    bad = [v for v in layers if not 0 <= v < vlm.num_layers]
    if bad or (heads is not None and bool(((heads[:, 1] < 0) | (heads[:, 1] >= n_heads)).any())):
        raise DataError(f"heads/layers out of range: the model has layers 0..{vlm.num_layers - 1} "
                        f"and heads 0..{n_heads - 1}")
    stop = layers[-1]
    out: list[Tensor] = []
    projs = {li: vlm.attention_output(li) for li in layers}
    for i in range(0, len(samples), batch_size):
        batch = vlm.prepare(samples[i:i + batch_size])
        # inputs of o_proj at the last prompt position (batches are left padded): [B, H * hd]
        with torch.inference_mode(), LayerTrace(vlm.decoder_layers, [], -1, stop_after=stop,
                                                record_inputs=projs) as trace:
            trace.run(vlm.model, **batch, use_cache=False)
        got = {li: x.float().reshape(x.shape[0], n_heads, hd).cpu() for li, x in trace.inputs.items()}
        stacked = torch.stack([got[li] for li in layers], dim=1)  # [B, l, H, hd]
        if heads is not None:
            pos = torch.tensor([layers.index(int(v)) for v in heads[:, 0]])
            stacked = stacked[:, pos, heads[:, 1]]  # [B, k, hd]
        out.append(stacked)
    return torch.cat(out, dim=0)


# ----------------------------------------------------------------------------- the classifier
@dataclass
class SparseAttentionVectors:
    """k selected heads (`heads[i] = (layer, head)`, best first), their class means `[k, 2, hd]`
    (index 0 = no, 1 = yes), their probe accuracy, and every head's probe accuracy `[L, H]`."""

    heads: Tensor
    means: Tensor
    accuracy: Tensor
    head_accuracy: Tensor

    @property
    def k(self) -> int:
        return int(self.heads.shape[0])

    @property
    def exit_layer(self) -> int:
        return int(self.heads[:, 0].max())

    def head_votes(self, acts: Tensor) -> Tensor:
        """Bool `[N, k]`: each head's answer (True = yes) for its outputs `acts` `[N, k, hd]`."""
        if acts.dim() != 3 or acts.shape[1] != self.k:
            raise DataError(f"SAV head outputs must be [N, {self.k}, hd], got {list(acts.shape)}")
        cos = torch.einsum("nkd,kcd->nkc", F.normalize(acts.float(), dim=-1), F.normalize(self.means.float(), dim=-1))
        return cos[..., YES] > cos[..., NO]

    def predict(self, acts: Tensor) -> Tensor:
        """LongTensor[N] (1 yes / 0 no): majority vote of the k heads."""
        return vote(self.head_votes(acts))

    def rows(self) -> list[dict[str, Any]]:
        return [{"layer": int(h[0]), "head": int(h[1]), "probe_accuracy": float(a)}
                for h, a in zip(self.heads, self.accuracy, strict=True)]


def fit_savs(head_acts: Tensor, labels: Tensor | Sequence[int], k: int = DEFAULT_K,
             layers: Sequence[int] | None = None) -> SparseAttentionVectors:
    """Class means per head and the top-`k` heads by nearest-class-mean (cosine) probe accuracy.

    `head_acts` is `[N, L, H, hd]` (rows = model `layers`, default 0..L-1); `labels` 1/0 per sample.
    """
    if head_acts.dim() != 4:
        raise DataError(f"head outputs must be [N, L, H, hd], got {list(head_acts.shape)}")
    y = torch.as_tensor(labels).long().reshape(-1)
    n, n_layers, n_heads, _ = head_acts.shape
    if y.numel() != n:
        raise DataError(f"{y.numel()} labels for {n} samples")
    if not bool((y == YES).any()) or not bool((y == NO).any()):
        raise DataError("SAVs need probing samples of both classes (yes and no)")
    if k < 1:
        raise DataError(f"k={k}; keep at least one head")
    layer_ids = torch.tensor(list(layers) if layers is not None else range(n_layers), dtype=torch.long)
    if layer_ids.numel() != n_layers:
        raise DataError(f"{layer_ids.numel()} layer ids for {n_layers} layers of head outputs")
    x = head_acts.float()
    means = torch.stack([x[y == NO].mean(0), x[y == YES].mean(0)])  # [2, L, H, hd]
    cos = torch.einsum("nlhd,clhd->nclh", F.normalize(x, dim=-1), F.normalize(means, dim=-1))
    pred = (cos[:, YES] > cos[:, NO]).long()  # [N, L, H]
    acc = (pred == y[:, None, None]).float().mean(0)
    sign = (2 * y - 1).float()[:, None, None]
    margin = ((cos[:, YES] - cos[:, NO]) * sign).mean(0)
    flat_acc, flat_margin = acc.reshape(-1), margin.reshape(-1)
    order = torch.sort(-flat_margin, stable=True).indices  # secondary key
    order = order[torch.sort(-flat_acc[order], stable=True).indices]  # primary key; index breaks ties
    top = order[:min(k, order.numel())]
    li, hi = top // n_heads, top % n_heads
    heads = torch.stack([layer_ids[li], hi], dim=1)
    return SparseAttentionVectors(heads=heads, means=means[:, li, hi].permute(1, 0, 2).contiguous(),
                                  accuracy=flat_acc[top], head_accuracy=acc)


# ----------------------------------------------------------------------------- the experiment
def run(ws: Workspace, datasets: Sequence[Dataset], out_dir: str | Path | None = None, n: int = DEFAULT_N,
        k: int = DEFAULT_K) -> ExperimentResult:
    """SAVs vs SNs, both found on the same balanced `n` probing samples, scored on validation."""
    from superneurons.data.samples import balanced_sample

    vlm, o = ws.vlm, ws.options
    rows: list[dict[str, Any]] = []
    chosen: dict[str, Any] = {}
    for ds in datasets:
        probe = balanced_sample(ds.need("probe", "savs"), n, seed=o.seed)
        val = ds.need("val", "savs")
        y_val = labels_of(val)
        rows.append(ws.model_row(val, dataset=ds.name, N=None))
        savs = fit_savs(head_outputs(vlm, probe, batch_size=o.batch_size), labels_of(probe), k)
        preds = savs.predict(head_outputs(vlm, val, heads=savs.heads, batch_size=o.batch_size))
        rows.append(metric_row(preds, y_val, dataset=ds.name, method="SAVs", N=len(probe), k=savs.k,
                               exit_layer=savs.exit_layer))
        rows += ws.sn_rows(ws.store(probe), ws.store(val), y_val, dataset=ds.name, N=len(probe))
        chosen[ds.name] = savs.rows()
    result = ExperimentResult(
        name="savs", title=f"SNs vs Sparse Attention Vectors (same N, top-{k} heads)", paper="Tab. 3",
        columns=["dataset", "method", "N", "accuracy", "precision", "recall", "f1", "yes_ratio", "k", "exit_layer"],
        rows=rows, meta={"model": vlm.name_or_path, "n": n, "k": k, "heads": chosen, "options": vars(o),
                         "notes": ["SAVs: per-head outputs (input of o_proj) at the last prompt position, "
                                   "nearest class mean by cosine, top-k heads by probe accuracy, majority vote.",
                                   "k: heads (SAVs) or Super Neurons (SNs); L*: the deepest layer used (the forward stops there)."]})
    return finish(result, out_dir)
