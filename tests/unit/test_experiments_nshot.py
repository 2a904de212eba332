"""experiments/nshot.py: an n-shot prompt holds exactly n example images (+ the query's), through the
model's chat template, with balanced examples that never include the query; the experiment runs."""

from __future__ import annotations

import random

import pytest
from experiment_fixtures import load_exp_vlm, probe_val

from superneurons.errors import DataError
from superneurons.experiments import fewshot_prompt, prepare_fewshot, run_experiment
from superneurons.experiments._common import ExperimentOptions
from superneurons.experiments.nshot import answer_words, draw_examples


@pytest.fixture(scope="module")
def vlm(tiny_llava_dir):
    return load_exp_vlm(tiny_llava_dir)


@pytest.fixture
def data(tmp_path):
    return probe_val(tmp_path, 12, 4)


def _image_tokens(vlm, enc):
    return (enc["input_ids"] == vlm.model.config.image_token_id).sum(dim=1).tolist()


@pytest.mark.parametrize("n", [0, 1, 3, 5])
def test_prompt_holds_exactly_n_example_images(vlm, data, n):
    probe, val = data
    rng = random.Random(0)
    queries = val[:2]
    examples = [draw_examples(probe, n, rng, exclude=q) for q in queries]
    enc = prepare_fewshot(vlm, queries, examples)
    per_image = _image_tokens(vlm, prepare_fewshot(vlm, queries[:1], [[]]))[0]
    assert per_image > 0
    assert enc["pixel_values"].shape[0] == 2 * (n + 1)
    assert _image_tokens(vlm, enc) == [(n + 1) * per_image] * 2
    assert bool(enc["attention_mask"][:, -1].all())  # left padded: the last position is real


def test_prompt_through_the_chat_template(vlm, data):
    probe, val = data
    q = val[0].question
    assert fewshot_prompt(vlm, [], q) == vlm.build_prompt(q)
    ex = [s for s in probe if s.label == "yes"][:1] + [s for s in probe if s.label == "no"][:1]
    text = fewshot_prompt(vlm, ex, q)
    words = answer_words(vlm)
    assert words == {"yes": "Yes", "no": "No"}
    # examples in order, each followed by its answer, then the query and the generation prompt
    i0, i1 = text.index(ex[0].question), text.rindex(ex[1].question)
    assert i0 < text.index("Yes", i0) < i1 < text.index("No", i1) < text.rindex(q)
    assert text.endswith(vlm.build_prompt(q).split(q)[-1])


def test_qwen_prompt_holds_n_images(tiny_qwen2vl, data):
    probe, val = data
    examples = [draw_examples(probe, 3, random.Random(1), exclude=val[0])]
    enc = prepare_fewshot(tiny_qwen2vl, val[:1], examples)
    assert enc["image_grid_thw"].shape[0] == 4
    assert "<|im_start|>assistant\nYes<|im_end|>" in fewshot_prompt(tiny_qwen2vl, [s for s in probe if s.label == "yes"][:1],
                                                                   val[0].question)


def test_examples_are_balanced_and_never_the_query(data):
    probe, _ = data
    rng = random.Random(0)
    for n in (1, 2, 3, 4, 5):
        for q in probe[:4]:
            ex = draw_examples(probe, n, rng, exclude=q)
            yes = sum(s.label == "yes" for s in ex)
            assert len(ex) == n and abs(yes - (n - yes)) <= 1 and q.id not in {s.id for s in ex}
            assert len({s.id for s in ex}) == n
    with pytest.raises(DataError, match="needs 4 'yes' examples"):
        draw_examples(probe[:3], 8, rng)


def test_nshot_experiment_end_to_end(vlm, data, tmp_path):
    probe, val = data
    res = run_experiment("nshot", vlm, probe=probe, val=val, out_dir=tmp_path / "out", shots=(0, 1, 3),
                         options=ExperimentOptions(max_new_tokens=2))
    assert [r["method"] for r in res.rows] == ["0-shot", "1-shot", "3-shot", "SNs (mean)", "SNs (vote)"]
    assert all(r["n"] == len(val) for r in res.rows)
    assert (tmp_path / "out" / "nshot.md").is_file()


def test_prompts_longer_than_the_context_are_skipped_and_noted(vlm, data, monkeypatch):
    probe, val = data
    one = prepare_fewshot(vlm, val[:1], [draw_examples(probe, 1, random.Random(0), exclude=val[0])])
    three = prepare_fewshot(vlm, val[:1], [draw_examples(probe, 3, random.Random(0), exclude=val[0])])
    limit = one["input_ids"].shape[1] + 8
    assert three["input_ids"].shape[1] >= limit
    monkeypatch.setattr(vlm.text_config, "max_position_embeddings", limit)
    res = run_experiment("nshot", vlm, probe=probe, val=val, shots=(0, 3, 1), options=ExperimentOptions(max_new_tokens=2))
    assert [r["method"] for r in res.rows] == ["0-shot", "1-shot", "SNs (mean)", "SNs (vote)"]
    assert any("3-shot and above skipped" in n and "max_position_embeddings" in n for n in res.meta["notes"])
