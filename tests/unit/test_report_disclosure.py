"""The training disclosure: one sentence generated from a model's declared training heads."""

from __future__ import annotations

from superneurons.report.disclosure import training_disclosure

LM = {"name": "LM loss on the answer tokens", "reads": "answer position (LM loss only)", "layer": "final", "weight": 1.0}
SLOTS = {"name": "what was asked", "reads": "image tokens", "layer": 1, "weight": 0.5, "answer": False}
MATCH = {"name": "per-patch match", "reads": "image tokens", "layer": 2, "weight": 0.5, "answer": False}


def test_no_training_record_gives_no_sentence() -> None:
    assert training_disclosure(None) is None
    assert training_disclosure({}) is None
    assert training_disclosure({"disclosure": "As declared."}) == "As declared."


def test_image_token_heads_only_say_nothing_was_planted() -> None:
    s = training_disclosure({"heads": [LM, SLOTS, MATCH]})
    assert s.startswith("This model was trained with heads on image tokens only")
    assert "what was asked after decoder layer 1" in s and "per-patch match after decoder layer 2" in s
    assert "nothing but the LM loss reads the answer position" in s and "not planted" in s
    assert "carry the answer" not in s


def test_image_tokens_trained_on_the_answer_are_named() -> None:
    s = training_disclosure({"heads": [LM, SLOTS, {**MATCH, "answer": True}]})
    assert "image tokens after layer 2 were trained to carry the answer" in s and "from layer 3 on" in s


def test_a_head_at_the_answer_position_is_called_planted() -> None:
    head = {"name": "yes/no answer", "reads": "answer position", "layer": 2, "weight": 0.5, "answer": True}
    s = training_disclosure({"heads": [LM, SLOTS, head]})
    assert "reading the answer position (yes/no answer after decoder layer 2)" in s
    assert "at layers <= 2 are partly planted" in s and "image tokens only" not in s


def test_a_heads_note_is_carried_into_the_sentence() -> None:
    s = training_disclosure({"heads": [LM, SLOTS, {**MATCH, "note": "a matching patch is the presence answer"}]})
    assert s.endswith("not planted by any head. Note: a matching patch is the presence answer.")
