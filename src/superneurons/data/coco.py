"""COCO instance annotations, and the POPE builder that turns them into yes/no questions.

COCO `instances_{split}{year}.json` (cocodataset.org): `{"images": [{id, file_name, width,
height}], "annotations": [{id, image_id, category_id, bbox: [x, y, w, h], iscrowd, ...}],
"categories": [{id, name, supercategory}]}`, images in `{split}{year}/`.

`build_pope` follows the official POPE generator (AoiDragon/POPE `main.py` + `utils.py`,
function `pope`): keep images with at least 3 object categories, and for each image ask about
3 present categories ("yes") each followed by one absent category ("no"), the negative picked by

- random: uniformly among the file's categories absent from the image;
- popular: the most frequent category (number of selected images holding it) absent from the image;
- adversarial: the category that co-occurs most often with that positive (over the selected
  images) absent from the image;

never repeating a category within an image (popular/adversarial fall back to random when their
ranking runs out). Where the official script takes the first 3 objects of its list, the builder
draws the 3 positives at random (seeded); ties in the rankings break by category name. A probing
set built from COCO train this way does not overlap official POPE (COCO val2014) when built
from train2014; COCO train2017 contains most val2014 images, so the loader prefers 2014.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from superneurons.data._common import (
    ImageChecker,
    LoadStats,
    check_root,
    check_split,
    find_dir,
    finish,
    read_json,
    require_keys,
    wrong_format,
)
from superneurons.data.pope import pope_question
from superneurons.data.samples import NO, YES, Sample
from superneurons.errors import DataError

NAME = "coco-pope"
STRATEGIES = ("random", "popular", "adversarial")
YEARS = ("2014", "2017")
COCO_EXPECTED = ("COCO instance annotations {images: [{id, file_name, width, height}], "
                 "annotations: [{id, image_id, category_id, bbox}], categories: [{id, name}]}")


@dataclass
class CocoIndex:
    """COCO instance annotations indexed by image, annotation and category id."""

    path: Path
    images: dict[int, dict[str, Any]]
    categories: dict[int, str]
    annotations: dict[int, dict[str, Any]]
    by_image: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def category_names(self, image_id: int) -> set[str]:
        """Names of the categories with at least one instance (crowd included) in the image."""
        return {self.categories[a["category_id"]] for a in self.by_image.get(image_id, [])}


def read_coco_instances(path: str | Path, dataset: str = NAME) -> CocoIndex:
    """Parse and index a COCO instances file; another format raises naming what it looks like."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{dataset}: COCO annotation file {str(path)!r} does not exist; expected {COCO_EXPECTED}")
    data = read_json(path, dataset)
    if not (isinstance(data, dict) and all(isinstance(data.get(k), list)
                                           for k in ("images", "annotations", "categories"))):
        raise wrong_format(path, dataset, COCO_EXPECTED, data)
    categories: dict[int, str] = {}
    for i, cat in enumerate(data["categories"]):
        cat = require_keys(cat, ("id", "name"), f"{path.name} categories[{i}]", COCO_EXPECTED)
        categories[int(cat["id"])] = str(cat["name"])
    images: dict[int, dict[str, Any]] = {}
    for i, img in enumerate(data["images"]):
        img = require_keys(img, ("id", "file_name"), f"{path.name} images[{i}]", COCO_EXPECTED)
        images[int(img["id"])] = img
    anns: dict[int, dict[str, Any]] = {}
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for i, ann in enumerate(data["annotations"]):
        where = f"{path.name} annotations[{i}]"
        ann = require_keys(ann, ("id", "image_id", "category_id"), where, COCO_EXPECTED)
        if int(ann["category_id"]) not in categories:
            raise DataError(f"{dataset}: {where} (id {ann['id']}): category_id {ann['category_id']} is not in "
                            "the file's categories; the annotation file is inconsistent")
        if int(ann["image_id"]) not in images:
            raise DataError(f"{dataset}: {where} (id {ann['id']}): image_id {ann['image_id']} is not in the "
                            "file's images; the annotation file is inconsistent")
        anns[int(ann["id"])] = ann
        by_image[int(ann["image_id"])].append(ann)
    return CocoIndex(path=path, images=images, categories=categories, annotations=anns, by_image=dict(by_image))


