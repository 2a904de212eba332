"""`QuestionFormat`: what every question of a probing set has in common (its fixed leading and trailing words).

Super Neurons are prompt-sensitive: SNs found on "Is there a {obj} in the image?" need not hold
for "Is there a {obj} in the image?\\nAnswer the question using a single word or phrase." The
probe records the longest prefix and suffix of whole words shared by all its questions, the
classifier keeps them, and a consumer that writes its own questions (an lmms-eval task) can check
each question against them and warn when it reads differently.

    >>> fmt = QuestionFormat.from_questions(["Is there a dog in the image?", "Is there an apple in the image?"])
    >>> str(fmt), fmt.matches("Is there a cat in the image?"), fmt.matches("Is the cat red?")
    ("'Is there ' ... ' in the image?'", True, False)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from superneurons.errors import DataError


def _align(prefix: str, aligned: bool) -> str:
    """`prefix` cut back to its last word boundary, unless it already ends on one (`aligned`)."""
    if aligned or not prefix or not prefix[-1].isalnum():
        return prefix
    return prefix[:max((i + 1 for i, c in enumerate(prefix) if not c.isalnum()), default=0)]


def _shared_prefix(texts: Sequence[str]) -> str:
    """The longest common prefix of whole words: "Is there a" of "Is there a cat" / "an owl" is "Is there "."""
    p = os.path.commonprefix(list(texts))
    return _align(p, all(len(t) == len(p) or not t[len(p)].isalnum() for t in texts))


def _shared_suffix(texts: Sequence[str]) -> str:
    return _shared_prefix([t[::-1] for t in texts])[::-1]


def _merged(parts: Sequence[str]) -> str:
    p = os.path.commonprefix(list(parts))
    return _align(p, all(x == p for x in parts))


@dataclass(frozen=True)
class QuestionFormat:
    """Every question starts with `prefix` and ends with `suffix` (they never overlap in one question)."""

    prefix: str = ""
    suffix: str = ""

    @classmethod
    def from_questions(cls, questions: Sequence[str]) -> QuestionFormat:
        """The longest shared prefix, then the longest shared suffix of what follows it, in whole words."""
        if not questions:
            raise DataError("a question format needs at least one question")
        prefix = _shared_prefix(questions)
        return cls(prefix, _shared_suffix([q[len(prefix):] for q in questions]))

    @classmethod
    def merge(cls, formats: Iterable[QuestionFormat]) -> QuestionFormat:
        """The format of the union of several question sets (e.g. the slices of a distributed probe)."""
        fmts = list(formats)
        if not fmts:
            raise DataError("merge needs at least one question format")
        return cls(_merged([f.prefix for f in fmts]), _merged([f.suffix[::-1] for f in fmts])[::-1])

    @classmethod
    def from_dict(cls, value: Any) -> QuestionFormat | None:
        """Read the JSON form (`to_dict`); None stays None (artifacts written before formats were kept)."""
        if value is None:
            return None
        if not (isinstance(value, dict) and all(isinstance(value.get(k, ""), str) for k in ("prefix", "suffix"))):
            raise DataError(f"question format {value!r} is not {{'prefix': str, 'suffix': str}}")
        return cls(value.get("prefix", ""), value.get("suffix", ""))

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def matches(self, question: str) -> bool:
        """Whether `question` starts with the prefix and ends with the suffix, like every probing question."""
        return (len(question) >= len(self.prefix) + len(self.suffix) and question.startswith(self.prefix)
                and question.endswith(self.suffix))

    def __str__(self) -> str:
        return f"{self.prefix!r} ... {self.suffix!r}"
