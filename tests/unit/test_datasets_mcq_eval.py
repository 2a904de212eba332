"""Question-level MCQ accuracy from per-option scores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from superneurons.data.mcq import expand_mcq
from superneurons.errors import DataError
from superneurons.evaluation.mcq import is_mcq, mcq_accuracy, mcq_accuracy_from_samples


def test_highest_scoring_option_wins() -> None:
    # q1: correct option 0 scores highest; q2: correct option 1 loses to option 2
    r = mcq_accuracy([0.9, 0.1, 0.3, 0.2, 0.5, 0.4], ["q1", "q1", "q1", "q2", "q2", "q2"], [1, 0, 0, 0, 1, 0])
    assert (r.accuracy, r.num_questions, r.num_correct, r.num_ties, r.num_skipped) == (1.0, 2, 2.0, 0, 0)
    r = mcq_accuracy([0.9, 0.1, 0.3, 0.2, 0.4, 0.5], ["q1", "q1", "q1", "q2", "q2", "q2"], [1, 0, 0, 0, 1, 0])
    assert r.accuracy == 0.5 and r.num_correct == 1.0


def test_ties_get_chance_credit_and_tensors_work() -> None:
    # fraction-of-SNs-voting-yes style scores: q1 ties 2 ways with the correct option among them
    scores = torch.tensor([1.0, 1.0, 0.0, 0.5, 0.5, 0.5, 0.5])
    labels = torch.tensor([0, 1, 0, 0, 0, 0, 1])
    r = mcq_accuracy(scores, ["a", "a", "a", "b", "b", "b", "b"], labels)
    assert r.num_ties == 2
    assert r.num_correct == pytest.approx(0.5 + 0.25) and r.accuracy == pytest.approx(0.375)
    assert r.to_dict()["num_questions"] == 2


def test_incomplete_questions_are_skipped_and_bad_input_raises() -> None:
    r = mcq_accuracy([0.2, 0.8, 0.1, 0.9], ["a", "a", "b", "b"], [0, 1, 0, 0])  # b lost its correct option
    assert r.num_questions == 1 and r.num_skipped == 1 and r.accuracy == 1.0
    with pytest.raises(DataError, match="3 scores, 2 labels"):
        mcq_accuracy([0.1, 0.2, 0.3], ["a", "a", "a"], [0, 1])
    with pytest.raises(DataError, match="none of the 1 questions"):
        mcq_accuracy([0.1, 0.2], ["a", "a"], [0, 0])
    with pytest.raises(DataError, match="question 'a' lists option"):
        mcq_accuracy([0.1, 0.2], ["a", "a"], [0, 1], option_indices=[0, 0])


def test_from_samples_made_by_the_loaders() -> None:
    samples = (expand_mcq("scienceqa", "7", Path("i.png"), "Which?", ["x", "y", "z"], 2, "p7")
               + expand_mcq("scienceqa", "8", Path("j.png"), "Which?", ["u", "v"], 0, "p8"))
    assert is_mcq([s.meta for s in samples])
    r = mcq_accuracy_from_samples(samples, [0.1, 0.2, 0.7, 0.4, 0.6])
    assert r.accuracy == 0.5 and r.num_questions == 2
    samples[0].meta.pop("option_index")
    assert not is_mcq([s.meta for s in samples])  # still grouped by question id (as the synth mcq family)
    assert mcq_accuracy_from_samples(samples, [0.1, 0.2, 0.7, 0.4, 0.6]).accuracy == 0.5
    samples[1].meta.pop("question_id")
    with pytest.raises(DataError, match="scienceqa-7-1.*no meta question_id"):
        mcq_accuracy_from_samples(samples, [0.0] * 5)
