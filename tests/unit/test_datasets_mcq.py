"""A-OKVQA and ScienceQA (official json and parquet) as binary questions; MCQ-aware balancing."""

from __future__ import annotations

from collections import Counter
from itertools import groupby
from pathlib import Path

import pytest
from dataset_fixtures import image, image_bytes, write_json, write_parquet

from superneurons.data._common import LoadStats
from superneurons.data.mcq import (
    balanced_mcq_sample,
    expand_mcq,
    load_aokvqa,
    load_scienceqa,
    mcq_question,
    subsample_mcq,
)
from superneurons.errors import DataError

# --- A-OKVQA -------------------------------------------------------------------------------------


def _aokvqa(root: Path, split: str = "val") -> Path:
    records = [
        {"split": split, "image_id": 42, "question_id": "22MexNkBPpdZGX6sxbxVBH",
         "question": "What is the man by the bags awaiting?", "choices": ["skateboarder", "train", "delivery", "cab"],
         "correct_choice_idx": 3, "direct_answers": ["ride"] * 10, "difficult_direct_answer": False,
         "rationales": ["He has bags."]},
        {"split": split, "image_id": 7, "question_id": "2nU3dX9qC5QzGf4sY8WvZ7",
         "question": "What sport is shown?", "choices": ["tennis", "golf.", "soccer", "polo"],
         "correct_choice_idx": 1, "direct_answers": ["golf"] * 10, "difficult_direct_answer": False,
         "rationales": ["A club."]},
    ]
    write_json(root / "aokvqa" / f"aokvqa_v1p0_{split}.json", records)
    image(root / "coco" / f"{split}2017" / "000000000042.jpg")
    image(root / "coco" / f"{split}2017" / "000000000007.jpg")
    return root


def test_aokvqa_one_binary_question_per_choice(tmp_path: Path) -> None:
    samples = load_aokvqa(_aokvqa(tmp_path), "val")
    assert len(samples) == 8
    first = samples[:4]
    assert [s.question for s in first] == [
        f"What is the man by the bags awaiting? Is it {c}? Answer with yes or no."
        for c in ("skateboarder", "train", "delivery", "cab")]
    assert [s.label for s in first] == ["no", "no", "no", "yes"]
    assert first[3].id == "aokvqa-22MexNkBPpdZGX6sxbxVBH-3"
    assert first[3].image == tmp_path / "coco" / "val2017" / "000000000042.jpg"
    assert first[3].meta == {"source": "aokvqa", "question_id": "22MexNkBPpdZGX6sxbxVBH", "option_index": 3,
                             "num_options": 4, "correct_index": 3, "choice": "cab", "image_id": 42}
    assert samples[5].question == "What sport is shown? Is it golf? Answer with yes or no."  # trailing '.' dropped
    assert samples[5].label == "yes"


def test_aokvqa_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown split 'test'"):
        load_aokvqa(tmp_path, "test")
    with pytest.raises(DataError, match=r"aokvqa_v1p0_train\.json"):
        load_aokvqa(tmp_path, "train")
    root = _aokvqa(tmp_path / "a")
    (root / "coco" / "val2017" / "000000000007.jpg").unlink()
    with pytest.raises(DataError, match=r"record 1 \(question_id 2nU3dX9qC5QzGf4sY8WvZ7\).*000000000007\.jpg"):
        load_aokvqa(root, "val")
    stats = LoadStats()
    assert len(load_aokvqa(root, "val", skip_missing=True, stats=stats)) == 4
    assert stats.skipped == {"missing image": 4}
    path = root / "aokvqa" / "aokvqa_v1p0_val.json"
    write_json(path, [{"question_id": "x", "image_id": 42, "question": "q", "choices": ["a", "b"]}])
    with pytest.raises(DataError, match="no correct_choice_idx"):
        load_aokvqa(root, "val")
    write_json(path, [{"question_id": "x", "image_id": 42, "question": "q", "choices": ["a", "b"],
                       "correct_choice_idx": 2}])
    with pytest.raises(DataError, match=r"correct option index 2 is not in 0..1"):
        load_aokvqa(root, "val")
    write_json(path, [{"image": "VizWiz_val_00000000.jpg", "question": "q", "answers": [], "answer_type": "other"}])
    with pytest.raises(DataError, match="looks like VizWiz"):
        load_aokvqa(root, "val")


