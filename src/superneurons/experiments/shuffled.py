"""The `shuffled` experiment: adversarial image/question pairs (paper appendix Tab. 6).

From the validation set, two broken sets are built:
- Im: the images are shuffled across questions (each question, with its label, gets another image),
- Txt: the questions are shuffled across images (each image, with its label, gets another question).
The shuffle is a derangement by content: every sample gets another image (Im) or another question
text (Txt) than its own (compared by image file / pixels and question text, so images or questions
repeated across samples, as in POPE, cannot restore a pair), and where the data allow, no new pair
equals any pair of the original set. SNs found on the intact probing set, and the model, are
scored against the original labels: grounded SNs should fall toward chance.

Optionally (`relabel`) the broken pairs are also scored against their true answers where these
can be computed (the synthetic benchmark can: labels follow from the scene description).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from superneurons.errors import DataError
from superneurons.experiments._common import (
    Dataset,
    ExperimentResult,
    finish,
    labels_of,
    metric_row,
)
from superneurons.experiments.workspace import Workspace, image_key, sn_predictions

if TYPE_CHECKING:
    from superneurons.data.samples import Sample

MODES: dict[str, str] = {"Im": "image", "Txt": "question"}
_MAX_PASSES = 50


def _repair(perm: list[int], ok: Callable[[int, int], bool], rng: random.Random) -> bool:
    """Swap entries of `perm` until `ok(i, perm[i])` holds for every i; False if stuck."""
    n = len(perm)
    for _ in range(_MAX_PASSES):
        bad = [i for i in range(n) if not ok(i, perm[i])]
        if not bad:
            return True
        for i in bad:
            if ok(i, perm[i]):
                continue
            cands = list(range(n))
            rng.shuffle(cands)
            for j in cands:  # swap parts with j if that fixes i and keeps j valid
                if ok(i, perm[j]) and ok(j, perm[i]):
                    perm[i], perm[j] = perm[j], perm[i]
                    break
    return all(ok(i, perm[i]) for i in range(n))


def shuffle_pairs(samples: Sequence[Sample], mode: str, seed: int = 0) -> list[Sample]:
    """The samples with images (`mode="image"`) or questions (`mode="question"`) permuted.

    Every sample gets a different image (compared by file or pixels) or a different question
    text than its own, so no pair is kept even where images or questions repeat (POPE asks 6
    questions per image). Where possible the new pairs also avoid every pair of the original set
    (`pairs_in_original` counts those left). Labels stay with the question (image mode) or with the
    image (question mode); ids get a `~im` / `~txt` suffix and `meta["shuffled"]` names the sample
    the moved part came from.
    """
    if mode not in MODES.values():
        raise DataError(f"shuffle mode {mode!r} is not image or question")
    n = len(samples)
    imgs = [image_key(s) for s in samples]
    qs = [s.question for s in samples]
    moved_key = imgs if mode == "image" else qs
    original = set(zip(imgs, qs, strict=True))

    def differs(i: int, j: int) -> bool:  # sample i takes part j (image j or question j)
        return moved_key[j] != moved_key[i]

    def unseen(i: int, j: int) -> bool:
        return differs(i, j) and ((imgs[j], qs[i]) if mode == "image" else (imgs[i], qs[j])) not in original

    rng = random.Random(f"shuffled/{seed}/{mode}")
    perm = list(range(n))
    rng.shuffle(perm)
    if not _repair(perm, unseen, rng) and not _repair(perm, differs, rng):
        raise DataError(f"cannot shuffle the {mode}s of {n} samples so that each gets another {mode} "
                        f"(too few distinct {mode}s); use a larger or more varied set")
    tag = "im" if mode == "image" else "txt"
    out = []
    for i, s in enumerate(samples):
        src = samples[perm[i]]
        moved = {"image": src.image} if mode == "image" else {"question": src.question}
        out.append(replace(s, id=f"{s.id}~{tag}", **moved, meta={**s.meta, "shuffled": {mode: src.id}}))
    return out


def pairs_kept(original: Sequence[Sample], shuffled: Sequence[Sample]) -> int:
    """How many samples of `shuffled` still hold their own (image, question) pair (0 after a shuffle)."""
    return sum((image_key(a), a.question) == (image_key(b), b.question)
               for a, b in zip(original, shuffled, strict=True))


def pairs_in_original(original: Sequence[Sample], shuffled: Sequence[Sample]) -> int:
    """How many (image, question) pairs of `shuffled` occur anywhere in `original`."""
    pairs = {(image_key(s), s.question) for s in original}
    return sum((image_key(s), s.question) in pairs for s in shuffled)


def run(ws: Workspace, datasets: Sequence[Dataset], out_dir: str | Path | None = None,
        relabel: Callable[[Sample], str | None] | None = None, model: bool = True) -> ExperimentResult:
    """Model and SNs on the validation set and on its Im / Txt shuffles."""
    o = ws.options
    rows: list[dict[str, Any]] = []
    kept: dict[str, int] = {}
    seen: dict[str, int] = {}
    for ds in datasets:
        probe, val = ds.need("probe", "shuffled"), ds.need("val", "shuffled")
        fits = ws.fit_both(ws.store(probe))
        variants = [(ds.name, val)]
        for tag, mode in MODES.items():
            broken = shuffle_pairs(val, mode, o.seed)
            kept[f"{ds.name}-{tag}"] = pairs_kept(val, broken)
            seen[f"{ds.name}-{tag}"] = pairs_in_original(val, broken)
            variants.append((f"{ds.name}-{tag}", broken))
        for vname, samples in variants:
            store = ws.store(samples)
            preds = {"model": torch.tensor(ws.model_answers(samples).preds)} if model else {}
            for how, fit in fits.items():
                preds[f"SNs ({how})"] = sn_predictions(fit.classifier, store)
            for method, p in preds.items():
                rows.append(metric_row(p, labels_of(samples), dataset=vname, labels="original", method=method))
            if relabel is None or samples is val:
                continue
            truth = [relabel(s) for s in samples]
            keep = torch.tensor([t is not None for t in truth])
            if not bool(keep.any()):
                continue
            y_true = torch.tensor([int(t == "yes") for t in truth if t is not None])
            for method, p in preds.items():
                rows.append(metric_row(p[keep], y_true, dataset=vname, labels="true", method=method))
    result = ExperimentResult(
        name="shuffled", title="Shuffled image-question pairs (Im: images shuffled, Txt: questions shuffled)",
        paper="App. Tab. 6",
        columns=["dataset", "labels", "method", "accuracy", "precision", "recall", "f1", "yes_ratio", "n"],
        rows=rows, meta={"model": ws.vlm.name_or_path, "pairs_kept": kept, "pairs_in_original": seen,
                         "options": vars(o),
                         "notes": ["labels 'original': the label of the question (Im) or of the image (Txt), as "
                                   "the paper scores them; 'true': the recomputed answer of the new pair."]})
    return finish(result, out_dir)
