"""Sample records: the one input type of every pipeline step.

A `Sample` is an image + a yes/no question + its label. `load_samples` reads the standard
JSONL/JSON layout (`{"id", "image", "question", "label"}`, image paths relative to the file),
`validate_samples` checks images up front, and `balanced_sample` draws a class-balanced
subset as the paper's probing protocol asks (Sec. 4.2).
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from superneurons.errors import DataError

YES, NO = "yes", "no"
_LABELS = {"yes": YES, "no": NO, "1": YES, "0": NO, "true": YES, "false": NO}
LABEL_HINT = "use yes/no, true/false or 1/0"


@dataclass
class Sample:
    """One categorical visual question.

    `image` is a path or an already-open PIL image; `label` is "yes", "no" or None (unlabelled,
    e.g. at prediction time); `meta` keeps dataset-specific fields (source ids, category, option).
    """

    id: str
    image: str | Path | Image.Image
    question: str
    label: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def y(self) -> int:
        """The label as 1 (yes) / 0 (no)."""
        if self.label is None:
            raise DataError(f"sample {self.id!r} has no label; probing and evaluation need yes/no labels")
        return int(self.label == YES)

    def load_image(self) -> Image.Image:
        """The image as RGB PIL; a missing or corrupt file raises a DataError naming the sample."""
        if isinstance(self.image, Image.Image):
            return self.image.convert("RGB")
        path = Path(self.image)
        if not path.is_file():
            raise DataError(f"sample {self.id!r}: image file {str(path)!r} does not exist; fix the path "
                            "(relative paths are resolved against the data file's folder) or pass --skip-bad")
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except Exception as exc:  # PIL raises several types for broken files
            raise DataError(f"sample {self.id!r}: image file {str(path)!r} cannot be read as an image "
                            f"({type(exc).__name__}: {exc}); replace the file or pass --skip-bad") from exc

    def to_record(self, root: Path | None = None) -> dict[str, Any]:
        """A JSON-able dict in the standard layout (image path relative to `root` where possible)."""
        if isinstance(self.image, Image.Image):
            raise DataError(f"sample {self.id!r}: an in-memory image cannot be written to JSONL; save it first")
        image = Path(self.image)
        if root is not None:
            with contextlib.suppress(ValueError):  # outside root: keep the path as it is
                image = image.resolve().relative_to(root.resolve())
        rec: dict[str, Any] = {"id": self.id, "image": str(image), "question": self.question, "label": self.label}
        if self.meta:
            rec["meta"] = self.meta
        return rec


def parse_label(value: Any, where: str) -> str:
    """Normalise yes/no, true/false, 1/0 (any case, bool or int) to "yes"/"no"."""
    key = str(value).strip().lower() if not isinstance(value, bool) else str(int(value))
    if key not in _LABELS:
        raise DataError(f"{where}: label {value!r} is not yes/no; {LABEL_HINT}")
    return _LABELS[key]


def _record_to_sample(rec: Any, where: str, root: Path) -> Sample:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object with id, image, question, label; got {type(rec).__name__}")
    missing = [k for k in ("image", "question") if k not in rec]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}; each record needs "
                        "id, image, question and label")
    sid = str(rec.get("id", where))
    label = rec.get("label")
    image = Path(str(rec["image"]))
    if not image.is_absolute():
        image = root / image
    meta = dict(rec.get("meta") or {})
    return Sample(id=sid, image=image, question=str(rec["question"]),
                  label=None if label is None else parse_label(label, f"{where} (id {sid})"), meta=meta)


def load_samples(path: str | Path, require_labels: bool = True) -> list[Sample]:
    """Read samples from a JSONL file (one object per line) or a JSON list.

    Image paths are resolved relative to the file's folder. Errors name the line and id.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist; pass a .jsonl or .json file of "
                        "{id, image, question, label} records")
    text = path.read_text(encoding="utf-8")
    root = path.parent
    samples: list[Sample] = []
    stripped = text.lstrip()
    if path.suffix == ".json" and stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc}); write a JSON list or JSONL") from exc
        for i, rec in enumerate(records):
            samples.append(_record_to_sample(rec, f"{path.name} record {i}", root))
    else:
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path.name} line {lineno}: not valid JSON ({exc.msg}); "
                                "each line must be one JSON object") from exc
            samples.append(_record_to_sample(rec, f"{path.name} line {lineno}", root))
    if not samples:
        raise DataError(f"{path}: holds no samples; add {{id, image, question, label}} records")
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DataError(f"{path}: duplicate sample ids {dup}; ids must be unique (the store keys on them)")
    if require_labels:
        unlabelled = [s.id for s in samples if s.label is None]
        if unlabelled:
            raise DataError(f"{path}: sample(s) {unlabelled[:5]} have no label; add yes/no labels")
    return samples


def write_samples(samples: Iterable[Sample], path: str | Path) -> Path:
    """Write samples as JSONL with image paths relative to the file's folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for s in samples:
            fh.write(json.dumps(s.to_record(path.parent)) + "\n")
    return path


def validate_samples(samples: Sequence[Sample], skip_bad: bool = False,
                     require_both_classes: bool = False) -> tuple[list[Sample], list[tuple[str, str]]]:
    """Open every image once; return (good samples, [(id, reason)] skipped).

    Without `skip_bad` the first bad image raises. `require_both_classes` (probing) refuses an
    empty or one-class set, since no neuron can be scored against one label.
    """
    good: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    for s in samples:
        try:
            s.load_image()
        except DataError as exc:
            if not skip_bad:
                raise
            skipped.append((s.id, str(exc)))
            continue
        good.append(s)
    if not good:
        raise DataError("no usable samples" + (f" ({len(skipped)} skipped as bad)" if skipped else "")
                        + "; check the data file and image folder")
    if require_both_classes:
        check_both_classes(good)
    return good, skipped


def check_both_classes(samples: Sequence[Sample]) -> None:
    """Raise a DataError unless `samples` hold both yes and no labels (a probing set must: no neuron
    can be scored against one label)."""
    labels = {s.label for s in samples}
    if labels != {YES, NO}:
        only = ", ".join(sorted(str(x) for x in labels))
        first = f" (e.g. sample {samples[0].id!r})" if samples else ""
        raise DataError(f"probing set has only label(s) {only}{first}; "
                        "probing needs both yes and no samples: use balanced_sample or add the other class")


def balanced_sample(samples: Sequence[Sample], n: int | None, seed: int = 0) -> list[Sample]:
    """A class-balanced random subset of at most `n` samples (n//2 yes + n//2 no).

    With n=None or n larger than the data allows, keeps 2 x min(#yes, #no). The result is
    shuffled deterministically by `seed`.
    """
    yes = [s for s in samples if s.label == YES]
    no = [s for s in samples if s.label == NO]
    if not yes or not no:
        raise DataError(f"cannot balance: {len(yes)} yes and {len(no)} no samples; both classes are needed")
    per_class = min(len(yes), len(no)) if n is None else min(n // 2, len(yes), len(no))
    if per_class == 0:
        raise DataError(f"balanced_sample(n={n}) keeps no sample; ask for n >= 2")
    rng = random.Random(seed)
    picked = rng.sample(yes, per_class) + rng.sample(no, per_class)
    rng.shuffle(picked)
    return picked