def build_pope(coco: CocoIndex | str | Path, image_dir: str | Path, *, strategy: str = "random",
               per_image: int = 3, num_images: int | None = None, seed: int = 0, skip_missing: bool = False,
               stats: LoadStats | None = None) -> list[Sample]:
    """POPE-style questions from COCO instances: `per_image` yes + `per_image` no per image.

    `num_images` draws that many eligible images (seeded); None uses all. Frequencies and
    co-occurrences are counted over the selected images, as the official generator does.
    `meta` keeps image_id, the asked `category`, the strategy and the question's index.

    >>> samples = build_pope("annotations/instances_train2014.json", "train2014",
    ...                      strategy="adversarial", num_images=500)  # doctest: +SKIP
    """
    if strategy not in STRATEGIES:
        raise DataError(f"{NAME}: unknown negative-sampling strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if per_image < 1:
        raise DataError(f"{NAME}: per_image={per_image}; ask for at least 1 yes/no pair per image")
    stats = stats if stats is not None else LoadStats()
    index = coco if isinstance(coco, CocoIndex) else read_coco_instances(coco)
    folder = Path(image_dir)
    rng = random.Random(seed)
    present = {img_id: index.category_names(img_id) for img_id in sorted(index.images)}
    eligible = [i for i, cats in present.items() if len(cats) >= per_image]
    few = len(present) - len(eligible)
    if few:
        stats.skip(f"image with fewer than {per_image} object categories", few)
    if num_images is not None and num_images < len(eligible):
        eligible = sorted(rng.sample(eligible, num_images))
    freq: Counter[str] = Counter()
    co: dict[str, Counter[str]] = defaultdict(Counter)
    for img_id in eligible:
        cats = present[img_id]
        freq.update(cats)
        for c in cats:
            co[c].update(cats - {c})
    popular = [c for c, _ in sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))]
    pool = sorted(set(index.categories.values()))
    images = ImageChecker(NAME, skip_missing, stats)
    samples: list[Sample] = []
    for img_id in eligible:
        info = index.images[img_id]
        path = folder / str(info["file_name"])
        if not images.ok(path, f"{index.path.name} image id {img_id}", 2 * per_image):
            continue
        cats = present[img_id]
        used: set[str] = set()
        positives = rng.sample(sorted(cats), per_image)
        k = 0
        for pos in positives:
            used.add(pos)
            ranking = popular if strategy == "popular" else (
                [c for c, _ in sorted(co[pos].items(), key=lambda kv: (-kv[1], kv[0]))]
                if strategy == "adversarial" else [])
            neg = next((c for c in ranking if c not in cats and c not in used), None)
            if neg is None:
                free = [c for c in pool if c not in cats and c not in used]
                if not free:
                    stats.skip("no absent category left for a negative")
                    continue
                neg = rng.choice(free)
            used.add(neg)
            for obj, label in ((pos, YES), (neg, NO)):
                meta = {"source": NAME, "strategy": strategy, "image_id": img_id, "category": obj,
                        "file_name": info["file_name"], "question_index": k}
                samples.append(Sample(id=f"{NAME}-{strategy}-{img_id}-{k}", image=path,
                                      question=pope_question(obj), label=label, meta=meta))
                k += 1
    return finish(samples, stats, NAME, index.path)


def find_coco_instances(root: Path, split: str, dataset: str) -> tuple[Path, str]:
    """`annotations/instances_{split}{year}.json` under `root` (2014 first), and its year."""
    tried = []
    for year in YEARS:
        for rel in (f"annotations/instances_{split}{year}.json", f"instances_{split}{year}.json"):
            tried.append(str(root / rel))
            if (root / rel).is_file():
                return root / rel, year
    raise DataError(f"{dataset}: COCO annotation file not found under {str(root)!r} (tried {', '.join(tried)}); "
                    "expected the COCO download layout annotations/instances_{split}2014.json "
                    "(or 2017) with the images in {split}2014/")


def load_coco_pope(root: str | Path, split: str = "train", *, variant: str = "random",
                   annotations: str | Path | None = None, image_root: str | Path | None = None,
                   num_images: int | None = None, seed: int = 0, skip_missing: bool = False,
                   stats: LoadStats | None = None) -> list[Sample]:
    """Build POPE questions (`variant` = negative-sampling strategy) from a COCO download at `root`.

    `annotations` points at any COCO-format instances file instead (e.g. a VOC conversion for
    the paper's transfer experiment, Tab. 7); `image_root` at its image folder.
    """
    check_split(split, ("train", "val"), NAME)
    base = check_root(root, NAME)
    if annotations is not None:
        ann_path, year = Path(annotations), ""
    elif base.is_file():
        ann_path, year = base, ""
    else:
        ann_path, year = find_coco_instances(base, split, NAME)
    folder_names = [f"{split}{year}", f"images/{split}{year}", "images", "."] if year else ["images", "."]
    folder = find_dir(base if base.is_dir() else ann_path.parent, folder_names, image_root, NAME,
                      f"the COCO {split}{year or ''} images")
    return build_pope(ann_path, folder, strategy=variant, num_images=num_images, seed=seed,
                      skip_missing=skip_missing, stats=stats)
