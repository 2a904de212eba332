"""VizWiz VQA (Gurari et al. 2018): the yes/no questions of its train / val annotations.

Published layout (vizwiz.org, VQA task downloads `Annotations.zip`, `train.zip`, `val.zip`):

    {root}/Annotations/{split}.json   (also accepted: {root}/{split}.json, {root}/annotations/{split}.json)
    {root}/{split}/VizWiz_{split}_00000000.jpg

`{split}.json` is a list of `{"image", "question", "answers": [10 x {"answer",
"answer_confidence"}], "answer_type", "answerable"}`. Following the paper (appendix A), only
`answer_type == "yes/no"` is kept (the rest is filtered), the question is used as is (no
template) and the label is the majority answer of the ten: a question whose most common
answer is not yes/no is filtered, one with as many yes as no votes is skipped. Answers are
compared lower-cased without surrounding punctuation; `answer_confidence` is not used.
"""

from __future__ import annotations

from collections import Counter
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

NAME = "vizwiz"
YES_NO_TYPE = "yes/no"
EXPECTED = ('VizWiz annotations: a JSON list of {"image", "question", "answers": [{"answer", '
            '"answer_confidence"}], "answer_type", "answerable"} ({split}.json)')


def majority_answer(answers: list[str]) -> tuple[str | None, bool]:
    """(most common normalised answer, whether yes and no tie for the top)."""
    norm = [a.strip().lower().strip(".!?,;: ") for a in answers]
    counts = Counter(a for a in norm if a)
    if not counts:
        return None, False
    top = max(counts.values())
    leaders = {a for a, c in counts.items() if c == top}
    if {YES, NO} <= leaders:
        return None, True
    return (min(leaders) if len(leaders) > 1 else next(iter(leaders))), False


def load_vizwiz(root: str | Path, split: str = "val", *, image_root: str | Path | None = None,
                skip_missing: bool = False, stats: LoadStats | None = None) -> list[Sample]:
    """Load the yes/no questions of VizWiz `split` with majority-vote labels.

    `meta` keeps the image file name, answer_type, the yes/no vote counts and `answerable`.

    >>> samples = load_vizwiz("data/vizwiz", "train")  # doctest: +SKIP
    """
    stats = stats if stats is not None else LoadStats()
    check_split(split, SPLITS, NAME, "the VizWiz test split has no public answers")
    base = check_root(root, NAME)
    path = find_file(base, [f"Annotations/{split}.json", f"annotations/{split}.json", f"{split}.json"],
                     NAME, EXPECTED.replace("{split}", split))
    data = read_json(path, NAME)
    if not (isinstance(data, list) and (not data or isinstance(data[0], dict) and "answer_type" in data[0])):
        raise wrong_format(path, NAME, EXPECTED, data)
    folder = find_dir(base if base.is_dir() else path.parent.parent, [split, f"images/{split}", f"../{split}"],
                      image_root, NAME, f"the VizWiz {split} images ({split}/VizWiz_{split}_*.jpg)")
    images = ImageChecker(NAME, skip_missing, stats)
    samples: list[Sample] = []
    for i, rec in enumerate(data):
        where = f"{path.name} record {i}"
        rec = require_keys(rec, ("image", "question", "answers", "answer_type"), where, EXPECTED)
        where = f"{where} (image {rec['image']})"
        if rec["answer_type"] != YES_NO_TYPE:
            stats.filter(f"answer_type {rec['answer_type']}")
            continue
        answers = [str(require_keys(a, ("answer",), f"{where} answers", EXPECTED)["answer"])
                   for a in rec["answers"]]
        label, tie = majority_answer(answers)
        if tie:
            stats.skip("tied yes/no votes")
            continue
        if label not in (YES, NO):
            stats.filter("majority answer not yes/no")
            continue
        image = folder / str(rec["image"])
        if not images.ok(image, where):
            continue
        norm = [a.strip().lower().strip(".!?,;: ") for a in answers]
        meta = {"source": NAME, "image_file": rec["image"], "answer_type": rec["answer_type"],
                "answerable": rec.get("answerable"), "yes_votes": norm.count(YES), "no_votes": norm.count(NO)}
        samples.append(Sample(id=f"vizwiz-{Path(str(rec['image'])).stem}", image=image,
                              question=str(rec["question"]).strip(), label=label, meta=meta))
    return finish(samples, stats, NAME, path)
