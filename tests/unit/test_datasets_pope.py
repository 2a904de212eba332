"""POPE from the official question files (AoiDragon/POPE) and the harness parquet (lmms-lab/POPE)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_fixtures import image, image_bytes, write_json, write_jsonl, write_parquet

from superneurons.data._common import LoadStats
from superneurons.data.pope import load_pope, pope_question
from superneurons.errors import DataError

IMG_A = "COCO_val2014_000000310196.jpg"
IMG_B = "COCO_val2014_000000000042.jpg"


def _official(root: Path, variant: str = "random", with_images: bool = True) -> Path:
    # The published JSONL, one object per line, as in output/coco/coco_pope_{variant}.json.
    records = [
        {"question_id": 1, "image": IMG_A, "image_id": 310196, "text": "Is there a snowboard in the image?",
         "label": "yes"},
        {"question_id": 2, "image": IMG_A, "image_id": 310196, "text": "Is there an apple in the image?",
         "label": "no"},
        {"question_id": 3, "image": IMG_B, "text": "Is there a dining table in the image?", "label": "yes"},
    ]
    write_jsonl(root / "output" / "coco" / f"coco_pope_{variant}.json", records)
    if with_images:
        image(root / "val2014" / IMG_A)
        image(root / "val2014" / IMG_B)
    return root


def test_official_files_keep_questions_labels_and_meta(tmp_path: Path) -> None:
    stats = LoadStats()
    samples = load_pope(_official(tmp_path), "val", stats=stats)
    assert [s.id for s in samples] == ["pope-random-1", "pope-random-2", "pope-random-3"]
    assert [s.question for s in samples] == ["Is there a snowboard in the image?", "Is there an apple in the image?",
                                              "Is there a dining table in the image?"]
    assert [s.label for s in samples] == ["yes", "no", "yes"]
    assert samples[0].image == tmp_path / "val2014" / IMG_A
    assert samples[1].meta == {"source": "pope", "variant": "random", "question_id": 2, "image_id": 310196,
                               "category": "apple"}
    assert samples[2].meta["image_id"] == 42  # parsed from the file name when the line has no image_id
    assert samples[0].load_image().size == (8, 6)
    assert stats.kept == 3 and stats.num_filtered == 0 and stats.num_skipped == 0


def test_variant_all_reads_the_three_files(tmp_path: Path) -> None:
    for v in ("random", "popular", "adversarial"):
        _official(tmp_path, v)
    samples = load_pope(tmp_path, "val", variant="all")
    assert len(samples) == 9
    assert {s.meta["variant"] for s in samples} == {"random", "popular", "adversarial"}
    with pytest.raises(DataError, match="unknown variant 'hard'"):
        load_pope(tmp_path, "val", variant="hard")


def test_prompt_uses_the_official_article_rule() -> None:
    assert pope_question("dog") == "Is there a dog in the image?"
    assert pope_question("oven") == "Is there an oven in the image?"


def test_bad_inputs_name_the_file_and_record(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_pope(tmp_path / "nope", "val")
    with pytest.raises(DataError, match=r"coco_pope_random\.json"):
        load_pope(tmp_path, "val")  # no annotation file
    _official(tmp_path, with_images=False)
    (tmp_path / "val2014").mkdir()
    with pytest.raises(DataError, match=r"line 1 \(question_id 1\).*COCO_val2014_000000310196\.jpg"):
        load_pope(tmp_path, "val")
    with pytest.raises(DataError, match="only.*coco-pope"):
        load_pope(tmp_path, "train")


def test_missing_images_are_skipped_and_counted_when_asked(tmp_path: Path) -> None:
    _official(tmp_path, with_images=False)
    image(tmp_path / "val2014" / IMG_B)
    stats = LoadStats()
    samples = load_pope(tmp_path, "val", skip_missing=True, stats=stats)
    assert [s.id for s in samples] == ["pope-random-3"]
    assert stats.skipped == {"missing image": 2}


def test_another_datasets_file_is_recognised(tmp_path: Path) -> None:
    vizwiz = [{"image": "VizWiz_val_00000000.jpg", "question": "Is it on?", "answer_type": "yes/no",
               "answerable": 1, "answers": [{"answer": "yes", "answer_confidence": "yes"}] * 10}]
    write_json(tmp_path / "coco_pope_random.json", vizwiz)
    (tmp_path / "val2014").mkdir()
    with pytest.raises(DataError, match="looks like VizWiz"):
        load_pope(tmp_path, "val")


def test_parquet_layout_filters_variant_and_extracts_images(tmp_path: Path) -> None:
    jpg, png = image_bytes("JPEG"), image_bytes("PNG")
    write_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", {
        "id": ["0", "1", "2"],
        "question_id": ["1", "2", "1"],
        "question": ["Is there a dog in the image?", "Is there an oven in the image?", "Is there a cat in the image?"],
        "answer": ["yes", "no", "no"],
        "image_source": ["COCO_val2014_000000000001", "COCO_val2014_000000000002", "COCO_val2014_000000000001"],
        "image": [{"bytes": jpg, "path": None}, {"bytes": png, "path": None}, {"bytes": jpg, "path": None}],
        "category": ["random", "random", "adversarial"],
    })
    stats = LoadStats()
    out = tmp_path / "imgs"
    samples = load_pope(tmp_path, "val", image_dir=out, stats=stats)
    assert [(s.id, s.label) for s in samples] == [("pope-random-1", "yes"), ("pope-random-2", "no")]
    assert samples[0].image == out / "COCO_val2014_000000000001.jpg"
    assert samples[1].image == out / "COCO_val2014_000000000002.png"
    assert samples[1].meta["category"] == "oven" and samples[1].meta["image_id"] == 2
    assert samples[0].load_image().size == (8, 6)
    assert stats.filtered == {"other POPE variant (adversarial)": 1}
    assert len(load_pope(tmp_path, "val", variant="all", image_dir=out)) == 3


def test_parquet_without_the_expected_columns_is_refused(tmp_path: Path) -> None:
    write_parquet(tmp_path / "test-0.parquet", {"question": ["q"], "label": ["yes"]}, image_column=None)
    with pytest.raises(DataError, match="lacks column.*answer"):
        load_pope(tmp_path, "val")
