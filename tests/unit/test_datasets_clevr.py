"""CLEVR yes/no questions from questions/CLEVR_{split}_questions.json and images/{split}/."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_fixtures import image, write_json

from superneurons.data._common import LoadStats
from superneurons.data.clevr import load_clevr
from superneurons.errors import DataError


def _q(i: int, img: int, question: str, answer: str, split: str) -> dict:
    return {"image_index": img, "program": [{"inputs": [], "function": "scene", "value_inputs": []}],
            "question_index": i, "image_filename": f"CLEVR_{split}_{img:06d}.png", "question_family_index": 3,
            "split": split, "answer": answer, "question": question}


def _layout(root: Path, split: str = "val") -> Path:
    questions = [
        _q(0, 0, "Are there any rubber cubes?", "yes", split),
        _q(1, 0, "How many spheres are there?", "3", split),
        _q(2, 1, "Is the red thing the same size as the cube?", "no", split),
        _q(3, 1, "What color is the cylinder?", "gray", split),
    ]
    write_json(root / "questions" / f"CLEVR_{split}_questions.json",
               {"info": {"split": split, "version": "1.0"}, "questions": questions})
    for img in (0, 1):
        image(root / "images" / split / f"CLEVR_{split}_{img:06d}.png")
    return root


def test_keeps_yes_no_questions_as_is(tmp_path: Path) -> None:
    stats = LoadStats()
    samples = load_clevr(_layout(tmp_path), "val", stats=stats)
    assert [(s.id, s.question, s.label) for s in samples] == [
        ("clevr-val-0", "Are there any rubber cubes?", "yes"),
        ("clevr-val-2", "Is the red thing the same size as the cube?", "no"),
    ]
    assert samples[1].image == tmp_path / "images" / "val" / "CLEVR_val_000001.png"
    assert samples[1].meta == {"source": "clevr", "question_index": 2, "image_index": 1,
                               "question_family_index": 3, "image_file": "CLEVR_val_000001.png"}
    assert stats.kept == 2 and stats.filtered == {"answer not yes/no": 2} and stats.num_skipped == 0


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown split 'test'"):
        load_clevr(tmp_path, "test")
    with pytest.raises(DataError, match=r"questions/CLEVR_train_questions\.json"):
        load_clevr(tmp_path, "train")
    root = _layout(tmp_path / "a")
    (root / "images" / "val" / "CLEVR_val_000001.png").unlink()
    with pytest.raises(DataError, match=r"questions\[2\] \(question_index 2\).*CLEVR_val_000001\.png"):
        load_clevr(root, "val")
    write_json(root / "questions" / "CLEVR_val_questions.json",
               {"questions": [{"image_filename": "CLEVR_val_000000.png", "question": "Any cubes?"}]})
    with pytest.raises(DataError, match=r"questions\[0\]: missing field\(s\) answer.*test split has no answers"):
        load_clevr(root, "val")
    write_json(root / "questions" / "CLEVR_val_questions.json", [{"question_id": 1, "image": "a.jpg",
                                                                   "text": "Is there a dog in the image?",
                                                                   "label": "yes"}])
    with pytest.raises(DataError, match="looks like official POPE"):
        load_clevr(root, "val")
