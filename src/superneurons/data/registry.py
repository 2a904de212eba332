"""The paper's datasets by name: `get_dataset`, `load_dataset` and `prepare_dataset`.

Names (Sec. 4.1; `superneurons datasets list` prints them):

    pope                  official POPE question files or harness parquet (val; --variant)
    coco-pope             POPE builder over COCO instances (train/val; --variant = strategy)
    instaorder-occlusion  InstaOrder occlusion orders over COCO 2017
    instaorder-depth      InstaOrder depth orders over COCO 2017
    vizwiz                VizWiz yes/no questions
    clevr                 CLEVR yes/no questions
    aokvqa                A-OKVQA, one binary question per choice (MCQ)
    scienceqa             ScienceQA image questions, one binary question per choice (MCQ)

`prepare_dataset` is the probing/validation protocol of Sec. 4.2: load a split, optionally draw
a class-balanced subset of `n` (3,000 in the paper; MCQ datasets balance by whole questions,
see `balanced_mcq_sample`), and write the standard JSONL read by `load_samples`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from superneurons.data import clevr, coco, instaorder, mcq, pope, vizwiz
from superneurons.data._common import LoadStats
from superneurons.data.samples import NO, YES, Sample, balanced_sample, write_samples
from superneurons.errors import DataError


@dataclass(frozen=True)
class LoadOptions:
    """Options a loader may take; `DatasetSpec.options` says which ones apply."""

    variant: str | None = None
    image_root: str | Path | None = None
    image_dir: str | Path | None = None
    annotations: str | Path | None = None
    num_images: int | None = None
    seed: int = 0
    skip_missing: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset: how to load it and what it accepts."""

    name: str
    description: str
    splits: tuple[str, ...]
    load: Callable[[Path, str, LoadOptions, LoadStats], list[Sample]]
    variants: tuple[str, ...] = ()
    default_variant: str | None = None
    mcq: bool = False
    options: frozenset[str] = field(default_factory=frozenset)


def _pope(root: Path, split: str, o: LoadOptions, st: LoadStats) -> list[Sample]:
    return pope.load_pope(root, split, variant=o.variant or "random", image_root=o.image_root,
                          image_dir=o.image_dir, skip_missing=o.skip_missing, stats=st)


def _coco_pope(root: Path, split: str, o: LoadOptions, st: LoadStats) -> list[Sample]:
    return coco.load_coco_pope(root, split, variant=o.variant or "random", annotations=o.annotations,
                               image_root=o.image_root, num_images=o.num_images, seed=o.seed,
                               skip_missing=o.skip_missing, stats=st)


def _instaorder(task: str) -> Callable[[Path, str, LoadOptions, LoadStats], list[Sample]]:
    def load(root: Path, split: str, o: LoadOptions, st: LoadStats) -> list[Sample]:
        return instaorder.load_instaorder(root, split, task=task, annotations=o.annotations,
                                          image_root=o.image_root, skip_missing=o.skip_missing, stats=st)
    return load


def _vizwiz(root: Path, split: str, o: LoadOptions, st: LoadStats) -> list[Sample]:
    return vizwiz.load_vizwiz(root, split, image_root=o.image_root, skip_missing=o.skip_missing, stats=st)


def _clevr(root: Path, split: str, o: LoadOptions, st: LoadStats) -> list[Sample]:
    return clevr.load_clevr(root, split, image_root=o.image_root, skip_missing=o.skip_missing, stats=st)


def _aokvqa(root: Path, split: str, o: LoadOptions, st: LoadStats) -> list[Sample]:
    return mcq.load_aokvqa(root, split, image_root=o.image_root, skip_missing=o.skip_missing, stats=st)


def _scienceqa(root: Path, split: str, o: LoadOptions, st: LoadStats) -> list[Sample]:
    return mcq.load_scienceqa(root, split, image_root=o.image_root, image_dir=o.image_dir,
                              skip_missing=o.skip_missing, stats=st)


_COMMON = frozenset({"image_root", "skip_missing"})
DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("pope", "POPE object hallucination: official coco_pope_{variant}.json or harness parquet",
                ("val",), _pope, (*pope.VARIANTS, pope.ALL), "random", options=_COMMON | {"variant", "image_dir"}),
    DatasetSpec("coco-pope", "POPE-style questions built from COCO instances_{split}.json (3 yes + 3 no per image)",
                ("train", "val"), _coco_pope, coco.STRATEGIES, "random",
                options=_COMMON | {"variant", "annotations", "num_images", "seed"}),
    DatasetSpec("instaorder-occlusion", "InstaOrder occlusion order over COCO 2017", ("train", "val"),
                _instaorder(instaorder.OCCLUSION), options=_COMMON | {"annotations"}),
    DatasetSpec("instaorder-depth", "InstaOrder depth order over COCO 2017", ("train", "val"),
                _instaorder(instaorder.DEPTH), options=_COMMON | {"annotations"}),
    DatasetSpec("vizwiz", "VizWiz VQA yes/no questions (majority of 10 answers)", ("train", "val"), _vizwiz,
                options=_COMMON),
    DatasetSpec("clevr", "CLEVR yes/no questions", ("train", "val"), _clevr, options=_COMMON),
    DatasetSpec("aokvqa", "A-OKVQA multiple choice, one binary question per choice", ("train", "val"), _aokvqa,
                mcq=True, options=_COMMON),
    DatasetSpec("scienceqa", "ScienceQA image questions (problems.json or parquet), one binary question per "
                "choice", mcq.SQA_SPLITS, _scienceqa, mcq=True, options=_COMMON | {"image_dir"}),
)}


