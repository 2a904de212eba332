"""InstaOrder occlusion and depth orders (Lee & Park, CVPR 2022) as yes/no questions.

Layout and schema followed (POSTECH-CVLab/InstaOrder `README.md` "InstaOrder dataset",
`datasets/reader.py` `InstaOrderDataset.get_gt_ordering`, `InstaOrder_vis.ipynb`
`draw_occ_graph` / `draw_depth_graph`; SNU-VGILab/InstaOrder `datasets/prepare_instaorder_panoptic.py`):

    {root}/annotations/InstaOrder_{split}2017.json   {"annotations": [{"image_id", "instance_ids",
                                                        "occlusion": [{"order"}], "depth": [{"order",
                                                        "overlap", "count"}]}]}
    {root}/annotations/instances_{split}2017.json    COCO instances (category names, boxes)
    {root}/{split}2017/*.jpg                         COCO 2017 images

`instance_ids` are COCO annotation ids; an order string indexes into that list (0-based).
Occlusion `"i<j"`: instance i occludes instance j; a bidirectional occlusion is written
`"i<j & j<i"`. Depth `"i<j"`: instance i is nearer to the camera than j; `"i=j"`: equal depth.

Questions (appendix Tab. 1):
- occlusion: "Is the {obj} at position {loc} obstructing the {obj} at position {loc}? Answer the
  question using a single word." for both orders of every annotated pair (a pair named by an
  occlusion or a depth entry); yes iff the first occludes the second.
- depth: "Is the {obj} in front of the {obj} at position {loc} from the viewer's perspective?
  Answer the question using a single word." for both orders of every `i<j` entry (yes for the
  nearer one first). Equal (`=`) and unknown orders are skipped and counted.

`at position {loc}` is added after an object only when the image holds several COCO instances
of its category (the appendix's rule; Tab. 1 prints it once in the depth template, we apply the
rule to each object so both can be told apart). `{loc}` is the instance's COCO box as
normalised corners `[x1, y1, x2, y2]` in [0, 1] with two decimals, the referring-box format of
LLaVA-1.5's training data, e.g. `[0.12, 0.30, 0.55, 0.98]`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from superneurons.data._common import (
    ImageChecker,
    LoadStats,
    check_root,
    check_split,
    find_dir,
    find_file,
    finish,
    read_json,
    require_keys,
    wrong_format,
)
from superneurons.data.coco import CocoIndex, read_coco_instances
from superneurons.data.samples import NO, YES, Sample
from superneurons.errors import DataError

OCCLUSION, DEPTH = "occlusion", "depth"
TASKS = (OCCLUSION, DEPTH)
OCCLUSION_TEMPLATE = ("Is the {a} obstructing the {b}? Answer the question using a single word.")
DEPTH_TEMPLATE = ("Is the {a} in front of the {b} from the viewer's perspective? "
                  "Answer the question using a single word.")
EXPECTED = ('InstaOrder annotations {"annotations": [{"image_id", "instance_ids", "occlusion": [{"order": '
            '"i<j"}], "depth": [{"order": "i<j" or "i=j", ...}]}]} (InstaOrder_{split}2017.json)')
_PAIR_RE = re.compile(r"^\s*(\d+)\s*([<=])\s*(\d+)\s*$")


def format_box(bbox: Any, width: float, height: float) -> str:
    """A COCO `[x, y, w, h]` box as normalised corners "[x1, y1, x2, y2]" (two decimals)."""
    x, y, w, h = (float(v) for v in bbox)
    corners = (x / width, y / height, (x + w) / width, (y + h) / height)
    return "[" + ", ".join(f"{min(max(c, 0.0), 1.0):.2f}" for c in corners) + "]"


def load_instaorder(root: str | Path, split: str = "val", *, task: str = OCCLUSION,
                    annotations: str | Path | None = None, image_root: str | Path | None = None,
                    skip_missing: bool = False, stats: LoadStats | None = None) -> list[Sample]:
    """Load InstaOrder occlusion (`task="occlusion"`) or depth (`task="depth"`) questions.

    `meta` keeps image_id, the two COCO annotation ids (`instance_a`, `instance_b`), their
    categories (`category` = first object's), the order string and the task.

    >>> samples = load_instaorder("data/coco", "train", task="depth")  # doctest: +SKIP
    """
    if task not in TASKS:
        raise DataError(f"instaorder: unknown task {task!r}; use one of {', '.join(TASKS)}")
    name = f"instaorder-{task}"
    stats = stats if stats is not None else LoadStats()
    check_split(split, ("train", "val"), name)
    base = check_root(root, name)
    path = Path(annotations) if annotations is not None else find_file(
        base, [f"annotations/InstaOrder_{split}2017.json", f"InstaOrder_{split}2017.json"], name, EXPECTED)
    coco_dir = path.parent
    coco_path = coco_dir / f"instances_{split}2017.json"
    if not coco_path.is_file():
        raise DataError(f"{name}: COCO annotation file {str(coco_path)!r} does not exist; InstaOrder names "
                        "instances by COCO annotation id, so instances_{split}2017.json must sit next to "
                        f"{path.name} (the layout of the InstaOrder README)")
    data = read_json(path, name)
    if not (isinstance(data, dict) and isinstance(data.get("annotations"), list)
            and (not data["annotations"] or isinstance(data["annotations"][0], dict)
                 and "instance_ids" in data["annotations"][0])):
        raise wrong_format(path, name, EXPECTED, data)
    coco = read_coco_instances(coco_path, name)
    folder = find_dir(base if base.is_dir() else coco_dir.parent,
                      [f"{split}2017", f"images/{split}2017", f"../{split}2017"], image_root, name,
                      f"the COCO {split}2017 images")
    images = ImageChecker(name, skip_missing, stats)
    samples: list[Sample] = []
    for r, rec in enumerate(data["annotations"]):
        where = f"{path.name} annotations[{r}]"
        rec = require_keys(rec, ("image_id", "instance_ids", task), where, EXPECTED)
        image_id = int(rec["image_id"])
        where = f"{where} (image_id {image_id})"
        info = coco.images.get(image_id)
        if info is None:
            raise DataError(f"{name}: {where}: image_id is not in {coco_path.name}; expected the COCO "
                            f"{split}2017 annotations that match {path.name}")
        inst = [_instance(coco, int(a), where) for a in rec["instance_ids"]]
        pairs = _pairs(rec, where, name)
        if task == OCCLUSION:
            questions = _occlusion_questions(pairs, len(inst), name)
        else:
            questions = _depth_questions(pairs, len(inst), stats)
        if not questions:
            continue
        image = Path(folder) / str(info["file_name"])
        if not images.ok(image, where, len(questions)):
            continue
        counts = _category_counts(coco, image_id)
        for i, j, label, order in questions:
            a, b = inst[i], inst[j]
            text = (OCCLUSION_TEMPLATE if task == OCCLUSION else DEPTH_TEMPLATE).format(
                a=_describe(coco, a, counts, info, where), b=_describe(coco, b, counts, info, where))
            meta = {"source": name, "task": task, "image_id": image_id, "instance_a": a["id"],
                    "instance_b": b["id"], "category": coco.categories[a["category_id"]],
                    "category_b": coco.categories[b["category_id"]], "order": order}
            samples.append(Sample(id=f"{name}-{image_id}-{i}-{j}", image=image, question=text, label=label,
                                  meta=meta))
    return finish(samples, stats, name, path)


def _instance(coco: CocoIndex, ann_id: int, where: str) -> dict[str, Any]:
    ann = coco.annotations.get(ann_id)
    if ann is None:
        raise DataError(f"{where}: instance id {ann_id} is not an annotation id of {coco.path.name}; "
                        "expected the COCO 2017 instances file of the same split")
    if "bbox" not in ann:
        raise DataError(f"{where}: COCO annotation {ann_id} has no bbox; expected COCO instance annotations")
    return ann


def _pairs(rec: dict[str, Any], where: str, name: str) -> dict[str, list[tuple[str, str]]]:
    """The raw order strings of both lists, validated as dicts with an `order` field."""
    out: dict[str, list[tuple[str, str]]] = {}
    for key in TASKS:
        entries = rec.get(key, [])
        if not isinstance(entries, list):
            raise DataError(f"{name}: {where}: `{key}` is {type(entries).__name__}; expected a list of "
                            '{"order": "i<j"} entries')
        out[key] = []
        for e, entry in enumerate(entries):
            entry = require_keys(entry, ("order",), f"{where} {key}[{e}]", '{"order": "i<j"}')
            out[key].append((str(entry["order"]), f"{where} {key}[{e}]"))
    return out


def _parse(order: str, n: int, where: str) -> tuple[int, str, int] | None:
    """`"i<j"` -> (i, "<", j); None when the relation is not `<` or `=` (unknown)."""
    m = _PAIR_RE.match(order)
    if m is None:
        return None
    i, rel, j = int(m.group(1)), m.group(2), int(m.group(3))
    if not (0 <= i < n and 0 <= j < n) or i == j:
        raise DataError(f"{where}: order {order!r} names instance indices outside 0..{n - 1} (or the same "
                        "instance twice); indices refer to the record's instance_ids")
    return i, rel, j


def _occlusion_questions(pairs: dict[str, list[tuple[str, str]]], n: int,
                         name: str) -> list[tuple[int, int, str, str]]:
    occludes: set[tuple[int, int]] = set()
    annotated: set[frozenset[int]] = set()
    for order, at in pairs[OCCLUSION]:
        for part in order.split("&"):
            parsed = _parse(part, n, at)
            if parsed is None or parsed[1] != "<":
                raise DataError(f"{name}: {at}: occlusion order {order!r} is not 'i<j' or 'i<j & j<i'")
            occludes.add((parsed[0], parsed[2]))
            annotated.add(frozenset((parsed[0], parsed[2])))
    for order, at in pairs[DEPTH]:
        parsed = _parse(order, n, at)
        if parsed is not None:
            annotated.add(frozenset((parsed[0], parsed[2])))
    out = []
    for pair in sorted(annotated, key=sorted):
        i, j = sorted(pair)
        for a, b in ((i, j), (j, i)):
            rel = "occludes" if (a, b) in occludes else "does not occlude"
            out.append((a, b, YES if (a, b) in occludes else NO, f"{a} {rel} {b}"))
    return out


def _depth_questions(pairs: dict[str, list[tuple[str, str]]], n: int,
                     stats: LoadStats) -> list[tuple[int, int, str, str]]:
    out = []
    for order, at in pairs[DEPTH]:
        parsed = _parse(order, n, at)
        if parsed is None:
            stats.skip("depth order unknown")
            continue
        i, rel, j = parsed
        if rel == "=":
            stats.skip("depth order equal")
            continue
        out.append((i, j, YES, order))
        out.append((j, i, NO, order))
    return out


def _category_counts(coco: CocoIndex, image_id: int) -> dict[int, int]:
    counts: dict[int, int] = {}
    for ann in coco.by_image.get(image_id, []):
        counts[ann["category_id"]] = counts.get(ann["category_id"], 0) + 1
    return counts


def _describe(coco: CocoIndex, ann: dict[str, Any], counts: dict[int, int], info: dict[str, Any],
              where: str) -> str:
    """The object's category, with `at position [x1, y1, x2, y2]` when its category repeats."""
    cat = ann["category_id"]
    name = coco.categories[cat]
    if counts.get(cat, 0) < 2:
        return name
    width, height = info.get("width"), info.get("height")
    if not width or not height:
        raise DataError(f"{where}: COCO image {info.get('id')} has no width/height; expected COCO "
                        "images entries with width and height to place the box")
    return f"{name} at position {format_box(ann['bbox'], width, height)}"