# --- ScienceQA -----------------------------------------------------------------------------------

def _problem(question: str, choices: list[str], answer: int, img: str | None, split: str) -> dict:
    return {"question": question, "choices": choices, "answer": answer, "hint": "Figure: a map.", "image": img,
            "task": "closed choice", "grade": "grade4", "subject": "social science", "topic": "geography",
            "category": "Geography", "skill": "Read a map", "lecture": "", "solution": "", "split": split}


def _scienceqa(root: Path) -> Path:
    problems = {
        "5": _problem("Which state is highlighted?", ["Utah", "Ohio", "Iowa"], 1, "image.png", "train"),
        "6": _problem("Which word is a noun?", ["run", "dog"], 1, None, "train"),
        "7": _problem("Which is a mammal?", ["whale", "shark"], 0, "image.png", "val"),
        "8": _problem("Which is colder?", ["ice", "tea"], 0, "image.png", "train"),
    }
    write_json(root / "problems.json", problems)
    write_json(root / "pid_splits.json", {"train": ["5", "6", "8"], "val": ["7"], "test": [],
                                          "trainval": ["5", "6", "7", "8"], "minival": ["7"]})
    for split, pid in (("train", "5"), ("val", "7"), ("train", "8")):
        image(root / "images" / split / pid / "image.png")
    return root


def test_scienceqa_official_layout(tmp_path: Path) -> None:
    stats = LoadStats()
    samples = load_scienceqa(_scienceqa(tmp_path), "train", stats=stats)
    assert [(s.id, s.label) for s in samples] == [("scienceqa-5-0", "no"), ("scienceqa-5-1", "yes"),
                                                  ("scienceqa-5-2", "no"), ("scienceqa-8-0", "yes"),
                                                  ("scienceqa-8-1", "no")]
    assert samples[1].question == "Which state is highlighted? Is it Ohio? Answer with yes or no."
    assert samples[1].image == tmp_path / "images" / "train" / "5" / "image.png"
    assert samples[1].meta["question_id"] == "5" and samples[1].meta["option_index"] == 1
    assert samples[1].meta["category"] == "Geography" and samples[1].meta["hint"] == "Figure: a map."
    assert stats.kept == 5 and stats.filtered == {"text-only question (no image)": 1}
    assert [s.id for s in load_scienceqa(tmp_path, "val")] == ["scienceqa-7-0", "scienceqa-7-1"]


def test_scienceqa_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="problems.json"):
        load_scienceqa(tmp_path, "train")
    root = _scienceqa(tmp_path / "a")
    (root / "pid_splits.json").unlink()
    with pytest.raises(DataError, match="pid_splits.json does not exist"):
        load_scienceqa(root, "train")
    root = _scienceqa(tmp_path / "b")
    write_json(root / "pid_splits.json", {"train": ["5", "99"], "val": []})
    with pytest.raises(DataError, match="lists pid 99 under 'train'"):
        load_scienceqa(root, "train")
    with pytest.raises(DataError, match="has no 'test' list"):
        load_scienceqa(root, "test")
    root = _scienceqa(tmp_path / "c")
    (root / "images" / "train" / "8" / "image.png").unlink()
    with pytest.raises(DataError, match=r"problem 8.*images/train/8/image\.png"):
        load_scienceqa(root, "train")
    write_json(root / "problems.json", {"annotations": [{"image_id": 1, "instance_ids": [1]}]})
    with pytest.raises(DataError, match="looks like InstaOrder"):
        load_scienceqa(root, "train")


