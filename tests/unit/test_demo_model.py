"""The shipped demo VLM: loads with plain transformers, is small, and answers fixed questions."""

from __future__ import annotations

import pytest

from superneurons.synth import demo_model_path, make_scene

# (val scene index, question, answer): held-out scenes (seed 0); the same question with both answers on
# two scenes, so a model that ignores the image cannot pass a pair.
FIXED = [
    (0, "Is there a blue square in the image?", "no"),
    (1, "Is there a blue square in the image?", "yes"),
    (2, "Is there a green triangle in the image?", "no"),
    (3, "Is there a green triangle in the image?", "yes"),
    (2, "Is the triangle red?", "yes"),
    (3, "Is the triangle red?", "no"),
    (1, "Are there 3 squares in the image?", "yes"),
    (2, "Are there 3 circles in the image?", "no"),
]


N_BINDING = 40  # questions per family in the binding test
MIN_BINDING_ACCURACY = 0.8


def test_training_record_declares_no_head_at_the_answer_position() -> None:
    """training.json lists every loss: only the LM loss reads the answer position, no deep supervision,
    and the report's disclosure sentence is the one generated from these heads."""
    import json

    from superneurons.report.disclosure import training_disclosure

    rec = json.loads((demo_model_path() / "training.json").read_text())
    assert {h["reads"] for h in rec["heads"]} <= {"image tokens", "answer position (LM loss only)"}
    assert [h["name"] for h in rec["heads"] if h["reads"].startswith("answer position")] == ["LM loss on the answer tokens"]
    assert rec["answer_position_heads"] == [] and rec["deep_supervision"] is False
    assert all(isinstance(h["weight"], float) and "layer" in h for h in rec["heads"])
    assert rec["disclosure"] == training_disclosure(rec) and "image tokens only" in rec["disclosure"]


@pytest.fixture(scope="module")
def demo():
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    path = demo_model_path()
    return LlavaForConditionalGeneration.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)


def _ask(demo, scene_index: int, question: str) -> str:
    import torch

    model, proc = demo
    text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}],
                                    add_generation_prompt=True)
    enc = proc(images=[make_scene("val", scene_index, 0).render()], text=[text], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    return proc.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)[0].strip()


def test_demo_model_folder_is_small_and_documented() -> None:
    path = demo_model_path()
    weights = list(path.glob("*.safetensors"))
    assert weights and sum(p.stat().st_size for p in weights) < 20e6
    assert (path / "MODEL_CARD.md").is_file()
    assert not list(path.glob("*.bin")) and not list(path.glob("*.pt"))


def test_question_comes_before_image_in_template(demo) -> None:
    _, proc = demo
    text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is it red?"}]}],
                                    add_generation_prompt=True)
    assert text.index("Is it red?") < text.index("<image>")


@pytest.mark.parametrize("family", ["presence", "attribute"])
def test_demo_model_binds_colour_and_shape(demo, family: str) -> None:
    """Held-out scenes, both answers, hard negatives (the colour and the shape both in the scene, on
    different objects): labels come from the scene description, answers from greedy generation."""
    import random

    from superneurons.synth import questions as Q

    right, hard = [], []
    for i in range(N_BINDING):
        scene = make_scene("val", 1000 + i, 0)
        q = Q.FAMILIES[family](scene, random.Random(f"test/{family}/{i}"), "yes" if i % 2 == 0 else "no")
        if q is None:
            continue
        ok = _ask(demo, 1000 + i, q.text) == q.label
        right.append(ok)
        if q.meta["kind"] == "hard":
            hard.append(ok)
    assert len(right) >= N_BINDING * 0.8 and len(hard) >= 5
    assert sum(right) / len(right) >= MIN_BINDING_ACCURACY, (family, sum(right), len(right))
    assert sum(hard) / len(hard) >= MIN_BINDING_ACCURACY, (family, sum(hard), len(hard))


@pytest.mark.parametrize(("scene_index", "question", "answer"), FIXED)
def test_demo_model_answers_fixed_questions(demo, scene_index: int, question: str, answer: str) -> None:
    assert _ask(demo, scene_index, question) == answer
