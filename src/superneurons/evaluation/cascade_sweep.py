"""The cascade sweep: accuracy vs cost of SNs that defer unsure samples to the model, margin by margin.

For each margin m (0 = SNs only and 0.5 = the model only are always included) `cascade_sweep` runs
a real, timed `superneurons.inference.cascade.cascade_predict` over labelled samples and reports
deferral rate, average layers per sample, accuracy, F1 and time; `best_margin` picks the cheapest
margin that is at least as accurate as both end points.

    >>> rows = cascade_sweep(clf, vlm, labelled, margins=DEFAULT_MARGINS)    # doctest: +SKIP
    >>> best_margin(rows)["margin"]                                          # doctest: +SKIP
    0.2
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from superneurons.activations.trace import verify_resume
from superneurons.constants import Aggregation
from superneurons.errors import DataError
from superneurons.inference.cascade import cascade_predict, check_cascade, check_margin

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.inference.classifier import SuperNeuronClassifier
    from superneurons.models.base import VLM

#: margins of `cascade_sweep` / `superneurons cascade-sweep`: 0 (SNs only) to 0.5 (model only).
DEFAULT_MARGINS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(11))


def cascade_sweep(clf: SuperNeuronClassifier, vlm: VLM, samples: Sequence[Sample],
                  margins: Sequence[float] = DEFAULT_MARGINS, batch_size: int = 8, aggregation: Aggregation | None = None,
                  strict: bool = True, progress: bool = False, verify: bool = True,
                  temperature: float | None = None, repeats: int = 1) -> list[dict[str, Any]]:
    """One row per margin (ascending, with 0 = SNs only and 0.5 = the model only always included):
    margin, score kind, deferral rate, average layers per sample (and share of all layers),
    accuracy, precision, recall, F1, yes-ratio and measured time per sample, plus a `point` name
    for the end points. Every margin is a real, timed `cascade_predict` run over `samples` (labelled).

    `repeats` > 1 runs every margin that many times, round-robin over the margins (so a change in
    machine load hits all of them alike), and reports each margin's fastest run: the usual defence
    against a shared, noisy machine (the answers are the same every run). `verify` first checks
    resume against a plain forward on one batch (also a warm-up, so the first timed run does not
    pay one-off costs). `aggregation` / `temperature`: as `cascade_predict`.
    """
    if not samples:
        raise DataError("cascade_sweep() got no samples")
    unlabelled = [s.id for s in samples if s.label is None]
    if unlabelled:
        raise DataError(f"sample(s) {unlabelled[:5]} have no label; a sweep needs yes/no labels")
    if repeats < 1:
        raise DataError(f"repeats={repeats}; use 1 or more timed runs per margin")
    ms = sorted({check_margin(m) for m in margins} | {0.0, 0.5})
    check_cascade(clf, vlm, samples, strict)
    if verify:
        verify_resume(vlm, samples[:batch_size], clf.exit_layer)
    y = torch.tensor([s.y for s in samples])
    rows: dict[float, dict[str, Any]] = {}
    for _ in range(repeats):
        for m in ms:
            out = cascade_predict(clf, vlm, samples, m, batch_size=batch_size, aggregation=aggregation,
                                  strict=strict, progress=progress, temperature=temperature)
            row = out.summary(y)
            if m in rows and rows[m]["seconds"] <= row["seconds"]:
                continue
            row["point"] = "SNs only" if m == 0.0 else "model only" if m == 0.5 else ""
            rows[m] = row
    return [rows[m] for m in ms]


def best_margin(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The cheapest cascade row (0 < margin < 0.5) whose accuracy is >= both end points' (SNs only,
    model only) and whose average layers are below the model's; None if no margin does that."""
    ends = {r["point"]: r for r in rows if r.get("point")}
    if set(ends) != {"SNs only", "model only"}:
        raise DataError("the sweep rows lack the SNs-only (m=0) and model-only (m=0.5) end points")
    floor = max(ends["SNs only"]["accuracy"], ends["model only"]["accuracy"])
    ok = [r for r in rows if not r.get("point") and r["accuracy"] >= floor
          and r["avg_layers"] < ends["model only"]["avg_layers"]]
    return min(ok, key=lambda r: (r["avg_layers"], -r["accuracy"])) if ok else None