def test_scienceqa_parquet_layout(tmp_path: Path) -> None:
    png = {"bytes": image_bytes("PNG"), "path": "image.png"}
    cols = {"image": [png, None, png], "question": ["Which is hot?", "Spell it.", "Which is a fish?"],
            "choices": [["sun", "snow", "ice"], ["cat", "kat"], ["trout", "otter"]], "answer": [0, 0, 0],
            "hint": ["", "", "Look."], "task": ["closed choice"] * 3, "grade": ["grade1"] * 3,
            "subject": ["natural science"] * 3, "topic": ["physics"] * 3, "category": ["Heat", "Spelling", "Fish"],
            "skill": ["s"] * 3, "lecture": [""] * 3, "solution": [""] * 3}
    write_parquet(tmp_path / "data" / "validation-00000-of-00001-6c73.parquet", cols)
    write_parquet(tmp_path / "data" / "train-00000-of-00001-1028.parquet", cols)
    stats = LoadStats()
    out = tmp_path / "imgs"
    samples = load_scienceqa(tmp_path, "val", image_dir=out, stats=stats)
    assert [(s.id, s.label) for s in samples] == [
        ("scienceqa-val-0-0", "yes"), ("scienceqa-val-0-1", "no"), ("scienceqa-val-0-2", "no"),
        ("scienceqa-val-2-0", "yes"), ("scienceqa-val-2-1", "no")]
    assert samples[3].question == "Which is a fish? Is it trout? Answer with yes or no."
    assert samples[3].image == out / "scienceqa_val_2.png" and samples[3].load_image().size == (8, 6)
    assert samples[3].meta["category"] == "Fish" and samples[3].meta["question_id"] == "val-2"
    assert stats.filtered == {"text-only question (no image)": 1}


# --- binary expansion and balancing --------------------------------------------------------------

def _mcq_set(sizes: list[int]) -> list:
    out = []
    for q, k in enumerate(sizes):
        out += expand_mcq("aokvqa", f"q{q}", Path("x.jpg"), f"Q{q}?", [f"c{i}" for i in range(k)], q % k, f"q{q}")
    return out


def test_mcq_question_template() -> None:
    assert mcq_question(" What is it? ", " a cat. ") == "What is it? Is it a cat? Answer with yes or no."


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_balanced_mcq_keeps_whole_questions_first(seed: int) -> None:
    samples = _mcq_set([2, 2, 3, 4, 4, 4])
    picked, note = balanced_mcq_sample(samples, None, seed)
    labels = Counter(s.label for s in picked)
    assert labels == {"yes": 6, "no": 6}
    assert note == ("MCQ balancing kept 6 questions: 3 whole, 1 with some distractors dropped, 2 as the correct "
                    "option only (6 yes / 6 no)")
    by_q = Counter(s.meta["question_id"] for s in picked)
    assert by_q["q0"] == 2 and by_q["q1"] == 2 and by_q["q2"] == 3  # the small questions stay whole
    assert sorted(by_q[q] for q in ("q3", "q4", "q5")) == [1, 1, 3]
    # options of one question stay together, in option order
    blocks = [q for q, _ in groupby(s.meta["question_id"] for s in picked)]
    assert len(blocks) == len(set(blocks)) == 6
    assert all(s.meta["option_index"] < t.meta["option_index"] for s, t in zip(picked, picked[1:], strict=False)
               if s.meta["question_id"] == t.meta["question_id"])


def test_balanced_mcq_with_n_and_determinism() -> None:
    samples = _mcq_set([4] * 10)
    a, note = balanced_mcq_sample(samples, 8, seed=3)
    b, _ = balanced_mcq_sample(samples, 8, seed=3)
    assert [s.id for s in a] == [s.id for s in b]
    assert Counter(s.label for s in a) == {"yes": 4, "no": 4}
    assert note.startswith("MCQ balancing kept 4 questions: 1 whole, 1 with some distractors dropped, 2 as the")
    _, note = balanced_mcq_sample(samples, 100, seed=3)
    assert "n=100 asked for more than the 10 usable questions allow" in note
    with pytest.raises(DataError, match="n >= 2"):
        balanced_mcq_sample(samples, 1)


def test_subsample_keeps_whole_questions() -> None:
    samples = _mcq_set([2, 3, 4, 4])
    picked = subsample_mcq(samples, 7, seed=0)
    by_q = Counter(s.meta["question_id"] for s in picked)
    assert len(picked) <= 7
    assert all(by_q[q] == {"q0": 2, "q1": 3, "q2": 4, "q3": 4}[q] for q in by_q)
