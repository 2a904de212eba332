"""Question-level accuracy for multiple-choice datasets scored as binary questions.

A-OKVQA and ScienceQA are probed as one yes/no question per option (`superneurons.data.mcq`).
Beyond the paper's per-option binary metrics, `evaluate` also reports question-level accuracy:
for each question the option with the highest score wins, where the score is, for Super
Neurons, the fraction voting yes or their mean activation and, for the model, the first-token
yes-logit. Ties at the top are credited as a uniform random pick among the tied options (1/t
if the correct option is one of t tied), so a constant scorer gets chance accuracy instead of
whatever the option order favours.

>>> r = mcq_accuracy([0.9, 0.1, 0.2, 0.8], ["q1", "q1", "q2", "q2"], [1, 0, 0, 1])
>>> r.accuracy, r.num_questions
(1.0, 2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from superneurons.errors import DataError

QUESTION_KEY, OPTION_KEY = "question_id", "option_index"


@dataclass(frozen=True)
class McqAccuracy:
    """Question-level accuracy: `num_correct` (fractional under ties) over `num_questions`.

    `num_ties`: questions whose top score is shared by several options; `num_skipped`:
    questions left out because they do not have exactly one correct option (e.g. a balanced
    subset that dropped it) or have a single option.
    """

    accuracy: float
    num_questions: int
    num_correct: float
    num_ties: int
    num_skipped: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_list(values: Any) -> list[float]:
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().flatten().cpu().tolist()
    return [float(v) for v in values]


def mcq_accuracy(scores: Sequence[float] | Any, question_ids: Sequence[Any], labels: Sequence[int] | Any,
                 option_indices: Sequence[int] | None = None) -> McqAccuracy:
    """Question-level accuracy from per-binary-sample `scores` (list or 1-D tensor).

    `question_ids[i]` groups sample i with the other options of its question; `labels[i]` is
    1 for the correct option, 0 otherwise. `option_indices`, when given, must not repeat within
    a question (catches a data file listed twice).
    """
    s = _as_list(scores)
    y = [int(v) for v in _as_list(labels)]
    if not (len(s) == len(y) == len(question_ids)):
        raise DataError(f"mcq_accuracy: {len(s)} scores, {len(y)} labels and {len(question_ids)} question ids; "
                        "pass one of each per binary sample")
    if option_indices is not None and len(option_indices) != len(s):
        raise DataError(f"mcq_accuracy: {len(option_indices)} option indices for {len(s)} samples")
    groups: dict[Any, list[int]] = {}
    for i, q in enumerate(question_ids):
        groups.setdefault(q, []).append(i)
    correct = 0.0
    ties = skipped = counted = 0
    for q, idx in groups.items():
        if option_indices is not None:
            opts = [option_indices[i] for i in idx]
            if len(set(opts)) != len(opts):
                raise DataError(f"mcq_accuracy: question {q!r} lists option(s) more than once ({sorted(opts)}); "
                                "each option must appear once")
        if len(idx) < 2 or sum(y[i] for i in idx) != 1:
            skipped += 1
            continue
        counted += 1
        top = max(s[i] for i in idx)
        best = [i for i in idx if s[i] == top]
        if len(best) > 1:
            ties += 1
        if any(y[i] == 1 for i in best):
            correct += 1.0 / len(best)
    if counted == 0:
        raise DataError(f"mcq_accuracy: none of the {len(groups)} questions has exactly one correct option "
                        "among two or more; question-level accuracy needs whole MCQ questions")
    return McqAccuracy(accuracy=correct / counted, num_questions=counted, num_correct=correct, num_ties=ties,
                       num_skipped=skipped)


def is_mcq(metas: Sequence[Mapping[str, Any]]) -> bool:
    """True when every sample's meta carries a question id and an option index (MCQ binaries)."""
    return bool(metas) and all(QUESTION_KEY in m and OPTION_KEY in m for m in metas)


def mcq_accuracy_from_samples(samples: Sequence[Any], scores: Sequence[float] | Any) -> McqAccuracy:
    """`mcq_accuracy` for `Sample`s with meta question_id (and option_index, checked when all have it),
    as the MCQ loaders and the synthetic mcq family write them."""
    metas = [s.meta for s in samples]
    missing = next((s.id for s in samples if QUESTION_KEY not in s.meta), None)
    if missing is not None:
        raise DataError(f"sample {missing!r} has no meta question_id; question-level accuracy needs the binary "
                        "questions made by the A-OKVQA / ScienceQA loaders (or the synthetic mcq family)")
    options = [int(m[OPTION_KEY]) for m in metas] if is_mcq(metas) else None
    return mcq_accuracy(scores, [str(m[QUESTION_KEY]) for m in metas], [s.y for s in samples], options)
