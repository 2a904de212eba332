"""Sample records: the one input type of every pipeline step.

A `Sample` is an image + a yes/no question + its label. `load_samples` reads the standard
JSONL/JSON layout (`{"id", "image", "question", "label"}`, image paths relative to the file),
`validate_samples` checks images up front from their headers (no pixel is decoded twice), and
`balanced_sample` draws a class-balanced subset as the paper's probing protocol asks (Sec. 4.2).

Bad input is a DataError naming the file, line or sample and the fix: a data file that is not UTF-8
(a UTF-8 BOM is accepted), text holding a character UTF-8 cannot encode (a lone surrogate), a missing
or unreadable image, or one larger than `max_pixels` (`MAX_PIXELS` by default, read from the header
before anything is decoded, so a decompression bomb never reaches memory).
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import random
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from superneurons.constants import MAX_PIXELS
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

    def load_image(self, max_pixels: int | None = None) -> Image.Image:
        """The image as RGB PIL; a missing or corrupt file, or one over `max_pixels` (checked from the
        header, before decoding), raises a DataError naming the sample."""
        with self._open(max_pixels) as im:
            try:
                return im.convert("RGB")
            except Exception as exc:  # PIL raises several types for broken files
                raise self._unreadable(exc) from exc

    def check_image(self, max_pixels: int | None = MAX_PIXELS) -> tuple[int, int]:
        """(width, height) of the image from its header, checked against `max_pixels` and for a broken
        file structure (`PIL.Image.verify`: chunks and checksums, no pixel decoded); a DataError naming
        the sample otherwise. Cheap: the pixels are decoded once, later, by `load_image`."""
        with self._open(max_pixels) as im:
            size = im.size
            if im is not self.image:
                try:
                    im.verify()
                except Exception as exc:
                    raise self._unreadable(exc) from exc
            return size

    @contextlib.contextmanager
    def _open(self, max_pixels: int | None) -> Iterator[Image.Image]:
        if isinstance(self.image, Image.Image):
            self._check_pixels(self.image.size, max_pixels, "in-memory image")
            yield self.image
            return
        path = Path(self.image)
        if not path.is_file():
            raise DataError(f"sample {self.id!r}: image file {str(path)!r} does not exist; fix the path "
                            "(relative paths are resolved against the data file's folder) or pass --skip-bad")
        try:
            with warnings.catch_warnings():  # our own limit below is the one that speaks
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(path)
        except Image.DecompressionBombError as exc:
            raise DataError(f"sample {self.id!r}: image file {str(path)!r} is too large to read safely ({exc}); "
                            "resize it or pass --skip-bad") from exc
        except Exception as exc:
            raise self._unreadable(exc) from exc
        with im:
            self._check_pixels(im.size, max_pixels, f"image file {str(path)!r}")
            yield im

    def _check_pixels(self, size: tuple[int, int], max_pixels: int | None, what: str) -> None:
        w, h = size
        if max_pixels is not None and w * h > max_pixels:
            raise DataError(f"sample {self.id!r}: {what} is {w}x{h} = {w * h / 1e6:.1f} MP, over the limit of "
                            f"{max_pixels / 1e6:g} MP (max_pixels); resize it, raise --max-pixels, or pass --skip-bad")

    def _unreadable(self, exc: Exception) -> DataError:
        return DataError(f"sample {self.id!r}: image file {str(self.image)!r} cannot be read as an image "
                         f"({type(exc).__name__}: {exc}); replace the file or pass --skip-bad")

    def to_record(self, root: Path | None = None) -> dict[str, Any]:
        """A JSON-able dict in the standard layout (image path relative to `root` where possible)."""
        if isinstance(self.image, Image.Image):
            raise DataError(f"sample {self.id!r}: an in-memory image cannot be written to JSONL; save it first")
        image = Path(self.image)
        if root is not None:  # relative to root, as load_samples resolves it (a cwd-relative path would break)
            try:
                image = Path(os.path.relpath(image.resolve(), root.resolve()))
            except ValueError:  # another drive: no relative path exists
                image = image.resolve()
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


def check_text(text: str, where: str) -> None:
    """Raise a DataError naming `where` when `text` holds a character UTF-8 cannot encode (a lone
    surrogate, e.g. from a broken "\\ud83d" escape): a tokenizer would fail on it much later."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"{where}: invalid character {text[exc.start]!r} at position {exc.start} (a lone "
                        "surrogate: half of a broken \\uXXXX escape pair); fix or remove it") from None


def read_text(path: Path) -> str:
    """The text of a data file: UTF-8, with or without a BOM; anything else is a DataError naming the
    line and byte offset of the first undecodable byte (or UTF-16) and how to convert the file."""
    raw = path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in raw[:4]:
        raise DataError(f"{path}: looks like UTF-16 text; save it as UTF-8 "
                        f"(e.g. iconv -f UTF-16 -t UTF-8 {path.name} > fixed.jsonl)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1)
        raise DataError(f"{path.name} line {line} (byte {exc.start}, column {col}): byte 0x{raw[exc.start]:02x} is "
                        "not UTF-8 (a latin-1 or Windows-1252 file?); save the file as UTF-8 "
                        f"(e.g. iconv -f latin1 -t UTF-8 {path.name} > fixed.jsonl)") from None


def _record_to_sample(rec: Any, where: str, root: Path) -> Sample:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object with id, image, question, label; got {type(rec).__name__}")
    missing = [k for k in ("image", "question") if k not in rec]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}; each record needs "
                        "id, image, question and label")
    sid = str(rec.get("id", where))
    for name in ("id", "image", "question"):
        check_text(str(rec.get(name, "")), f"{where} (id {sid!r}) field {name!r}")
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
    text = read_text(path)
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


def validate_samples(samples: Sequence[Sample], skip_bad: bool = False, require_both_classes: bool = False,
                     max_pixels: int | None = MAX_PIXELS) -> tuple[list[Sample], list[tuple[str, str]]]:
    """Check every sample's text and image header; return (good samples, [(id, reason)] skipped).

    Images are not decoded (`Sample.check_image`: size from the header against `max_pixels`, file
    structure), so each is decoded once, by the step that uses it. Without `skip_bad` the first bad
    sample raises. `require_both_classes` (probing) refuses an empty or one-class set, since no neuron
    can be scored against one label.
    """
    good: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    for s in samples:
        try:
            check_text(s.question, f"sample {s.id!r} question")
            s.check_image(max_pixels)
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
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 2):
        raise DataError(f"balanced_sample(n={n!r}): ask for n >= 2 samples (n // 2 of each class)")
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
