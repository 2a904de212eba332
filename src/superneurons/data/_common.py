"""Helpers shared by the dataset loaders: load counts, locating files, reading JSON/parquet, images.

Every loader reads a dataset in its *published* layout and returns `Sample` records. What
is dropped is counted in a `LoadStats`: *filtered* records are outside the task by design
(an open-ended answer, a text-only question), *skipped* records belong to the task but
cannot be used (a tie between yes and no votes, an equal depth order, a missing image under
`skip_missing`). Bad input (a wrong root, a missing file, another dataset's format, a
malformed record) raises `DataError` naming the file, the record and what was expected.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from superneurons.data.samples import Sample
from superneurons.errors import DataError
from superneurons.utils.files import read_json as _read_json

SPLITS = ("train", "val")


@dataclass
class LoadStats:
    """Counts of what a loader kept, filtered (outside the task) and skipped (unusable), by reason."""

    kept: int = 0
    filtered: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def filter(self, reason: str, count: int = 1) -> None:
        self.filtered[reason] += count

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] += count

    @property
    def num_filtered(self) -> int:
        return sum(self.filtered.values())

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "filtered": dict(self.filtered), "skipped": dict(self.skipped),
                "notes": list(self.notes)}


def check_root(root: str | Path, dataset: str) -> Path:
    """The dataset root as a Path; a missing one raises naming the dataset."""
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"{dataset}: dataset root {str(path)!r} does not exist; pass --root with the folder "
                        "you downloaded the dataset to")
    return path


def check_split(split: str, allowed: Sequence[str], dataset: str, hint: str = "") -> str:
    if split not in allowed:
        raise DataError(f"{dataset}: unknown split {split!r}; use one of {', '.join(allowed)}"
                        + (f" ({hint})" if hint else ""))
    return split


def find_file(root: Path, candidates: Sequence[str], dataset: str, expected: str) -> Path:
    """The first existing `root / candidate`; none raises listing every path tried.

    `root` may also be the annotation file itself, if its name is one the layout expects (so a
    train file is never read as the val split).
    """
    if root.is_file():
        names = {Path(c).name for c in candidates}
        if root.name not in names:
            raise DataError(f"{dataset}: {root} is not the expected annotation file ({', '.join(sorted(names))}); "
                            "pass the dataset folder as --root, or the file for the requested split")
        return root
    for rel in candidates:
        path = root / rel
        if path.is_file():
            return path
    tried = ", ".join(str(root / c) for c in candidates)
    raise DataError(f"{dataset}: annotation file not found under {str(root)!r} (tried {tried}); "
                    f"expected {expected}")


def find_dir(root: Path, candidates: Sequence[str], override: str | Path | None, dataset: str,
             expected: str) -> Path:
    """The image folder: `override` when given, else the first existing `root / candidate`."""
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_dir():
            raise DataError(f"{dataset}: image folder {str(path)!r} (from --images) does not exist")
        return path
    base = root.parent if root.is_file() else root
    for rel in candidates:
        path = base / rel
        if path.is_dir():
            return path
    tried = ", ".join(str(base / c) for c in candidates)
    raise DataError(f"{dataset}: image folder not found (tried {tried}); expected {expected}, "
                    "or pass --images DIR")


def read_json(path: Path, dataset: str) -> Any:
    """A dataset's JSON annotation file; a damaged one raises a DataError naming the dataset and file."""
    return _read_json(path, DataError, "re-download the annotation file", prefix=f"{dataset}: ")


def sniff_format(obj: Any) -> str | None:
    """Name the published dataset a parsed JSON object looks like (for 'wrong file' errors)."""
    first: Any = None
    if isinstance(obj, list) and obj:
        first = obj[0]
        if isinstance(first, dict):
            if "answers" in first and "answer_type" in first:
                return "VizWiz VQA annotations (train.json / val.json)"
            if "choices" in first and ("correct_choice_idx" in first or "direct_answers" in first):
                return "A-OKVQA annotations (aokvqa_v1p0_{split}.json)"
            if "text" in first and "label" in first:
                return "official POPE questions (coco_pope_{variant}.json)"
        return None
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("questions"), list):
        qs = obj["questions"]
        if qs and isinstance(qs[0], dict) and "image_filename" in qs[0]:
            return "CLEVR questions (CLEVR_{split}_questions.json)"
    anns = obj.get("annotations")
    if isinstance(anns, list) and anns and isinstance(anns[0], dict):
        if "instance_ids" in anns[0]:
            return "InstaOrder annotations (InstaOrder_{split}2017.json)"
        if "categories" in obj and "images" in obj:
            return "COCO instance annotations (instances_{split}.json)"
        if "caption" in anns[0]:
            return "COCO captions"
    if obj and all(isinstance(v, list) for v in obj.values()) and "train" in obj:
        return "ScienceQA pid_splits.json"
    if obj:
        first = next(iter(obj.values()))
        if isinstance(first, dict) and "choices" in first and "answer" in first:
            return "ScienceQA problems.json"
    if "question_id" in obj and "text" in obj and "label" in obj:
        return "official POPE questions (coco_pope_{variant}.json)"
    return None


