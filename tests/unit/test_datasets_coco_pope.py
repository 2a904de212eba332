"""The POPE builder on a hand-made COCO instances file: strategies, balance, no false negatives."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from dataset_fixtures import coco, image, write_json

from superneurons.data._common import LoadStats
from superneurons.data.coco import build_pope, load_coco_pope, read_coco_instances
from superneurons.errors import DataError

CATS = {1: "person", 2: "dog", 3: "cat", 4: "car", 5: "frisbee", 6: "couch", 7: "bus", 8: "truck", 9: "kite",
        10: "sports ball", 11: "remote", 12: "tv", 13: "oven"}
BY_NAME = {v: k for k, v in CATS.items()}
# image id -> categories present; image 100 ("T") asks about person, dog, cat whose strongest
# co-occurring absent categories elsewhere are car, frisbee, couch.
SCENES = {
    1: ["person", "car", "bus"], 2: ["person", "car", "truck"], 3: ["dog", "frisbee", "kite"],
    4: ["dog", "frisbee", "sports ball"], 5: ["cat", "couch", "remote"], 6: ["cat", "couch", "tv"],
    100: ["person", "dog", "cat"], 7: ["dog", "kite"],  # 7: two categories only -> skipped
}


def _coco_dict(crowd_person_in: int | None = None) -> dict:
    images = [(i, f"COCO_train2014_{i:012d}.jpg", 640, 480) for i in SCENES]
    anns, aid = [], 1
    for i, names in SCENES.items():
        for name in names:
            anns.append((aid, i, BY_NAME[name], [10.0, 10.0, 50.0, 40.0]))
            aid += 1
    d = coco(images, anns, CATS)
    if crowd_person_in is not None:
        d["annotations"].append({"id": 999, "image_id": crowd_person_in, "category_id": 1, "bbox": [0, 0, 5, 5],
                                 "iscrowd": 1, "area": 25, "segmentation": {}})
    return d


def _layout(root: Path, year: str = "2014", split: str = "train", **kw) -> Path:
    write_json(root / "annotations" / f"instances_{split}{year}.json", _coco_dict(**kw))
    for i in SCENES:
        image(root / f"{split}{year}" / f"COCO_train2014_{i:012d}.jpg")
    return root


def _by_image(samples):
    out: dict[int, dict[str, set[str]]] = {}
    for s in samples:
        out.setdefault(s.meta["image_id"], {"yes": set(), "no": set()})[s.label].add(s.meta["category"])
    return out


def test_adversarial_picks_the_top_co_occurring_absent_category(tmp_path: Path) -> None:
    root = _layout(tmp_path)
    samples = load_coco_pope(root, "train", variant="adversarial", seed=3)
    got = _by_image(samples)
    assert got[100] == {"yes": {"person", "dog", "cat"}, "no": {"car", "frisbee", "couch"}}
    # each "no" directly follows the "yes" it was drawn for
    t = [s for s in samples if s.meta["image_id"] == 100]
    pairs = {t[k].meta["category"]: t[k + 1].meta["category"] for k in (0, 2, 4)}
    assert pairs == {"person": "car", "dog": "frisbee", "cat": "couch"}
    assert [s.label for s in t] == ["yes", "no"] * 3


def test_popular_picks_the_most_frequent_absent_categories(tmp_path: Path) -> None:
    got = _by_image(load_coco_pope(_layout(tmp_path), "train", variant="popular"))
    # frequencies over the 7 selected images: cat/dog/person 3, car/couch/frisbee 2, the rest 1
    assert got[100]["no"] == {"car", "couch", "frisbee"}
    assert got[1]["no"] == {"cat", "dog", "couch"}
    assert got[3]["no"] == {"cat", "person", "car"}


@pytest.mark.parametrize("strategy", ["random", "popular", "adversarial"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_negative_is_present_and_counts_balance(tmp_path: Path, strategy: str, seed: int) -> None:
    root = _layout(tmp_path, crowd_person_in=3)
    stats = LoadStats()
    samples = load_coco_pope(root, "train", variant=strategy, seed=seed, stats=stats)
    present = {i: set(n) for i, n in SCENES.items()} | {3: set(SCENES[3]) | {"person"}}  # crowd counts as present
    got = _by_image(samples)
    assert sorted(got) == [1, 2, 3, 4, 5, 6, 100]
    for img, qa in got.items():
        assert len(qa["yes"]) == 3 and len(qa["no"]) == 3
        assert qa["yes"] <= present[img]
        assert not qa["no"] & present[img]
    labels = Counter(s.label for s in samples)
    assert labels == {"yes": 21, "no": 21}
    assert stats.skipped == {"image with fewer than 3 object categories": 1}
    assert len({s.id for s in samples}) == len(samples)


def test_questions_ids_and_meta(tmp_path: Path) -> None:
    samples = load_coco_pope(_layout(tmp_path), "train", variant="random", seed=0)
    s = next(x for x in samples if x.meta["category"] == "sports ball")
    assert s.question == "Is there a sports ball in the image?"
    assert s.image == tmp_path / "train2014" / "COCO_train2014_000000000004.jpg"
    assert s.id == f"coco-pope-random-4-{s.meta['question_index']}"
    assert s.meta["strategy"] == "random" and s.meta["file_name"] == "COCO_train2014_000000000004.jpg"
    oven = [x for x in samples if x.meta["category"] == "oven"]  # declared, in no image: only ever a "no"
    assert all(x.question == "Is there an oven in the image?" and x.label == "no" for x in oven)


def test_num_images_draws_images_and_is_deterministic(tmp_path: Path) -> None:
    root = _layout(tmp_path)
    a = load_coco_pope(root, "train", num_images=2, seed=5)
    b = load_coco_pope(root, "train", num_images=2, seed=5)
    assert [s.id for s in a] == [s.id for s in b]
    assert len(a) == 12 and len({s.meta["image_id"] for s in a}) == 2


def test_2014_is_preferred_and_2017_accepted(tmp_path: Path) -> None:
    _layout(tmp_path / "both", "2014")
    _layout(tmp_path / "both", "2017")
    assert "train2014" in str(load_coco_pope(tmp_path / "both", "train")[0].image)
    assert "train2017" in str(load_coco_pope(_layout(tmp_path / "new", "2017"), "train")[0].image)


def test_explicit_annotation_file_for_other_coco_format_sets(tmp_path: Path) -> None:
    ann = write_json(tmp_path / "voc_as_coco.json", _coco_dict())
    imgs = tmp_path / "JPEGImages"
    for i in SCENES:
        image(imgs / f"COCO_train2014_{i:012d}.jpg")
    samples = load_coco_pope(tmp_path, "val", annotations=ann, image_root=imgs)
    assert len(samples) == 42 and samples[0].image.parent == imgs


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="instances_train2014.json"):
        load_coco_pope(tmp_path, "train")
    with pytest.raises(DataError, match="unknown split 'test'"):
        load_coco_pope(tmp_path, "test")
    root = _layout(tmp_path / "c")
    with pytest.raises(DataError, match="unknown negative-sampling strategy 'hard'"):
        load_coco_pope(root, "train", variant="hard")
    (root / "train2014" / "COCO_train2014_000000000001.jpg").unlink()
    with pytest.raises(DataError, match=r"image id 1.*COCO_train2014_000000000001\.jpg"):
        load_coco_pope(root, "train")
    other = write_json(tmp_path / "x" / "annotations" / "instances_val2014.json",
                       {"questions": [{"image_filename": "CLEVR_val_000000.png", "question": "q", "answer": "yes"}]})
    with pytest.raises(DataError, match="looks like CLEVR"):
        read_coco_instances(other)
    bad = _coco_dict()
    bad["annotations"][0]["category_id"] = 77
    with pytest.raises(DataError, match=r"annotations\[0\] \(id 1\): category_id 77"):
        build_pope(write_json(tmp_path / "bad.json", bad), tmp_path)
