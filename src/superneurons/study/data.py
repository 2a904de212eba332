"""A study dataset's probing and validation samples: read from its files, or prepared once under DIR/data.

A `prepare` source runs `superneurons.data.registry.prepare_dataset` into
`DIR/data/<dataset>/<split>.jsonl`, next to a `<split>.prepare.json` holding the arguments; the
next run reuses the file while the arguments are the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from superneurons.errors import DataError

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.study.spec import DataSource, StudyDataset

DATA_DIR = "data"
_ARG_NAMES = {"images": "image_root"}


def prepared_file(source: DataSource, out: Path, dataset: str, split: str) -> Path:
    """The JSONL of a source: its file, or the prepared one (built now when missing or stale)."""
    if source.file is not None:
        return source.file
    from superneurons.data.registry import prepare_dataset

    assert source.prepare is not None
    args = dict(source.prepare)
    target = out / DATA_DIR / dataset / f"{split}.jsonl"
    record = target.with_suffix(".prepare.json")
    if target.is_file() and record.is_file() and json.loads(record.read_text(encoding="utf-8")) == args:
        return target
    kwargs = {_ARG_NAMES.get(k, k): v for k, v in args.items() if k not in ("dataset", "root", "split")}
    prepare_dataset(args["dataset"], args["root"], args["split"], target, **kwargs)
    record.write_text(json.dumps(args, indent=1) + "\n", encoding="utf-8")
    return target


def dataset_samples(ds: StudyDataset, out: Path, limit: int | None = None) -> tuple[list[Sample], list[Sample]]:
    """(probing samples, validation samples) of `ds`, the first `limit` of each when given."""
    from superneurons.data.samples import load_samples

    if limit is not None and limit < 2:
        raise DataError(f"--limit {limit}: keep at least 2 samples per set (both answers must occur)")
    sets = []
    for split, source in (("probe", ds.probe), ("val", ds.val)):
        samples = load_samples(prepared_file(source, out, ds.name, split))
        sets.append(samples[:limit] if limit is not None else samples)
    probe, val = sets
    for split, samples in (("probing", probe), ("validation", val)):
        if {s.label for s in samples} != {"yes", "no"}:
            raise DataError(f"dataset {ds.name!r}: the {split} set ({len(samples)} samples) lacks yes or no "
                            "answers; give it both (prepare with balanced = true, or a larger --limit)")
    return probe, val
