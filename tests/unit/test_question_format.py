"""QuestionFormat: the words every probing question shares, and the check a task's questions get."""

import pytest

from superneurons.data.question_format import QuestionFormat
from superneurons.errors import DataError

POPE = ["Is there a dog in the image?", "Is there an apple in the image?", "Is there a red car in the image?"]


def test_the_format_is_the_shared_leading_and_trailing_words():
    fmt = QuestionFormat.from_questions(POPE)
    assert fmt == QuestionFormat("Is there ", " in the image?")  # "a" / "an": whole words only
    assert all(fmt.matches(q) for q in POPE) and fmt.matches("Is there a cat in the image?")
    assert not fmt.matches("Is there a cat in the image?\nAnswer the question using a single word or phrase.")
    assert not fmt.matches("Is the cat red?") and not fmt.matches("Is there in the image?")  # they overlap
    shapes = QuestionFormat.from_questions(["Is there a red circle in the image?", "Is there a blue square in the image?"])
    assert shapes.suffix == " in the image?"  # not "e in the image?" (both shapes end in e)
    mcq = QuestionFormat.from_questions(["What color? Is it red? Answer with yes or no.",
                                         "How many? Is it 2? Answer with yes or no."])
    assert mcq == QuestionFormat("", "? Answer with yes or no.")
    one = QuestionFormat.from_questions(["Is it red?"])
    assert one.matches("Is it red?") and not one.matches("Is it blue?")
    assert str(fmt) == "'Is there ' ... ' in the image?'"
    with pytest.raises(DataError, match="at least one question"):
        QuestionFormat.from_questions([])


def test_merged_formats_cover_every_slice_and_the_json_form_round_trips():
    a = QuestionFormat.from_questions(POPE[:2])
    b = QuestionFormat.from_questions(["Is there an owl in the picture?", "Is there a cat in the picture?"])
    merged = QuestionFormat.merge([a, b])
    assert merged == QuestionFormat("Is there ", "?") and all(merged.matches(q) for q in POPE)
    assert QuestionFormat.merge([a, a]) == a
    assert QuestionFormat.from_dict(a.to_dict()) == a and QuestionFormat.from_dict(None) is None
    with pytest.raises(DataError, match="is not"):
        QuestionFormat.from_dict({"prefix": 3})
