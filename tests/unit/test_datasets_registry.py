"""Dataset registry, `prepare_dataset` and the `superneurons datasets` CLI."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import typer
from dataset_fixtures import coco, image, write_json
from typer.testing import CliRunner

from superneurons.cli import datasets as datasets_cli
from superneurons.data import load_samples
from superneurons.data.registry import dataset_names, get_dataset, load_dataset, prepare_dataset
from superneurons.errors import DataError

PAPER_NAMES = ["aokvqa", "clevr", "coco-pope", "instaorder-depth", "instaorder-occlusion", "pope", "scienceqa",
               "vizwiz"]


def _clevr(root: Path, n_yes: int = 5, n_no: int = 3, n_other: int = 2) -> Path:
    answers = ["yes"] * n_yes + ["no"] * n_no + ["2"] * n_other
    qs = [{"image_index": i % 2, "question_index": i, "image_filename": f"CLEVR_val_{i % 2:06d}.png",
           "question": f"Question {i}?", "answer": a, "question_family_index": 0, "split": "val", "program": []}
          for i, a in enumerate(answers)]
    write_json(root / "questions" / "CLEVR_val_questions.json", {"info": {}, "questions": qs})
    for i in range(2):
        image(root / "images" / "val" / f"CLEVR_val_{i:06d}.png")
    return root


def _coco(root: Path) -> Path:
    cats = {1: "person", 2: "dog", 3: "cat", 4: "car", 5: "bus", 6: "kite"}
    scenes = {1: [1, 2, 3], 2: [1, 4, 5], 3: [2, 3, 6], 4: [4, 5, 6]}
    anns = [(10 * i + c, i, c, [0.0, 0.0, 4.0, 4.0]) for i, cs in scenes.items() for c in cs]
    write_json(root / "annotations" / "instances_train2014.json",
               coco([(i, f"COCO_train2014_{i:012d}.jpg", 8, 6) for i in scenes], anns, cats))
    for i in scenes:
        image(root / "train2014" / f"COCO_train2014_{i:012d}.jpg")
    return root


def test_registry_names_and_unknown_name() -> None:
    assert dataset_names() == PAPER_NAMES
    assert get_dataset("COCO_POPE").name == "coco-pope"
    assert get_dataset("scienceqa").mcq and get_dataset("aokvqa").mcq and not get_dataset("pope").mcq
    with pytest.raises(DataError, match="unknown dataset 'gqa'; valid names: aokvqa, clevr, coco-pope"):
        get_dataset("gqa")


def test_load_dataset_checks_options(tmp_path: Path) -> None:
    root = _clevr(tmp_path)
    assert len(load_dataset("clevr", root, "val")) == 8
    with pytest.raises(DataError, match="clevr: option\\(s\\) variant do not apply"):
        load_dataset("clevr", root, "val", variant="random")
    with pytest.raises(DataError, match="unknown variant 'hard'; use one of random, popular, adversarial"):
        load_dataset("coco-pope", root, "train", variant="hard")
    with pytest.raises(DataError, match="pope: unknown split 'train'; use one of val"):
        load_dataset("pope", root, "train")


def test_prepare_balanced_writes_standard_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "out" / "probe.jsonl"
    report = prepare_dataset("clevr", _clevr(tmp_path / "clevr"), "val", out, n=4, balanced=True, seed=1)
    assert (report.num_written, report.num_yes, report.num_no) == (4, 2, 2)
    assert report.stats.kept == 8 and report.stats.filtered == {"answer not yes/no": 2}
    assert report.selection == "balanced: 2 yes / 2 no drawn from 8 (seed 1)"
    samples = load_samples(out)
    assert Counter(s.label for s in samples) == {"yes": 2, "no": 2}
    assert all(s.image.is_file() and s.meta["source"] == "clevr" for s in samples)
    again = prepare_dataset("clevr", tmp_path / "clevr", "val", tmp_path / "again.jsonl", n=4, balanced=True, seed=1)
    assert [s.id for s in load_samples(tmp_path / "again.jsonl")] == [s.id for s in samples]
    assert again.num_written == 4


def test_prepare_unbalanced_subset_and_all(tmp_path: Path) -> None:
    root = _clevr(tmp_path / "clevr")
    report = prepare_dataset("clevr", root, "val", tmp_path / "sub.jsonl", n=3, seed=0)
    assert report.num_written == 3 and "random 3 of 8" in report.selection
    report = prepare_dataset("clevr", root, "val", tmp_path / "all.jsonl")
    assert report.num_written == 8 and report.selection == ""
    with pytest.raises(DataError, match="write a .jsonl"):
        prepare_dataset("clevr", root, "val", tmp_path / "x.csv")


def test_prepare_coco_pope_limits_images_by_n(tmp_path: Path) -> None:
    report = prepare_dataset("coco-pope", _coco(tmp_path / "coco"), "train", tmp_path / "probe.jsonl", n=12,
                             balanced=True, variant="adversarial")
    assert (report.num_written, report.num_yes, report.num_no) == (12, 6, 6)
    assert len({s.meta["image_id"] for s in load_samples(tmp_path / "probe.jsonl")}) == 2


def test_prepare_mcq_balances_by_question(tmp_path: Path) -> None:
    records = [{"question_id": f"q{i}", "image_id": 1, "question": f"Q{i}?", "choices": ["a", "b", "c", "d"],
                "correct_choice_idx": i % 4} for i in range(6)]
    write_json(tmp_path / "aokvqa_v1p0_train.json", records)
    image(tmp_path / "train2017" / "000000000001.jpg")
    report = prepare_dataset("aokvqa", tmp_path, "train", tmp_path / "probe.jsonl", n=6, balanced=True)
    assert (report.num_yes, report.num_no, report.num_questions) == (3, 3, 3)
    assert report.selection.startswith("MCQ balancing kept 3 questions: 1 whole")


def _cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test root."""

    datasets_cli.register(app)
    return app


def test_cli_prepare_prints_counts(tmp_path: Path) -> None:
    root = _clevr(tmp_path / "clevr")
    out = tmp_path / "val.jsonl"
    result = CliRunner().invoke(_cli_app(), ["datasets", "prepare", "clevr", "--root", str(root), "--split", "val",
                                             "--out", str(out), "--n", "4", "--balanced", "--seed", "2"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "clevr val: kept 8, filtered 2, skipped 0" in text
    assert "filtered: 2 answer not yes/no" in text
    assert "wrote 4 samples (2 yes / 2 no)" in text
    assert len(load_samples(out)) == 4
    listing = CliRunner().invoke(_cli_app(), ["datasets", "list"])
    assert listing.exit_code == 0 and "instaorder-occlusion" in listing.output


def test_console_script_prints_errors_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "from superneurons.cli.app import main; main()", "datasets",
                           "prepare", "gqa", "--root", str(tmp_path), "--split", "val", "--out",
                           str(tmp_path / "x.jsonl")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown dataset 'gqa'; valid names:" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr


def test_root_may_be_the_annotation_file_of_the_requested_split(tmp_path: Path) -> None:
    root = _clevr(tmp_path)
    path = root / "questions" / "CLEVR_val_questions.json"
    assert len(load_dataset("clevr", path, "val", image_root=root / "images" / "val")) == 8
    with pytest.raises(DataError, match="not the expected annotation file \\(CLEVR_train_questions.json\\)"):
        load_dataset("clevr", path, "train")
