"""CLEVR (Johnson et al. 2017): the yes/no questions of its train / val splits.

Published layout (CLEVR_v1.0.zip):

    {root}/questions/CLEVR_{split}_questions.json   {"info": {...}, "questions": [{"image_index",
                                                      "image_filename", "question_index", "question",
                                                      "answer", "question_family_index", "program", "split"}]}
    {root}/images/{split}/CLEVR_{split}_000000.png

Following the paper (appendix A) only questions answered "yes" or "no" are kept (counting,
attribute and other answers are filtered) and the question is used as is (no template).
"""

from __future__ import annotations

from pathlib import Path

from superneurons.data._common import (
    SPLITS,
    ImageChecker,
    LoadStats,
    check_root,
    check_split,
    find_dir,
    find_file,
    finish,
    read_json,
    require_keys,
    wrong_format,
)
from superneurons.data.samples import NO, YES, Sample

NAME = "clevr"
EXPECTED = ('CLEVR questions {"questions": [{"image_filename", "question", "answer", ...}]} '
            "(CLEVR_{split}_questions.json)")


def load_clevr(root: str | Path, split: str = "val", *, image_root: str | Path | None = None,
               skip_missing: bool = False, stats: LoadStats | None = None) -> list[Sample]:
    """Load the yes/no questions of CLEVR `split`.

    `meta` keeps image_index, question_index, question_family_index and the image file name.

    >>> samples = load_clevr("data/CLEVR_v1.0", "train")  # doctest: +SKIP
    """
    stats = stats if stats is not None else LoadStats()
    check_split(split, SPLITS, NAME, "the CLEVR test split has no public answers")
    base = check_root(root, NAME)
    path = find_file(base, [f"questions/CLEVR_{split}_questions.json", f"CLEVR_{split}_questions.json"],
                     NAME, EXPECTED.replace("{split}", split))
    data = read_json(path, NAME)
    if not (isinstance(data, dict) and isinstance(data.get("questions"), list)):
        raise wrong_format(path, NAME, EXPECTED, data)
    folder = find_dir(base if base.is_dir() else path.parent.parent, [f"images/{split}", split], image_root,
                      NAME, f"the CLEVR {split} images (images/{split}/CLEVR_{split}_*.png)")
    images = ImageChecker(NAME, skip_missing, stats)
    samples: list[Sample] = []
    for i, rec in enumerate(data["questions"]):
        where = f"{path.name} questions[{i}]"
        rec = require_keys(rec, ("image_filename", "question"), where, EXPECTED)
        if "answer" not in rec:
            require_keys(rec, ("answer",), where, EXPECTED + "; the test split has no answers")
        answer = str(rec["answer"]).strip().lower()
        if answer not in (YES, NO):
            stats.filter("answer not yes/no")
            continue
        qidx = rec.get("question_index", i)
        image = folder / str(rec["image_filename"])
        if not images.ok(image, f"{where} (question_index {qidx})"):
            continue
        meta = {"source": NAME, "question_index": qidx, "image_index": rec.get("image_index"),
                "question_family_index": rec.get("question_family_index"), "image_file": rec["image_filename"]}
        samples.append(Sample(id=f"clevr-{split}-{qidx}", image=image, question=str(rec["question"]).strip(),
                              label=answer, meta=meta))
    return finish(samples, stats, NAME, path)