def dataset_names() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(DATASETS)


def get_dataset(name: str) -> DatasetSpec:
    """The spec registered under `name` (case and `_`/`-` insensitive); unknown names list the valid ones."""
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(dataset_names())}")
    return DATASETS[key]


def load_dataset(name: str, root: str | Path, split: str, *, variant: str | None = None,
                 image_root: str | Path | None = None, image_dir: str | Path | None = None,
                 annotations: str | Path | None = None, num_images: int | None = None, seed: int = 0,
                 skip_missing: bool = False, stats: LoadStats | None = None) -> list[Sample]:
    """Load split `split` of dataset `name` from its published layout under `root`.

    Options that do not apply to the dataset raise (e.g. a variant for VizWiz). `stats`
    receives the kept / filtered / skipped counts.

    >>> samples = load_dataset("pope", "data/pope", "val", variant="adversarial")  # doctest: +SKIP
    """
    spec = get_dataset(name)
    given = {"variant": variant, "image_root": image_root, "image_dir": image_dir, "annotations": annotations,
             "num_images": num_images}
    bad = [k for k, v in given.items() if v is not None and k not in spec.options]
    if bad:
        raise DataError(f"{spec.name}: option(s) {', '.join(bad)} do not apply to this dataset "
                        f"(it takes {', '.join(sorted(spec.options)) or 'none'})")
    if variant is not None and variant not in spec.variants:
        raise DataError(f"{spec.name}: unknown variant {variant!r}; use one of {', '.join(spec.variants)}")
    if split not in spec.splits:
        raise DataError(f"{spec.name}: unknown split {split!r}; use one of {', '.join(spec.splits)}")
    opts = LoadOptions(variant=variant, image_root=image_root, image_dir=image_dir, annotations=annotations,
                       num_images=num_images, seed=seed, skip_missing=skip_missing)
    return spec.load(Path(root), split, opts, stats if stats is not None else LoadStats())


@dataclass
class PrepareReport:
    """What `prepare_dataset` read and wrote."""

    name: str
    split: str
    out: Path
    stats: LoadStats
    num_written: int
    num_yes: int
    num_no: int
    num_questions: int | None = None
    selection: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "split": self.split, "out": str(self.out), **self.stats.to_dict(),
                "written": self.num_written, "yes": self.num_yes, "no": self.num_no,
                "questions": self.num_questions, "selection": self.selection}


def prepare_dataset(name: str, root: str | Path, split: str, out: str | Path, *, n: int | None = None,
                    balanced: bool = False, seed: int = 0, variant: str | None = None,
                    image_root: str | Path | None = None, image_dir: str | Path | None = None,
                    annotations: str | Path | None = None, skip_missing: bool = False) -> PrepareReport:
    """Load a split, draw `n` samples (class-balanced with `balanced`), write JSONL to `out`.

    Parquet images are written to `image_dir` (default: `<out stem>_images/` next to `out`).
    For `coco-pope`, `n` also limits the images the builder uses (n / 6, rounded up).

    >>> prepare_dataset("coco-pope", "data/coco", "train", "probe.jsonl", n=3000, balanced=True)  # doctest: +SKIP
    """
    spec = get_dataset(name)
    if n is not None and n < 1:
        raise DataError(f"--n {n}: ask for at least one sample (or leave --n out to keep them all)")
    out = Path(out)
    if out.suffix not in (".jsonl", ".json"):
        raise DataError(f"--out {str(out)!r}: write a .jsonl file (the standard sample layout)")
    if image_dir is None and "image_dir" in spec.options:
        image_dir = out.parent / f"{out.stem}_images"
    num_images = math.ceil(n / 6) if (spec.name == "coco-pope" and n is not None) else None
    stats = LoadStats()
    samples = load_dataset(spec.name, root, split, variant=variant, image_root=image_root, image_dir=image_dir,
                           annotations=annotations, num_images=num_images, seed=seed,
                           skip_missing=skip_missing, stats=stats)
    selection = ""
    if balanced:
        if spec.mcq:
            samples, selection = mcq.balanced_mcq_sample(samples, n, seed)
        else:
            before = len(samples)
            samples = balanced_sample(samples, n, seed)
            half = len(samples) // 2
            selection = f"balanced: {half} yes / {half} no drawn from {before} (seed {seed})"
    elif n is not None and n < len(samples):
        before = len(samples)
        if spec.mcq:
            samples = mcq.subsample_mcq(samples, n, seed)
            selection = f"{len(samples)} of {before} binary questions, whole MCQ questions (seed {seed})"
        else:
            keep = sorted(random.Random(seed).sample(range(before), n))
            samples = [samples[i] for i in keep]
            selection = f"random {n} of {before} (seed {seed}), class ratio as in the data"
    write_samples(samples, out)
    num_yes = sum(s.label == YES for s in samples)
    num_q = len({str(s.meta.get("question_id")) for s in samples}) if spec.mcq else None
    return PrepareReport(name=spec.name, split=split, out=out, stats=stats, num_written=len(samples),
                         num_yes=num_yes, num_no=sum(s.label == NO for s in samples), num_questions=num_q,
                         selection=selection)
