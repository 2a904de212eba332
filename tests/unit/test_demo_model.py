"""The shipped demo VLM: loads with plain transformers, is small, and answers fixed questions."""

from __future__ import annotations

import pytest

from superneurons.synth import demo_model_path, make_scene

# (val scene index, question, answer): held-out scenes (seed 0) the shipped model answers correctly.
# The shipped model is weak (see MODEL_CARD.md: presence/attribute near chance, counting 0.68), so these
# pin its current behaviour, both answers of each family, rather than show it binds colour and shape.
FIXED = [
    (0, "Is there a blue square in the image?", "no"),
    (23, "Is there a red circle in the image?", "yes"),
    (3, "Is there 1 triangle in the image?", "yes"),
    (2, "Are there 3 circles in the image?", "no"),
    (27, "Are there 2 triangles in the image?", "yes"),
    (8, "Are there 2 triangles in the image?", "no"),
]


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


@pytest.mark.parametrize(("scene_index", "question", "answer"), FIXED)
def test_demo_model_answers_fixed_questions(demo, scene_index: int, question: str, answer: str) -> None:
    assert _ask(demo, scene_index, question) == answer
