"""The paper's figures, drawn with matplotlib's object API (Agg canvas, no pyplot, no global state).

Each function reads a study's `results` dict (see `superneurons.study.run`) and returns a
`Figure` (PNG bytes + title + caption) for the report:

- `alpha_figure`: best single-neuron probe accuracy vs the threshold alpha (paper Fig. 3a),
- `sns_per_layer_figure`: neurons beating the model, per layer (Fig. 3b),
- `location_figure`: where those neurons are, layer x neuron (appendix Fig. 1),
- `agreement_figure`: agreement rate AR@SNt vs SNt (Fig. 4),
- `runtime_figure`: per-sample time of each inference path (the runtime comparison),
- `qualitative_figure`: validation examples the SNs answer right and the model wrong (Fig. 6).

Cross-dataset overlap (appendix Fig. 2), probing-set size (Fig. 5) and the cascade sweep are drawn
by `superneurons.experiments` and `superneurons.report.cascade_plot`; the report embeds them.
matplotlib is optional: `pip install superneurons[report]`.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from superneurons.report.document import Figure
from superneurons.utils.optional import require_matplotlib

DPI = 110
_NCOLS = 4


def _new(width: float, height: float, nrows: int = 1, ncols: int = 1) -> tuple[Any, Any]:
    fig = require_matplotlib()(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _color(results: dict[str, Any], family: str) -> str:
    return f"C{list(results['families']).index(family) % 10}"


def _grid(n: int) -> tuple[int, int]:
    ncols = min(_NCOLS, max(1, n))
    return math.ceil(n / ncols), ncols


def _panels(results: dict[str, Any], height: float = 2.6) -> tuple[Any, list[tuple[str, Any]]]:
    """One small panel per family (unused panels hidden)."""
    fams = list(results["families"])
    nrows, ncols = _grid(len(fams))
    fig, axes = _new(3.4 * ncols, height * nrows, nrows, ncols)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(fams):]:
        ax.set_visible(False)
    return fig, list(zip(fams, flat, strict=False))


def _model_acc(results: dict[str, Any], family: str) -> float:
    return float(results["family"][family]["probe"]["model"]["accuracy"])


# ----------------------------------------------------------------------------- Fig. 3a
def alpha_figure(results: dict[str, Any]) -> Figure:
    """Best single-neuron accuracy on the probing set for each alpha, one line per family."""
    fig, axes = _new(7.5, 4.2)
    ax = axes[0, 0]
    for f in results["families"]:
        rows = results["family"][f]["probe"]["alpha_sweep"]
        c = _color(results, f)
        ax.plot([r["alpha"] for r in rows], [100 * r["best"] for r in rows], "-o", color=c, markersize=3, label=f)
        ax.axhline(100 * _model_acc(results, f), color=c, linestyle="--", linewidth=0.8)
    ax.set(xlabel="activation threshold alpha", ylabel="best single-neuron accuracy (%)",
           title="Max. probe accuracy vs alpha (dashed: the model)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=2)
    return Figure("fig3a_alpha", "Fig. 3a: best accuracy vs the activation threshold alpha", _png(fig),
                  "Highest accuracy of any single neuron on the probing set when it answers yes iff its "
                  "activation > alpha. Dashed lines: the model's generated answers on the same samples. "
                  "The paper uses alpha = 0.")


# ----------------------------------------------------------------------------- Fig. 3b
def sns_per_layer_figure(results: dict[str, Any]) -> Figure:
    """Number of neurons whose probe accuracy beats the model's, per layer, one panel per family."""
    fig, panels = _panels(results)
    for f, ax in panels:
        b = results["family"][f]["probe"]["beating"]
        layers = list(range(len(b["per_layer"])))
        ax.bar(layers, b["per_layer"], color=_color(results, f))
        ax.set_title(f"{f} (model {100 * _model_acc(results, f):.1f}%, {b['count']} SNs)", fontsize=9)
        ax.set_xlabel("layer", fontsize=8)
        ax.set_xticks(layers if len(layers) <= 16 else layers[::max(1, len(layers) // 8)])
        ax.tick_params(labelsize=7)
    panels[0][1].set_ylabel("SNs beating the model", fontsize=8)
    return Figure("fig3b_sns_per_layer", "Fig. 3b: number of SNs per layer", _png(fig),
                  "Neurons whose accuracy on the probing set is above the model's (generated answers), "
                  "counted per decoder layer (0-based). SNs in the shallowest layers allow the earliest exit.")


# ----------------------------------------------------------------------------- App. Fig. 1
def location_figure(results: dict[str, Any]) -> Figure:
    """Layer x neuron map of the neurons beating the model, one panel per family."""
    d = int(results["meta"]["hidden_size"])
    n_layers = int(results["meta"]["num_layers"])
    fig, panels = _panels(results)
    for f, ax in panels:
        pts = results["family"][f]["probe"]["beating"]["neurons"]
        ax.scatter([p[1] for p in pts], [p[0] for p in pts], s=6, marker="s", color=_color(results, f))
        ax.set(xlim=(-0.5, d - 0.5), ylim=(-0.5, n_layers - 0.5))
        ax.set_title(f"{f} ({len(pts)} SNs)", fontsize=9)
        ax.set_xlabel("neuron", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.2)
    panels[0][1].set_ylabel("layer", fontsize=8)
    return Figure("appfig1_sn_locations", "App. Fig. 1: location of SNs (layer x neuron)", _png(fig),
                  "Each dot is a neuron whose probe accuracy beats the model on that family. Families the "
                  "model already answers well leave few SNs; hard ones leave many.")


# ----------------------------------------------------------------------------- Fig. 4
def agreement_figure(results: dict[str, Any]) -> Figure:
    """AR@SNt (eq. 7) of the SNs with the model's answers vs SNt, one panel per family."""
    fig, panels = _panels(results)
    for f, ax in panels:
        fr = results["family"][f]
        rows = [r for r in fr["probe"]["ar_curve"] if r.get("ar") is not None]
        c = _color(results, f)
        ax.plot([100 * r["snt"] for r in rows], [100 * r["ar"] for r in rows], "-", color=c, marker="o", markersize=2)
        ax.axvline(100 * _model_acc(results, f), color="0.3", linestyle="--", linewidth=0.9)
        chosen = fr.get("chosen") or {}
        if chosen.get("ar") is not None:
            ax.plot([100 * chosen["snt"]], [100 * chosen["ar"]], "*", color="k", markersize=9)
        ax.set_title(f, fontsize=9)
        ax.set_xlabel("SNt (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    panels[0][1].set_ylabel("AR@SNt (%)", fontsize=8)
    return Figure("fig4_agreement", "Fig. 4: agreement rate vs SNt", _png(fig),
                  "AR@SNt: share of (sample, SN) pairs where an SN with probe accuracy > SNt answers as the "
                  "model's generated answer does, on the probing set. Dashed: the model's accuracy; star: the "
                  "chosen SNt. To beat the model, SNs must disagree with it.")


# ----------------------------------------------------------------------------- runtime
def runtime_figure(bench: dict[str, Any]) -> Figure:
    """Horizontal bars of per-sample time (log scale) for each row of a `BenchResult.to_dict()`."""
    rows = list(bench["rows"])
    colors = {"model": "tab:red", "input": "tab:gray", "limit": "tab:blue", "library": "tab:green"}
    fig, axes = _new(8.5, 0.42 * len(rows) + 1.2)
    ax = axes[0, 0]
    ms = [1000 * r["seconds_per_sample"] for r in rows]
    y = list(range(len(rows)))[::-1]
    ax.barh(y, ms, color=[colors.get(r["group"], "C0") for r in rows])
    for yi, v in zip(y, ms, strict=True):
        ax.text(v, yi, f" {v:.3g} ms", va="center", fontsize=8)
    ax.set_yticks(y, [r["label"] for r in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(min(ms) / 2, max(ms) * 6)
    ax.set_xlabel("time per sample (ms, log scale)")
    ax.set_title(f"{bench['num_layers']} layers, hidden {bench['hidden_size']}, batch {bench['batch_size']}",
                 fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    return Figure("runtime", "Runtime comparison (same batch, same machine, one run)", _png(fig),
                  "Red: the model; blue: the bare hooked exit (the physical limit of early exit); green: the "
                  "library's SN inference; grey: input preparation.")


# ----------------------------------------------------------------------------- Fig. 6
def pick_examples(results: dict[str, Any], per_family: int = 1, limit: int = 8) -> list[dict[str, Any]]:
    """Validation answers where the SNs (majority vote) are right and the model's generation is
    wrong, `per_family` per family (families in order), at most `limit`."""
    out: list[dict[str, Any]] = []
    for f in results["families"]:
        answers = results["family"][f]["val"].get("answers") or []
        y = {"yes": 1, "no": 0}
        picked = [a for a in answers if "model_generation" in a and a.get("image")
                  and a["sns_vote"] == y.get(a["label"]) != a["model_generation"]][:per_family]
        out += [{**a, "family": f} for a in picked]
    return out[:limit]


def qualitative_figure(results: dict[str, Any], base_dir: str | Path) -> Figure | None:
    """Validation examples the SNs answer right and the model wrong (paper Fig. 6); None if none."""
    from PIL import Image

    examples = [e for e in pick_examples(results) if (Path(base_dir) / e["image"]).is_file()]
    if not examples:
        return None
    ncols = min(4, len(examples))
    nrows = math.ceil(len(examples) / ncols)
    fig, axes = _new(3.0 * ncols, 4.3 * nrows, nrows, ncols)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(examples):]:
        ax.set_visible(False)
    word = {1: "yes", 0: "no", -1: "?"}
    for ax, e in zip(flat, examples, strict=False):
        with Image.open(Path(base_dir) / e["image"]) as im:
            ax.imshow(im.convert("RGB"), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"[{e['family']}]\n" + textwrap.fill(e["question"], 36), fontsize=8)
        model_ok = e["model_generation"] == (e["label"] == "yes")
        ax.set_xlabel(f"truth: {e['label']}\nmodel: {word.get(e['model_generation'], '?')} "
                      f"({'right' if model_ok else 'wrong'})\nSNs (vote): {word.get(e['sns_vote'], '?')} (right)",
                      fontsize=8)
    return Figure("fig6_examples", "Fig. 6: examples where the SNs are right and the model is wrong", _png(fig),
                  "Validation images with the question, the true answer, the model's generated answer (POPE "
                  "parser) and the SNs' majority vote.")


def figure_names() -> Sequence[str]:
    """File stems of the figures drawn here."""
    return ("fig3a_alpha", "fig3b_sns_per_layer", "appfig1_sn_locations", "fig4_agreement", "runtime",
            "fig6_examples")
