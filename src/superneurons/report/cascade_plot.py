"""The cascade figure: accuracy against average cost, one point per margin (`cascade.cascade_sweep` rows).

Two panels share the accuracy axis: cost in decoder layers run per sample, and measured wall time
per sample. The end points "SNs only" (margin 0) and "model only" (margin 0.5) are marked, and
dashed lines at their accuracies show where a margin beats both. matplotlib is optional
(`pip install superneurons[report]`); it is imported inside the function, without pyplot.

    >>> fig = plot_cascade(rows, "cascade_sweep.png")   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from superneurons.errors import DataError

_NEEDED = ("margin", "accuracy", "avg_layers", "time_per_sample")
_ENDS = {"SNs only": ("s", "tab:green"), "model only": ("D", "tab:red")}


def plot_cascade(rows: Sequence[dict[str, Any]], path: str | Path | None = None, title: str | None = None) -> Any:
    """Draw accuracy vs average layers and vs time per sample; save to `path` if given.

    Returns the matplotlib `Figure`. Raises ImportError naming the `report` extra when
    matplotlib is missing, DataError when `rows` lack the sweep columns.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the cascade plot needs matplotlib: pip install superneurons[report]") from exc
    if not rows:
        raise DataError("no sweep rows to plot; run cascade_sweep first")
    missing = [k for k in _NEEDED if any(k not in r for r in rows)]
    if missing:
        raise DataError(f"sweep rows lack {missing}; pass the rows of superneurons.cascade.cascade_sweep")
    rows = sorted(rows, key=lambda r: r["margin"])
    acc = [100 * r["accuracy"] for r in rows]
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, label, scale in ((axes[0], "avg_layers", "average decoder layers per sample", 1.0),
                                  (axes[1], "time_per_sample", "time per sample (ms)", 1000.0)):
        x = [scale * r[key] for r in rows]
        ax.plot(x, acc, "-o", color="tab:blue", markersize=4, label="cascade")
        for r, xi, yi in zip(rows, x, acc, strict=True):
            ax.annotate(f"{r['margin']:g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
            point = r.get("point") or ""
            if point in _ENDS:
                marker, color = _ENDS[point]
                ax.plot([xi], [yi], marker, color=color, markersize=9, label=point)
                ax.axhline(yi, color=color, linestyle="--", linewidth=0.8)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title or "Cascade: Super Neurons, deferring to the model when |s - 0.5| < margin")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig
