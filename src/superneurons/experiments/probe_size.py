"""The `probe-size` experiment: SN validation metrics vs the probing set size N (paper Fig. 5).

For each N in {10, 40, 100, 300, 1000, 3000} (sizes above what the data allows are dropped and
the largest balanced size is added as "max"), a class-balanced subset of N probing samples is
drawn (`balanced_sample`, seeded; `repeats` draws average out the luck of small N), SNs are found
on it (Alg. 1 + SNt sweep, mean and vote) and scored on the validation set. The probing set is
captured once; subsets are row views of that store (`StoreView`). The figure has one panel per
metric, one colour per dataset, SNs as solid (mean) and dotted (vote) lines over N, and the
model's own score as a dashed line.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
from superneurons.experiments.workspace import StoreView, Workspace, sn_row

DEFAULT_SIZES: tuple[int, ...] = (10, 40, 100, 300, 1000, 3000)


def probe_sizes(sizes: Sequence[int], available: int) -> list[int]:
    """The sizes to run: those <= `available` (the largest balanced size), plus `available` itself
    when some asked size is larger ("3000 or max")."""
    if available < 2:
        raise DataError(f"the probing set allows a balanced size of {available}; need at least 1 yes and 1 no")
    bad = [s for s in sizes if s < 2]
    if bad:
        raise DataError(f"probe sizes {bad}: a balanced probing set needs N >= 2")
    out = sorted({s for s in sizes if s <= available})
    if any(s > available for s in sizes) and available not in out:
        out.append(available)
    return out


def run(ws: Workspace, datasets: Sequence[Dataset], out_dir: str | Path | None = None,
        sizes: Sequence[int] = DEFAULT_SIZES, repeats: int = 1, plot: bool = True) -> ExperimentResult:
    """Validation metrics of SNs found on balanced probing subsets of each size, and of the model."""
    from superneurons.data.samples import balanced_sample

    if repeats < 1:
        raise DataError(f"repeats={repeats}; draw each size at least once")
    if plot and out_dir is not None:
        require_matplotlib("probe-size")
    o = ws.options
    rows: list[dict[str, Any]] = []
    for ds in datasets:
        probe, val = ds.need("probe", "probe-size"), ds.need("val", "probe-size")
        n_yes = sum(s.label == "yes" for s in probe)
        available = 2 * min(n_yes, len(probe) - n_yes)
        store, val_store, y = ws.store(probe), ws.store(val), labels_of(val)
        row_of = {sid: i for i, sid in enumerate(store.ids)}
        rows.append(ws.model_row(val, dataset=ds.name, N=None))
        for n in probe_sizes(sizes, available):
            draws: dict[str, list[dict[str, Any]]] = {}
            for r in range(repeats):
                subset = balanced_sample(probe, n, seed=o.seed + r)
                view = StoreView(store, [row_of[s.id] for s in subset])
                for how, fit in ws.fit_both(view).items():
                    draws.setdefault(how, []).append(sn_row(fit, val_store, y, dataset=ds.name, N=len(subset)))
            rows += [_average(d) for d in draws.values()]
    columns = ["dataset", "N", "method", "accuracy", "precision", "recall", "f1", "yes_ratio", "k"]
    if repeats > 1:
        columns += ["accuracy_std", "f1_std"]
    result = ExperimentResult(
        name="probe-size", title="SN validation metrics vs probing set size N", paper="Fig. 5", columns=columns,
        rows=rows, percent=(*METRICS, "yes_ratio", "accuracy_std", "f1_std"),
        meta={"model": ws.vlm.name_or_path, "sizes": list(sizes), "repeats": repeats, "options": vars(o)})
    if plot and out_dir is not None:
        result.figures.append(plot_probe_size(rows, Path(out_dir)))
    return finish(result, out_dir)


def _average(draws: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per (size, method): metrics and K averaged over the repeated draws, with std."""
    out = dict(draws[0])
    for key in (*METRICS, "yes_ratio", "k"):
        vals = [d[key] for d in draws]
        out[key] = statistics.fmean(vals) if key != "k" else round(statistics.fmean(vals))
        if len(draws) > 1 and key in METRICS:
            out[f"{key}_std"] = statistics.pstdev(vals)
    out["repeats"] = len(draws)
    return out


def plot_probe_size(rows: Sequence[dict[str, Any]], out_dir: Path, name: str = "probe-size") -> Path:
    """Four panels (accuracy, precision, recall, F1) vs N; the model dashed; returns the PNG path."""
    require_matplotlib("probe-size")
    fig, axes = new_figure(16, 4, ncols=4)
    names = list(dict.fromkeys(r["dataset"] for r in rows))
    for ax, metric in zip(axes[0], METRICS, strict=True):
        for c, ds in enumerate(names):
            color = f"C{c % 10}"
            for method, style, marker in (("SNs (mean)", "-", "o"), ("SNs (vote)", ":", "s")):
                pts = sorted((r["N"], r[metric]) for r in rows if r["dataset"] == ds and r["method"] == method)
                if pts:
                    ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], style, marker=marker, color=color,
                            label=f"{ds} {method}", markersize=4)
            model = [r[metric] for r in rows if r["dataset"] == ds and r["method"] == "model"]
            if model:
                ax.axhline(100 * model[0], linestyle="--", color=color, linewidth=1, label=f"{ds} model")
        ax.set_xscale("log")
        ticks = sorted({r["N"] for r in rows if r.get("N")})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set(title=metric, xlabel="probing set size N", ylabel=f"{metric} (%)", ylim=(0, 102))
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.suptitle("Super Neurons vs probing set size (dashed: the model)")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FIGURE_PNG.format(name=name)
    fig.savefig(path, dpi=110)
    return path
