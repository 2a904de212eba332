"""The `transfer` experiment: SNs found on one dataset, validated on another (paper Tab. 7).

`datasets[0]` is the source (its probing set finds the SNs), `datasets[1]` the target (its
validation set scores everything). Rows, all on the target's validation set: the model; SNs found
on the target's own probing set when it is given (the in-distribution reference); SNs found on
the source. When the source has a validation set too, the source-on-source row is added.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from superneurons.errors import DataError
from superneurons.experiments._common import Dataset, ExperimentResult, finish, labels_of
from superneurons.experiments.workspace import Workspace


def run(ws: Workspace, datasets: Sequence[Dataset], out_dir: str | Path | None = None) -> ExperimentResult:
    """Model and SNs (probed on target / on source) on the target's validation set."""
    if len(datasets) != 2:
        raise DataError(f"transfer takes a source and a target dataset, got {len(datasets)}")
    source, target = datasets
    src_probe = source.need("probe", "transfer")
    val = target.need("val", "transfer")
    rows: list[dict[str, Any]] = []
    evals = [(target.name, val)] + ([(source.name, source.val)] if source.val is not None else [])
    for val_name, samples in evals:
        y = labels_of(samples)
        store = ws.store(samples)
        rows.append(ws.model_row(samples, probe=None, val=val_name))
        probes = [(source.name, src_probe)]
        if val_name == target.name and target.probe is not None:
            probes.insert(0, (target.name, target.probe))
        for probe_name, probe in probes:
            rows += ws.sn_rows(ws.store(probe), store, y, probe=probe_name, val=val_name)
    result = ExperimentResult(
        name="transfer", title=f"Transfer: SNs probed on {source.name}, validated on {target.name}", paper="Tab. 7",
        columns=["method", "probe", "val", "accuracy", "precision", "recall", "f1", "yes_ratio", "k", "exit_layer"],
        rows=rows, meta={"model": ws.vlm.name_or_path, "source": source.name, "target": target.name,
                         "options": vars(ws.options)})
    return finish(result, out_dir)
