"""POPE (object hallucination, Li et al. 2023) from its two published layouts.

1. The official question files of AoiDragon/POPE (`output/coco/coco_pope_{variant}.json`): JSON
   Lines, one object per line, e.g.
   `{"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a snowboard
   in the image?", "label": "yes"}` (newer files add `"image_id"`), with the COCO val2014 images
   in a folder (`--root` holding `val2014/`, or `--images DIR`).
2. The parquet layout of evaluation harnesses (lmms-lab/POPE `data/test-*.parquet`): columns
   `question_id`, `question`, `answer`, `image` (a Hugging Face Image cell: `{bytes, path}`),
   `category` (the variant: random / popular / adversarial) and `image_source`. The images are
   written once to a folder (`image_dir`) so the prepared JSONL can point at them.

The question text is kept as published: it already is the paper's prompt (appendix Tab. 1,
"Is there a {obj} in the image?", with "an" before a vowel as in the official files).
Official POPE is a validation set (COCO val2014); probing sets come from COCO train through
the builder in `superneurons.data.coco`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from superneurons.data._common import (
    ImageChecker,
    LoadStats,
    check_root,
    check_split,
    default_image_dir,
    find_dir,
    find_file,
    find_parquet,
    finish,
    image_bytes,
    read_parquet_rows,
    require_keys,
    save_image_bytes,
    wrong_format,
)
from superneurons.data.samples import Sample, parse_label
from superneurons.errors import DataError

NAME = "pope"
VARIANTS = ("random", "popular", "adversarial")
ALL = "all"
POPE_TEMPLATE = "Is there {article} {obj} in the image?"
FILE_PATTERN = "coco_pope_{variant}.json"
OFFICIAL_EXPECTED = ('JSON Lines of {"question_id", "image", "text", "label"} '
                     "(AoiDragon/POPE output/coco/coco_pope_{variant}.json)")
PARQUET_COLUMNS = ("question", "answer", "image")
IMAGE_DIRS = ("val2014", "images/val2014", "coco/val2014", "images", ".")
_OBJECT_RE = re.compile(r"^Is there an? (.+?) in the image\?$")


def pope_question(obj: str) -> str:
    """The POPE prompt for an object name: "Is there a dog in the image?" / "an apple"."""
    article = "an" if obj[:1].lower() in "aeiou" else "a"
    return POPE_TEMPLATE.format(article=article, obj=obj)


def _variants(variant: str) -> tuple[str, ...]:
    if variant == ALL:
        return VARIANTS
    if variant not in VARIANTS:
        raise DataError(f"{NAME}: unknown variant {variant!r}; use one of {', '.join((*VARIANTS, ALL))}")
    return (variant,)


def load_pope(root: str | Path, split: str = "val", *, variant: str = "random",
              image_root: str | Path | None = None, image_dir: str | Path | None = None,
              skip_missing: bool = False, stats: LoadStats | None = None) -> list[Sample]:
    """Load official POPE (JSONL files or harness parquet) as `Sample`s.

    `root` is the folder holding `coco_pope_{variant}.json` (or `output/coco/...`), a single such
    file, or a folder / file of parquet. `variant` is random, popular, adversarial or "all".
    `image_root` overrides the image folder of the JSONL layout; `image_dir` is where parquet
    images are written. `meta` keeps source, variant, question_id, image_id and the asked
    object as `category`.

    >>> samples = load_pope("data/pope", "val", variant="adversarial")  # doctest: +SKIP
    """
    stats = stats if stats is not None else LoadStats()
    check_split(split, ("val",), NAME, "official POPE is built from COCO val2014 only; build a probing "
                                       "set from COCO train with the `coco-pope` builder")
    variants = _variants(variant)
    base = check_root(root, NAME)
    if base.suffix == ".parquet" or (base.is_dir() and find_parquet(base, ("",), ("data",), NAME)):
        return _load_parquet(base, variants, image_dir, stats)
    if base.is_file() and len(variants) > 1:
        raise DataError(f"{NAME}: --root {str(base)!r} is one question file; pass the folder holding all "
                        f"three {FILE_PATTERN} files to load variant 'all'")
    samples: list[Sample] = []
    for v in variants:
        path = find_file(base, [FILE_PATTERN.format(variant=v), f"output/coco/{FILE_PATTERN.format(variant=v)}"],
                         NAME, OFFICIAL_EXPECTED.replace("{variant}", v))
        folder = find_dir(path.parent if base.is_file() else base, IMAGE_DIRS, image_root, NAME,
                          "the COCO val2014 images (a val2014/ folder)")
        samples.extend(_load_official(path, v, folder, skip_missing, stats))
    return finish(samples, stats, NAME, base)


def _load_official(path: Path, variant: str, folder: Path, skip_missing: bool,
                   stats: LoadStats) -> list[Sample]:
    images = ImageChecker(NAME, skip_missing, stats)
    text = path.read_text(encoding="utf-8")
    samples: list[Sample] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            try:
                whole = json.loads(text)
            except json.JSONDecodeError:
                raise DataError(f"{NAME}: {where}: not valid JSON ({exc.msg}); expected {OFFICIAL_EXPECTED}") from exc
            raise wrong_format(path, NAME, OFFICIAL_EXPECTED, whole) from exc
        if not (isinstance(rec, dict) and {"text", "label"} <= rec.keys()):
            raise wrong_format(path, NAME, OFFICIAL_EXPECTED, rec)
        rec = require_keys(rec, ("question_id", "image", "text", "label"), where, OFFICIAL_EXPECTED)
        qid = rec["question_id"]
        label = parse_label(rec["label"], f"{NAME}: {where} (question_id {qid})")
        image = folder / str(rec["image"])
        if not images.ok(image, f"{where} (question_id {qid})"):
            continue
        question = str(rec["text"]).strip()
        match = _OBJECT_RE.match(question)
        meta: dict[str, Any] = {"source": NAME, "variant": variant, "question_id": qid,
                                "image_id": rec.get("image_id", _coco_id(str(rec["image"]))),
                                "category": match.group(1) if match else None}
        samples.append(Sample(id=f"pope-{variant}-{qid}", image=image, question=question, label=label, meta=meta))
    if not samples and not stats.num_skipped:
        raise DataError(f"{NAME}: {path} holds no questions; expected {OFFICIAL_EXPECTED}")
    return samples


def _coco_id(file_name: str) -> int | None:
    digits = re.findall(r"(\d+)\.\w+$", file_name)
    return int(digits[0]) if digits else None


def _load_parquet(base: Path, variants: tuple[str, ...], image_dir: str | Path | None,
                  stats: LoadStats) -> list[Sample]:
    files = find_parquet(base, ("",), ("data",), NAME)
    rows = read_parquet_rows(files, PARQUET_COLUMNS, NAME)
    out_dir = Path(image_dir) if image_dir is not None else default_image_dir(base, NAME, "val")
    samples: list[Sample] = []
    for i, row in enumerate(rows):
        where = f"{NAME} parquet row {i}"
        category = row.get("category")
        variant = str(category) if category is not None else "unknown"
        if category is not None and variant not in variants:
            stats.filter(f"other POPE variant ({variant})")
            continue
        qid = row.get("question_id", row.get("id", i))
        label = parse_label(row["answer"], f"{where} (question_id {qid})")
        data = image_bytes(row["image"], where)
        if data is None:
            raise DataError(f"{where} (question_id {qid}): empty image cell; expected the image bytes")
        stem = str(row.get("image_source") or f"pope_row{i}")
        image = save_image_bytes(data, out_dir, stem, where)
        question = str(row["question"]).strip()
        match = _OBJECT_RE.match(question)
        meta = {"source": NAME, "variant": variant, "question_id": qid, "image_id": _coco_id(f"{stem}.jpg"),
                "category": match.group(1) if match else None}
        samples.append(Sample(id=f"pope-{variant}-{qid}", image=image, question=question, label=label, meta=meta))
    return finish(samples, stats, NAME, base)
