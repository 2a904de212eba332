"""End to end from published dataset layouts: `datasets prepare` -> `probe` -> `select` -> `evaluate`.

Mirrors the runbook with a tiny LLaVA: a POPE probing set built from a COCO train2014 layout and
official POPE validation files; and A-OKVQA (MCQ) where `evaluate` adds question-level accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from superneurons.cli.app import _register_all, app
from superneurons.data import load_samples

CATS = {1: "person", 2: "dog", 3: "cat", 4: "car", 5: "bus", 6: "kite", 7: "cup", 8: "bowl"}
COLORS = [(220, 40, 40), (40, 40, 220), (40, 200, 40), (200, 200, 40)]


def image(path: Path, color: tuple[int, int, int], size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


@pytest.fixture(scope="module")
def cli() -> CliRunner:
    _register_all()
    return CliRunner()


def _run(cli: CliRunner, *args: str) -> str:
    res = cli.invoke(app, list(args))
    assert res.exit_code == 0, f"{args[:2]}: {res.output}\n{res.exception!r}"
    return " ".join(res.output.split())


def _coco_train(root: Path) -> Path:
    scenes = {i: [1 + (i + k) % 8 for k in range(3)] for i in range(1, 5)}
    write_json(root / "annotations" / "instances_train2014.json", {
        "images": [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "width": 24, "height": 24} for i in scenes],
        "annotations": [{"id": 10 * i + c, "image_id": i, "category_id": c, "bbox": [1, 1, 4, 3], "iscrowd": 0}
                        for i, cs in scenes.items() for c in cs],
        "categories": [{"id": c, "name": n} for c, n in CATS.items()]})
    for i in scenes:
        image(root / "train2014" / f"COCO_train2014_{i:012d}.jpg", COLORS[i % 4], (24, 24))
    return root


def _pope_val(root: Path) -> Path:
    recs = []
    for q, (obj, label) in enumerate([("dog", "yes"), ("bus", "no"), ("cup", "yes"), ("kite", "no")] * 2, start=1):
        img = f"COCO_val2014_{(q + 1) // 2:012d}.jpg"
        recs.append({"question_id": q, "image": img, "text": f"Is there a {obj} in the image?", "label": label})
        image(root / "val2014" / img, COLORS[q % 4], (24, 24))
    (root / "coco_pope_random.json").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return root


def test_pope_from_coco_train_and_official_val(cli: CliRunner, tiny_llava_dir: Path, tmp_path: Path) -> None:
    coco_root, pope_root, runs = _coco_train(tmp_path / "coco"), _pope_val(tmp_path / "pope"), tmp_path / "runs"
    out = _run(cli, "datasets", "prepare", "coco-pope", "--root", str(coco_root), "--split", "train",
               "--n", "12", "--balanced", "--out", str(runs / "probe.jsonl"))
    assert "wrote 12 samples (6 yes / 6 no)" in out
    out = _run(cli, "datasets", "prepare", "pope", "--root", str(pope_root), "--split", "val",
               "--out", str(runs / "val.jsonl"))
    assert "pope val: kept 8, filtered 0, skipped 0" in out
    _run(cli, "probe", "--model", str(tiny_llava_dir), "--data", str(runs / "probe.jsonl"),
         "--out", str(runs / "acts"), "--device", "cpu", "--batch-size", "4")
    _run(cli, "select", "--acts", str(runs / "acts"), "--metric", "accuracy", "--out", str(runs / "clf"))
    _run(cli, "evaluate", "--classifier", str(runs / "clf"), "--model", str(tiny_llava_dir),
         "--data", str(runs / "val.jsonl"), "--no-generate", "--device", "cpu", "--out", str(runs / "m.json"))
    result = json.loads((runs / "m.json").read_text())
    assert result["n"] == 8
    for method in ("sns_mean", "sns_vote", "model_first_token"):
        assert 0.0 <= result["methods"][method]["accuracy"] <= 1.0
    assert "mcq" not in result


def _aokvqa(root: Path, split: str, n: int) -> Path:
    recs = [{"question_id": f"{split}{q}", "image_id": q % 3, "question": f"What is shown {q}?",
             "choices": ["a dog", "a cat", "a car", "a cup"], "correct_choice_idx": q % 4} for q in range(n)]
    write_json(root / f"aokvqa_v1p0_{split}.json", recs)
    for i in range(3):
        image(root / f"{split}2017" / f"{i:012d}.jpg", COLORS[i], (24, 24))
    return root


def test_mcq_reports_question_level_accuracy(cli: CliRunner, tiny_llava_dir: Path, tmp_path: Path) -> None:
    root, runs = tmp_path / "aokvqa", tmp_path / "runs"
    _aokvqa(root, "train", 8)
    _aokvqa(root, "val", 3)
    out = _run(cli, "datasets", "prepare", "aokvqa", "--root", str(root), "--split", "train", "--n", "8",
               "--balanced", "--out", str(runs / "probe.jsonl"))
    assert "MCQ balancing kept 4 questions" in out and "(4 yes / 4 no)" in out
    _run(cli, "datasets", "prepare", "aokvqa", "--root", str(root), "--split", "val", "--out", str(runs / "val.jsonl"))
    assert len(load_samples(runs / "val.jsonl")) == 12
    _run(cli, "probe", "--model", str(tiny_llava_dir), "--data", str(runs / "probe.jsonl"),
         "--out", str(runs / "acts"), "--device", "cpu", "--batch-size", "4")
    _run(cli, "select", "--acts", str(runs / "acts"), "--metric", "accuracy", "--out", str(runs / "clf"))
    out = _run(cli, "evaluate", "--classifier", str(runs / "clf"), "--model", str(tiny_llava_dir),
               "--data", str(runs / "val.jsonl"), "--no-generate", "--device", "cpu", "--out", str(runs / "m.json"))
    assert "MCQ question-level accuracy" in out
    mcq = json.loads((runs / "m.json").read_text())["mcq"]
    assert set(mcq) >= {"sns_mean", "model_first_token"}
    assert all(m["num_questions"] == 3 and 0.0 <= m["accuracy"] <= 1.0 for m in mcq.values() if "accuracy" in m)
