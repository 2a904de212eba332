"""InstaOrder occlusion / depth questions from InstaOrder_{split}2017.json joined with COCO 2017."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_fixtures import coco, image, write_json

from superneurons.data._common import LoadStats
from superneurons.data.instaorder import format_box, load_instaorder
from superneurons.errors import DataError

P1 = "person at position [0.10, 0.10, 0.30, 0.30]"
P2 = "person at position [0.50, 0.50, 0.60, 0.60]"
OCC = "Is the {} obstructing the {}? Answer the question using a single word."
DEPTH = "Is the {} in front of the {} from the viewer's perspective? Answer the question using a single word."


def _instaorder(**over) -> dict:
    rec1 = {"image_id": 1, "instance_ids": [11, 12, 13],
            "occlusion": [{"order": "0<2"}, {"order": "1<2 & 2<1"}],
            "depth": [{"order": "0<1", "overlap": False, "count": 3}, {"order": "2=0", "overlap": True, "count": 3},
                      {"order": "1<2", "overlap": True, "count": 2}]}
    rec2 = {"image_id": 2, "instance_ids": [21, 22], "occlusion": [],
            "depth": [{"order": "0?1", "overlap": False, "count": 1}]}  # an order neither '<' nor '=': unknown
    rec1.update(over)
    return {"annotations": [rec1, rec2]}


def _layout(root: Path, split: str = "val", insta: dict | None = None) -> Path:
    ann = root / "annotations"
    write_json(ann / f"InstaOrder_{split}2017.json", insta or _instaorder())
    write_json(ann / f"instances_{split}2017.json", coco(
        [(1, "000000000001.jpg", 640, 480), (2, "000000000002.jpg", 320, 240)],
        [(11, 1, 1, [64, 48, 128, 96]), (12, 1, 1, [320, 240, 64, 48]), (13, 1, 18, [0, 0, 32, 24]),
         (21, 2, 17, [0, 0, 10, 10]), (22, 2, 63, [5, 5, 10, 10])],
        {1: "person", 17: "cat", 18: "dog", 63: "couch"}))
    image(root / f"{split}2017" / "000000000001.jpg")
    image(root / f"{split}2017" / "000000000002.jpg")
    return root


def test_occlusion_asks_both_orders_of_every_annotated_pair(tmp_path: Path) -> None:
    stats = LoadStats()
    samples = load_instaorder(_layout(tmp_path), "val", task="occlusion", stats=stats)
    got = [(s.question, s.label) for s in samples]
    assert got == [
        (OCC.format(P1, P2), "no"), (OCC.format(P2, P1), "no"),
        (OCC.format(P1, "dog"), "yes"), (OCC.format("dog", P1), "no"),
        (OCC.format(P2, "dog"), "yes"), (OCC.format("dog", P2), "yes"),  # bidirectional occlusion
    ]
    s = samples[2]
    assert s.id == "instaorder-occlusion-1-0-2"
    assert s.image == tmp_path / "val2017" / "000000000001.jpg"
    assert s.meta == {"source": "instaorder-occlusion", "task": "occlusion", "image_id": 1, "instance_a": 11,
                      "instance_b": 13, "category": "person", "category_b": "dog", "order": "0 occludes 2"}
    assert stats.kept == 6 and stats.num_skipped == 0


def test_depth_skips_equal_and_unknown_orders(tmp_path: Path) -> None:
    stats = LoadStats()
    samples = load_instaorder(_layout(tmp_path), "val", task="depth", stats=stats)
    assert [(s.question, s.label) for s in samples] == [
        (DEPTH.format(P1, P2), "yes"), (DEPTH.format(P2, P1), "no"),
        (DEPTH.format(P2, "dog"), "yes"), (DEPTH.format("dog", P2), "no"),
    ]
    assert stats.skipped == {"depth order equal": 1, "depth order unknown": 1}
    assert samples[0].meta["order"] == "0<1"


def test_box_format() -> None:
    assert format_box([64, 48, 128, 96], 640, 480) == "[0.10, 0.10, 0.30, 0.30]"
    assert format_box([600, 0, 100, 10], 640, 480) == "[0.94, 0.00, 1.00, 0.02]"  # clipped to the image


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown task"):
        load_instaorder(tmp_path, "val", task="size")
    with pytest.raises(DataError, match="InstaOrder_val2017.json"):
        load_instaorder(tmp_path, "val")
    with pytest.raises(DataError, match="unknown split 'test'"):
        load_instaorder(tmp_path, "test")
    root = _layout(tmp_path / "a")
    (root / "annotations" / "instances_val2017.json").unlink()
    with pytest.raises(DataError, match="instances_val2017.json.*does not exist"):
        load_instaorder(root, "val")
    root = _layout(tmp_path / "b", insta=_instaorder(instance_ids=[11, 12, 99]))
    with pytest.raises(DataError, match=r"annotations\[0\] \(image_id 1\): instance id 99"):
        load_instaorder(root, "val")
    root = _layout(tmp_path / "c", insta=_instaorder(occlusion=[{"order": "0<5"}]))
    with pytest.raises(DataError, match=r"occlusion\[0\].*'0<5'.*outside 0..2"):
        load_instaorder(root, "val")
    root = _layout(tmp_path / "d")
    (root / "val2017" / "000000000001.jpg").unlink()
    with pytest.raises(DataError, match=r"image_id 1.*000000000001\.jpg"):
        load_instaorder(root, "val", task="depth")
    with pytest.raises(DataError, match="no usable questions.*6 skipped.*missing image"):
        load_instaorder(root, "val", task="occlusion", skip_missing=True)  # image 2 has no occlusion pair
    root = tmp_path / "e"
    _layout(root)
    write_json(root / "annotations" / "InstaOrder_val2017.json",
               coco([(1, "a.jpg", 4, 4)], [(1, 1, 1, [0, 0, 1, 1])], {1: "person"}))
    with pytest.raises(DataError, match="looks like COCO instance annotations"):
        load_instaorder(root, "val")
