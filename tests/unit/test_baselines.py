"""Model-answer baselines: the POPE and strict parsers on real-looking replies, generation and first-token logits."""

import pytest
import torch

from superneurons.data.samples import load_samples
from superneurons.errors import DataError
from superneurons.evaluation.baselines import (
    first_token_margins,
    generate_answers,
    parse_answers,
    parse_pope,
    parse_strict,
)
from superneurons.scoring.metrics import binary_metrics

REPLIES = [
    # reply, POPE rule, strict parser
    ("Yes, there is a dog.", 1, 1),
    ("No.", 0, 0),
    ("There is not a cat in the image.", 0, -1),
    ("I cannot tell", 1, -1),  # POPE's rule: no "no"/"not" word -> yes
    ("yes", 1, 1),
    ("no", 0, 0),
    ("No, there is no dog in the image.", 0, 0),
    ("Yes. There is no other animal though.", 1, 1),  # only the text before the first '.' counts
    ("There is no bus", 0, -1),
    ("YES!", 1, 1),
    ("NO", 1, 0),  # POPE matches only "No", "no" and "not" (case-sensitive)
    ("Nope, nothing there.", 1, -1),
    ("Yesterday it rained.", 1, -1),
    ("", 1, -1),
    ("  \n No, I don't think so.", 0, 0),
    ("The image does not contain a dog.", 0, -1),
]


@pytest.mark.parametrize(("text", "pope", "strict"), REPLIES)
def test_parsers_on_real_looking_replies(text, pope, strict):
    assert parse_pope(text) == pope
    assert parse_strict(text) == strict


def test_parse_answers_and_unparsed_count_in_metrics():
    texts = [t for t, _, _ in REPLIES]
    assert parse_answers(texts, "pope") == [p for _, p, _ in REPLIES]
    strict = parse_answers(texts, "strict")
    m = binary_metrics(strict, [1] * len(texts))
    assert m["unparsed"] == sum(s == -1 for _, _, s in REPLIES)
    with pytest.raises(DataError, match="pope, strict"):
        parse_answers(texts, "llm")


def test_generation_and_first_token_on_a_tiny_model(tiny_llava, make_dataset, tmp_path):
    samples = load_samples(make_dataset(tmp_path, 5))
    texts = generate_answers(tiny_llava, samples, max_new_tokens=3, batch_size=2)
    assert len(texts) == 5 and all(isinstance(t, str) for t in texts)
    assert all(len(tiny_llava.tokenizer.encode(t, add_special_tokens=False)) <= 6 for t in texts)

    margins = first_token_margins(tiny_llava, samples, batch_size=3)
    yes_ids, no_ids = tiny_llava.yes_no_token_ids()
    assert len(yes_ids) >= 2 and len(no_ids) >= 2  # case/space variants are pooled
    for i in (0, 4):  # one sample alone, full logits, no left padding
        batch = tiny_llava.prepare(samples[i:i + 1])
        with torch.inference_mode():
            logits = tiny_llava.model(**batch).logits[0, -1]
        ref = torch.logsumexp(logits[yes_ids], 0) - torch.logsumexp(logits[no_ids], 0)
        assert margins[i] == pytest.approx(float(ref), abs=1e-4)

    # generation is greedy and batch independent: the same replies one by one and in one batch
    assert generate_answers(tiny_llava, samples, max_new_tokens=3, batch_size=5) == texts
    torch.testing.assert_close(first_token_margins(tiny_llava, samples, batch_size=5), margins, atol=1e-4, rtol=0)
