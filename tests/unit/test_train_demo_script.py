"""scripts/train_demo_vlm.py: the dense stage-0 occlusion labels and the declared training heads."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_demo_vlm.py"


@pytest.fixture(scope="module")
def train():
    spec = importlib.util.spec_from_file_location("train_demo_vlm", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_occlusion_labels_name_the_covered_object_per_patch(train) -> None:
    from superneurons.synth.scenes import Scene, SceneObject

    red = SceneObject("red", "square", "small", (2, 2, 14, 14), 0)
    blue = SceneObject("blue", "square", "small", (8, 8, 20, 20), 1)  # drawn later, over red's corner
    scene = Scene("t", [red, blue])
    lab = train.occlusion_labels([scene], train.patch_counts([scene]))
    # patch 0 (x, y < 16): blue is the top object and covers red's 6x6 corner; red (most pixels) is covered
    assert lab["top"][0, 0] == train.joint(blue) + 1 and lab["under"][0, 0] == train.joint(red) + 1
    assert lab["covered"][0, 0] == 1
    # patch 1 (x 16-31): only blue, covering nothing; patch 5: blue's corner only; patch 15: background
    assert lab["top"][0, 1] == train.joint(blue) + 1 and lab["under"][0, 1] == 0 and lab["covered"][0, 1] == 0
    assert lab["under"][0, 5] == 0 and lab["obj_mask"][0, 15] == 0 and lab["top"][0, 15] == 0
    swapped = Scene("t", [SceneObject("blue", "square", "small", (8, 8, 20, 20), 0),
                          SceneObject("red", "square", "small", (2, 2, 14, 14), 1)])
    lab2 = train.occlusion_labels([swapped], train.patch_counts([swapped]))
    assert lab2["top"][0, 0] == train.joint(red) + 1 and lab2["under"][0, 0] == train.joint(blue) + 1


def test_training_record_puts_nothing_but_the_lm_loss_at_the_answer_position(train) -> None:
    args = argparse.Namespace(yn_weight=2.0, align_weight=1.0, aux_weight=0.5, aux_layer=2, patch_answer=0,
                              occ_weight=1.0, seed=0, threads=2, stage0_steps=10, align_steps=5)
    rec = train.training_record(args, 20, 60.0)
    assert [h["reads"] for h in rec["heads"]].count("answer position (LM loss only)") == 1
    assert {h["reads"] for h in rec["heads"]} == {"answer position (LM loss only)", "image tokens"}
    assert "image tokens only" in rec["disclosure"] and "carry the answer" not in rec["disclosure"]
    rec = train.training_record(argparse.Namespace(**{**vars(args), "patch_answer": 1}), 20, 60.0)
    assert "image tokens after layer 2 were trained to carry the answer" in rec["disclosure"]