def wrong_format(path: Path, dataset: str, expected: str, obj: Any) -> DataError:
    """A DataError for a file that is not in `dataset`'s format, naming the format it looks like."""
    looks = sniff_format(obj)
    msg = f"{dataset}: {path} is not in the expected format; expected {expected}"
    if looks:
        msg += f"; it looks like {looks} - pick the matching dataset name"
    return DataError(msg)


def require_keys(rec: Any, keys: Iterable[str], where: str, expected: str) -> dict[str, Any]:
    """`rec` as a dict holding `keys`; otherwise a DataError naming the record and the missing keys."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object ({expected}); got {type(rec).__name__}")
    missing = [k for k in keys if k not in rec]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}; expected {expected}")
    return rec


class ImageChecker:
    """Checks image files exist (once per path); a missing one raises or is counted as skipped."""

    def __init__(self, dataset: str, skip_missing: bool, stats: LoadStats) -> None:
        self.dataset, self.skip_missing, self.stats = dataset, skip_missing, stats
        self._seen: dict[Path, bool] = {}

    def ok(self, path: Path, where: str, count: int = 1) -> bool:
        """True if the image exists; else raise, or (skip_missing) count `count` questions as skipped."""
        found = self._seen.get(path)
        if found is None:
            found = self._seen[path] = path.is_file()
        if found:
            return True
        if not self.skip_missing:
            raise DataError(f"{self.dataset}: {where}: image file {str(path)!r} does not exist; expected the "
                            "dataset's images there (check --root / --images) or pass --skip-missing")
        self.stats.skip("missing image", count)
        return False


def finish(samples: list[Sample], stats: LoadStats, dataset: str, source: Path) -> list[Sample]:
    """Record the kept count and refuse an empty result or duplicate ids."""
    stats.kept = len(samples)
    if not samples:
        raise DataError(f"{dataset}: no usable questions in {source} ({stats.num_filtered} filtered, "
                        f"{stats.num_skipped} skipped: {dict(stats.filtered) | dict(stats.skipped)})")
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dup = sorted(i for i, c in Counter(ids).items() if c > 1)[:5]
        raise DataError(f"{dataset}: duplicate question ids {dup} in {source}; each record needs a unique id")
    return samples


# --- parquet (Hugging Face dataset layout) --------------------------------------------------------

def require_pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError("reading parquet files needs pyarrow; install it with "
                        "pip install 'superneurons[datasets]'") from exc
    return pq


def find_parquet(root: Path, prefixes: Sequence[str], subdirs: Sequence[str], dataset: str) -> list[Path]:
    """Parquet files of one split: `root` itself, or `*.parquet` in `root` or `root/<subdir>`
    whose name starts with one of `prefixes` (e.g. "train", "validation")."""
    if root.is_file():
        if root.suffix != ".parquet":
            raise DataError(f"{dataset}: {root} is not a .parquet file")
        return [root]
    for sub in ("", *subdirs):
        folder = root / sub if sub else root
        files = sorted(p for p in folder.glob("*.parquet") if any(p.name.startswith(x) for x in prefixes))
        if files:
            return files
    return []


def read_parquet_rows(files: Sequence[Path], columns: Sequence[str], dataset: str) -> list[dict[str, Any]]:
    """Rows of the parquet files as dicts, after checking each file holds `columns`."""
    pq = require_pyarrow()
    rows: list[dict[str, Any]] = []
    for path in files:
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for broken files
            raise DataError(f"{dataset}: {path} cannot be read as parquet ({type(exc).__name__}: {exc})") from exc
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise DataError(f"{dataset}: {path} lacks column(s) {', '.join(missing)}; expected columns "
                            f"{', '.join(columns)} (has {', '.join(table.column_names)})")
        rows.extend(table.to_pylist())
    return rows


_EXT_BY_FORMAT = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp"}


def image_bytes(value: Any, where: str) -> bytes | None:
    """The encoded bytes of a Hugging Face `Image` cell ({bytes, path}) or raw bytes; None if empty."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("bytes")
        if value is None:
            return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise DataError(f"{where}: image cell is {type(value).__name__}; expected image bytes "
                    "(a Hugging Face Image column with {bytes, path})")


def save_image_bytes(data: bytes, folder: Path, stem: str, where: str) -> Path:
    """Write encoded image bytes as `folder/stem.<ext>` (ext from the header) unless already there."""
    from PIL import Image

    try:
        with Image.open(BytesIO(data)) as im:
            fmt = im.format or ""
    except Exception as exc:  # PIL raises several types for broken bytes
        raise DataError(f"{where}: image bytes cannot be read as an image ({type(exc).__name__}); "
                        "the parquet file may be truncated - re-download it") from exc
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)
    path = folder / f"{safe}{_EXT_BY_FORMAT.get(fmt, '.img')}"
    if not (path.is_file() and path.stat().st_size == len(data)):
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


def default_image_dir(root: Path, dataset: str, split: str) -> Path:
    """Where images decoded from parquet go when no folder is given: next to the parquet files."""
    base = root.parent if root.is_file() else root
    return base / "superneurons_images" / f"{dataset}_{split}"
