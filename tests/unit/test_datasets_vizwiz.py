"""VizWiz yes/no questions from Annotations/{split}.json with majority-vote labels."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_fixtures import image, write_json

from superneurons.data._common import LoadStats
from superneurons.data.vizwiz import load_vizwiz, majority_answer
from superneurons.errors import DataError


def _answers(*pairs: tuple[str, int]) -> list[dict]:
    out = [{"answer": a, "answer_confidence": "yes"} for a, k in pairs for _ in range(k)]
    assert len(out) == 10
    return out


def _rec(i: int, question: str, answer_type: str, answers: list[dict], split: str = "train") -> dict:
    return {"image": f"VizWiz_{split}_{i:08d}.jpg", "question": question, "answers": answers,
            "answer_type": answer_type, "answerable": 0 if answer_type == "unanswerable" else 1}


def _layout(root: Path, split: str = "train") -> Path:
    records = [
        _rec(0, "Is this light on?", "yes/no", _answers(("yes", 7), ("no", 3)), split),
        _rec(1, "Is it raining? ", "yes/no", _answers(("No.", 6), ("yes", 4)), split),
        _rec(2, "What color is this?", "other", _answers(("blue", 10)), split),
        _rec(3, "Is this expired?", "yes/no", _answers(("yes", 5), ("no", 5)), split),
        _rec(4, "Is this a can?", "yes/no", _answers(("unanswerable", 6), ("yes", 4)), split),
        _rec(5, "What is this?", "unanswerable", _answers(("unanswerable", 10)), split),
    ]
    write_json(root / "Annotations" / f"{split}.json", records)
    for i in range(6):
        image(root / split / f"VizWiz_{split}_{i:08d}.jpg")
    return root


def test_keeps_yes_no_questions_with_majority_labels(tmp_path: Path) -> None:
    stats = LoadStats()
    samples = load_vizwiz(_layout(tmp_path), "train", stats=stats)
    assert [(s.id, s.question, s.label) for s in samples] == [
        ("vizwiz-VizWiz_train_00000000", "Is this light on?", "yes"),
        ("vizwiz-VizWiz_train_00000001", "Is it raining?", "no"),
    ]
    assert samples[0].image == tmp_path / "train" / "VizWiz_train_00000000.jpg"
    assert samples[1].meta == {"source": "vizwiz", "image_file": "VizWiz_train_00000001.jpg",
                               "answer_type": "yes/no", "answerable": 1, "yes_votes": 4, "no_votes": 6}
    assert stats.kept == 2
    assert stats.filtered == {"answer_type other": 1, "answer_type unanswerable": 1, "majority answer not yes/no": 1}
    assert stats.skipped == {"tied yes/no votes": 1}


def test_majority_answer() -> None:
    assert majority_answer(["Yes!", "yes", "no"]) == ("yes", False)
    assert majority_answer(["yes", "no"]) == (None, True)
    assert majority_answer(["", " "]) == (None, False)


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown split 'test'.*no public answers"):
        load_vizwiz(tmp_path, "test")
    with pytest.raises(DataError, match=r"Annotations/val\.json"):
        load_vizwiz(tmp_path, "val")
    root = _layout(tmp_path / "a")
    (root / "train" / "VizWiz_train_00000001.jpg").unlink()
    with pytest.raises(DataError, match=r"record 1 \(image VizWiz_train_00000001\.jpg\).*does not exist"):
        load_vizwiz(root, "train")
    stats = LoadStats()
    assert len(load_vizwiz(root, "train", skip_missing=True, stats=stats)) == 1
    assert stats.skipped["missing image"] == 1
    write_json(tmp_path / "b" / "Annotations" / "train.json", [{"image": "x.jpg", "answer_type": "yes/no"}])
    (tmp_path / "b" / "train").mkdir()
    with pytest.raises(DataError, match=r"train\.json record 0: missing field\(s\) question, answers"):
        load_vizwiz(tmp_path / "b", "train")
    write_json(tmp_path / "c" / "train.json", {"questions": [{"image_filename": "a.png", "question": "q"}]})
    with pytest.raises(DataError, match="looks like CLEVR"):
        load_vizwiz(tmp_path / "c", "train")
