"""prefix.py: per-image prefix reuse equals the plain path; images encoded once; honest fallback."""

from __future__ import annotations

import json
import random
import warnings

import pytest
import torch
from typer.testing import CliRunner

from superneurons.activations import capture
from superneurons.activations.prefix import capture_prefix, group_by_image, prefix_reuse_support
from superneurons.activations.probing import probe
from superneurons.constants import MANIFEST_NAME
from superneurons.data import load_samples
from superneurons.data.samples import Sample
from superneurons.errors import StoreError
from superneurons.models import load_model

QUESTIONS = ["Is there a dog in the image ?", "Is there a red cube on the left ?", "Is there a cat ?",
             "Is the big sphere behind the small cylinder ? Answer with yes or no .", "Is there a dog ?",
             "Are there two cups ?"]

# LLaVA-style template with the question BEFORE the image (as the shipped demo model has)
QUESTION_FIRST = (
    "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
    "{% for c in message['content'] | selectattr('type', 'equalto', 'text') %}{{ c['text'] + ' ' }}{% endfor %}"
    "{% for c in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ ' ASSISTANT:' }}{% endif %}")


@pytest.fixture(scope="module")
def pope_like(tmp_path_factory):
    """3 images x 4-6 questions, interleaved (not grouped in the file), plus one single-question image."""
    from conftest import write_dataset

    root = tmp_path_factory.mktemp("pope")
    path = write_dataset(root, 4)
    base = load_samples(path)
    rng = random.Random(0)
    out = []
    for i, s in enumerate(base[:3]):
        for j, q in enumerate(QUESTIONS[: 6 - i]):
            out.append(Sample(f"{s.id}-q{j}", s.image, q, ("yes", "no")[(i + j) % 2]))
    rng.shuffle(out)
    out.append(Sample("solo", base[3].image, QUESTIONS[0], "no"))
    return out


def _vision_calls(vlm):
    module = getattr(vlm.model.model, "vision_tower", None) or vlm.model.model.visual
    calls = []
    handle = module.register_forward_hook(lambda m, a, k, o: calls.append(1), with_kwargs=True)
    return calls, handle


@pytest.mark.parametrize("name", ["tiny_llava", "tiny_qwen2vl", "tiny_qwen3vl"])
@pytest.mark.parametrize("exit_layer", [None, 1])
def test_prefix_reuse_equals_plain_path(name, exit_layer, request, pope_like):
    vlm = request.getfixturevalue(name)
    ok, why = prefix_reuse_support(vlm)
    assert ok and "image before the question" in why
    plain = capture(vlm, pope_like, exit_layer=exit_layer, batch_size=4, progress=False)
    calls, handle = _vision_calls(vlm)
    try:
        reused = capture_prefix(vlm, pope_like, exit_layer=exit_layer, batch_size=4)
    finally:
        handle.remove()
    assert reused.shape == plain.shape and reused.dtype == torch.float32
    torch.testing.assert_close(reused, plain, rtol=1e-4, atol=1e-5)
    # the vision tower ran once per multi-question image (the prefix) + once for the plain batch of
    # the single-question image; never once per question
    assert len(calls) == 3 + 1


def test_layers_subset_and_group_order(tiny_llava, pope_like):
    groups = group_by_image(pope_like)
    assert sorted(len(g) for g in groups) == [1, 4, 5, 6]
    assert [i for g in groups for i in g] != list(range(len(pope_like)))  # interleaved input
    assert all(g == sorted(g) for g in groups) and sorted(i for g in groups for i in g) == list(range(len(pope_like)))
    plain = capture(tiny_llava, pope_like, layers=[0, 2], batch_size=8, progress=False)
    torch.testing.assert_close(capture_prefix(tiny_llava, pope_like, layers=[0, 2], batch_size=2), plain,
                               rtol=1e-4, atol=1e-5)


def test_question_before_image_falls_back_and_says_so(tiny_llava_dir, pope_like):
    vlm = load_model(str(tiny_llava_dir), dtype="float32", device="cpu")
    vlm.processor.chat_template = QUESTION_FIRST
    vlm.prompt_template = vlm.build_prompt("{question}")
    assert vlm.prompt_template.index("{question}") < vlm.prompt_template.index("<image>")
    ok, why = prefix_reuse_support(vlm)
    assert not ok and "question before the image" in why and "plain path" in why
    with pytest.warns(UserWarning, match="question before the image"):
        got = capture_prefix(vlm, pope_like[:6], exit_layer=1)
    torch.testing.assert_close(got, capture(vlm, pope_like[:6], exit_layer=1, progress=False), rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        capture_prefix(vlm, pope_like[:2], exit_layer=1, warn=False)


def test_probe_with_prefix_reuse(tiny_qwen2vl, pope_like, tmp_path):
    ref = probe(tiny_qwen2vl, pope_like, tmp_path / "plain", dtype="float32", shard_size=7, progress=False)
    store = probe(tiny_qwen2vl, pope_like, tmp_path / "reuse", dtype="float32", shard_size=7, progress=False,
                  prefix_reuse=True)
    assert store.ids == ref.ids
    torch.testing.assert_close(store.read(), ref.read(), rtol=1e-4, atol=1e-5)
    # resuming a store with the other path is allowed: the values are the same
    probe(tiny_qwen2vl, pope_like, tmp_path / "reuse", dtype="float32", shard_size=7, progress=False)
    with pytest.raises(StoreError, match="token 'first'"):
        probe(tiny_qwen2vl, pope_like, tmp_path / "x", token="last", prefix_reuse=True, progress=False)


def test_cli_prefix_reuse(tiny_llava_dir, pope_like, tmp_path):
    from superneurons.cli.app import _register_all, app

    _register_all()
    data = tmp_path / "pope.jsonl"
    data.write_text("".join(json.dumps({"id": s.id, "image": str(s.image), "question": s.question,
                                        "label": s.label}) + "\n" for s in pope_like))
    res = CliRunner().invoke(app, ["probe", "--model", str(tiny_llava_dir), "--data", str(data), "--out",
                                   str(tmp_path / "a"), "--prefix-reuse", "--exit-layer", "1", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "prefix reuse: the template puts the image before the question" in " ".join(res.output.split())
    assert json.loads((tmp_path / "a" / MANIFEST_NAME).read_text())["complete"]
