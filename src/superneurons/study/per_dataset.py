"""One dataset's steps of the study: probe (Alg. 1's capture), select (SNt sweep, early-exit sets), evaluate.

Each step is cached by `StepCache` under a key of its inputs: the model (`Workspace.model_key`),
the samples (`samples_key`) and the options it reads, and the key of the step it builds on, so a
changed input reruns that step and the ones after it, nothing else. The activations and the
model's answers themselves live in the experiments' `Workspace` cache, shared with the experiments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superneurons.experiments.workspace import samples_key
from superneurons.study.steps import StepCache, Steps, step_key

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.experiments.workspace import Workspace
    from superneurons.inference.classifier import SuperNeuronClassifier
    from superneurons.study.spec import StudyOptions

CLASSIFIERS_DIR = "classifiers"


@dataclass
class DatasetRun:
    """One dataset's samples, step keys and outcome (`summary`: the report's per-dataset dict)."""

    name: str
    probe: list[Sample]
    val: list[Sample]
    keys: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    classifiers: dict[str, str] = field(default_factory=dict)  # report label -> folder relative to DIR


def relative(path: str | None, root: Path) -> str | None:
    """`path` relative to `root` when it lies inside it (report files stay movable)."""
    if path is None:
        return None
    p = Path(path).resolve()
    return str(p.relative_to(root.resolve())) if p.is_relative_to(root.resolve()) else str(p)


def early_folder(name: str, cap: int, first: bool) -> tuple[str, str]:
    """(report label, folder) of a dataset's early-exit classifier with L* <= cap."""
    if first:
        return f"{name} (early exit)", f"{CLASSIFIERS_DIR}/{name}-early"
    return f"{name} (early exit, L* <= {cap})", f"{CLASSIFIERS_DIR}/{name}-early{cap}"


def run_dataset(d: DatasetRun, ws: Workspace, cache: StepCache, o: StudyOptions, out: Path, steps: Steps,
                tag: str) -> None:
    """Probe, select and evaluate one dataset (cached steps); fills `d.summary`, `d.keys`, `d.classifiers`."""
    mk = ws.model_key()
    d.keys["probe"] = step_key("probe", mk, samples_key(d.probe), o.token, o.store_dtype, o.max_new_tokens,
                               o.generate)
    d.keys["select"] = step_key("select", d.keys["probe"], o.metric, o.alpha, o.step, o.depth, o.early_max_layer)
    d.keys["evaluate"] = step_key("evaluate", d.keys["select"], samples_key(d.val), o.generate, o.batch_size,
                                  o.max_new_tokens)
    with steps.step(f"{d.name}/probe", f"{tag}: probing {len(d.probe)} samples (activations + model answers)"):
        probed = cache.run(f"{d.name}/probe", d.keys["probe"], lambda: _probe(d, ws, o))
    with steps.step(f"{d.name}/select", f"{tag}: scoring neurons, SNt sweep"):
        sel = cache.run(f"{d.name}/select", d.keys["select"], lambda: _select(d, ws, o, out, probed["model_preds"]))
    with steps.step(f"{d.name}/validate", f"{tag}: validating on {len(d.val)} samples (SNs, generation, logits)"):
        ev = cache.run(f"{d.name}/evaluate", d.keys["evaluate"], lambda: _evaluate(d, ws, o, out, sel))
    probe_summary = dict(sel["summary"])
    probe_summary.pop("early", None)
    early_sets = probe_summary.pop("early_sets", [])
    for e, res in zip(early_sets, ev["early"], strict=True):
        e["val"] = res
    first = early_sets[0] if early_sets and early_sets[0]["max_layer"] == o.early_max_layer[0] else None
    d.summary = {"n_probe": len(d.probe), "n_val": len(d.val), "probe": probe_summary,
                 "chosen": probe_summary["chosen"], "early": first, "early_sets": early_sets, "val": ev["val"],
                 "model_reference": probed["reference"]}
    d.classifiers = dict(sel["classifiers"])


def _probe(d: DatasetRun, ws: Workspace, o: StudyOptions) -> dict[str, Any]:
    store = ws.store(d.probe)
    if o.generate:
        return {"n": store.num_samples, "model_preds": ws.model_answers(d.probe).preds, "reference": "generation"}
    from superneurons.evaluation.baselines import first_token_margins

    margins = first_token_margins(ws.vlm, d.probe, batch_size=o.batch_size)
    return {"n": store.num_samples, "model_preds": (margins > 0).long().tolist(), "reference": "first-token logits"}


def _select(d: DatasetRun, ws: Workspace, o: StudyOptions, out: Path, model_preds: list[int]) -> dict[str, Any]:
    from superneurons.inference.classifier import SuperNeuronClassifier
    from superneurons.report.analysis import analyse_probe

    store = ws.store(d.probe)
    pa = analyse_probe(store, model_preds, alpha=o.alpha, step=o.step, depth=o.depth, metric=o.metric,
                       early_max_layer=o.early_max_layer)
    meta = {"family": d.name, "dataset": d.name, "chosen": pa.summary["chosen"], "probe_samples": len(d.probe)}
    clf = SuperNeuronClassifier.from_store(pa.sns, store, aggregation="vote", meta=meta)
    clf.save(out / CLASSIFIERS_DIR / d.name)
    folders = {d.name: f"{CLASSIFIERS_DIR}/{d.name}"}
    for (cap, sns), e in zip(pa.early_sets, pa.summary["early_sets"], strict=True):
        label, rel = early_folder(d.name, cap, cap == o.early_max_layer[0])
        SuperNeuronClassifier.from_store(sns, store, aggregation="vote", meta={**meta, "chosen": e["chosen"]}
                                         ).save(out / rel)
        folders[label] = rel
    summary = dict(pa.summary)
    summary.pop("early", None)
    return {"summary": summary, "classifiers": folders}


def load_classifiers(sel: dict[str, Any], out: Path) -> list[SuperNeuronClassifier]:
    """The dataset's SN classifiers: the chosen SNt's first, then the early-exit sets in cap order."""
    from superneurons.inference.classifier import SuperNeuronClassifier

    return [SuperNeuronClassifier.load(out / rel) for rel in sel["classifiers"].values()]


def _evaluate(d: DatasetRun, ws: Workspace, o: StudyOptions, out: Path, sel: dict[str, Any]) -> dict[str, Any]:
    from superneurons.evaluation.compare import evaluate

    clfs = load_classifiers(sel, out)
    gen = None
    if o.generate:
        run = ws.model_answers(d.val)
        gen = (run.preds, run.texts, run.seconds)
    common = {"batch_size": o.batch_size, "generate": o.generate, "generated": gen,
              "max_new_tokens": o.max_new_tokens}
    val = evaluate(clfs[0], ws.vlm, d.val, keep_answers=True, **common)
    for a in val["answers"]:
        a["image"] = relative(a["image"], out)
    early = [evaluate(c, ws.vlm, d.val, first_token=False, **common) for c in clfs[1:]]
    return {"val": val, "early": early}
