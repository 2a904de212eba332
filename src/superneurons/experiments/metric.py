"""The `metric` experiment: which metric SNs are optimised for (paper Tab. 9).

For each metric mu (accuracy, F1, precision, recall), neurons are scored by mu on the probing
set, SNt is swept and chosen by mu of the aggregated answer (mean and vote separately), and the
resulting SNs are validated on all four metrics. Precision and recall are easy to maximise
alone (a neuron that answers yes once, correctly, or always): the table shows what that costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from superneurons.constants import METRICS
from superneurons.errors import DataError
from superneurons.experiments._common import Dataset, ExperimentResult, finish, labels_of
from superneurons.experiments.workspace import Workspace

DEFAULT_METRICS: tuple[str, ...] = ("accuracy", "f1", "precision", "recall")


def run(ws: Workspace, datasets: Sequence[Dataset], out_dir: str | Path | None = None,
        metrics: Sequence[str] = DEFAULT_METRICS) -> ExperimentResult:
    """SNs optimised for each metric in `metrics`, validated on accuracy, precision, recall, F1."""
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise DataError(f"metric(s) {bad or list(metrics)} not valid; choose from {', '.join(METRICS)}")
    rows: list[dict[str, Any]] = []
    for ds in datasets:
        probe_store = ws.store(ds.need("probe", "metric"))
        val = ds.need("val", "metric")
        val_store, y = ws.store(val), labels_of(val)
        rows.append(ws.model_row(val, dataset=ds.name, optimised=None))
        for mu in metrics:
            rows += ws.sn_rows(probe_store, val_store, y, metric=mu, dataset=ds.name, optimised=mu)
    result = ExperimentResult(
        name="metric", title="Metric optimisation: SNs found for one metric, validated on all", paper="Tab. 9",
        columns=["dataset", "optimised", "method", "accuracy", "precision", "recall", "f1", "yes_ratio", "snt", "k",
                 "exit_layer"],
        rows=rows, meta={"model": ws.vlm.name_or_path, "metrics": list(metrics), "options": vars(ws.options)})
    return finish(result, out_dir)
